"""`rolechat serve`: the OpenAI-compatible API over the same runtime as the app."""

from __future__ import annotations

import typer

from rolechat.cli.common import err_console, fail, file_data


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: str | None = typer.Option(None, help="Address to listen on (default 127.0.0.1)."),
        port: int | None = typer.Option(None, help="TCP port (default 8000)."),
        model: str | None = typer.Option(None, "--model", help="Base model folder or cached hub id."),
        api_key: str | None = typer.Option(
            None,
            help="Require `Authorization: Bearer KEY`. Visible to other users in `ps`: prefer the environment "
            "(ROLECHAT_SERVER_API_KEY) or a file (server.api_key_file in the config file).",
        ),
    ) -> None:
        """Serve the OpenAI-compatible API (/v1/chat/completions, streaming), the ChatGLM tutorial endpoint
        (POST /), knowledge-base routes, /health and /metrics for every persona. See docs/api.md."""
        import uvicorn

        from rolechat import settings
        from rolechat.api import ServerConfig, create_app
        from rolechat.cli.chat import banner, load_runtime_or_fail

        try:
            server = settings.build(
                ServerConfig, "server", file_data(), {"host": host, "port": port, "api_key": api_key}
            )
        except ValueError as exc:
            fail(str(exc))
        rt = load_runtime_or_fail(model=model)
        banner(rt)
        auth = "API key required" if server.key() else "no API key (set ROLECHAT_SERVER_API_KEY to require one)"
        err_console.print(
            f"serving on http://{server.host}:{server.port}/v1 ({auth}; models: {', '.join(rt.persona_names())})"
        )
        from rolechat.conversation import Engine
        from rolechat.rag import RAGConfig

        engine = Engine(rt, settings.build(RAGConfig, "rag", file_data()))
        uvicorn.run(
            create_app(rt, server, engine=engine),
            host=server.host,
            port=server.port,
            log_level="info",
            timeout_graceful_shutdown=5,  # open streams are cancelled on Ctrl-C / SIGTERM after this
        )
