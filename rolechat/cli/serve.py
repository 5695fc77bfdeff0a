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
        api_key: str | None = typer.Option(None, help="Require `Authorization: Bearer KEY`."),
    ) -> None:
        """Serve /v1/models and /v1/chat/completions (OpenAI-compatible, streaming) for every persona."""
        import uvicorn

        from rolechat import settings
        from rolechat.api import ServerConfig, create_app
        from rolechat.cli.chat import banner, engine_or_fail, load_runtime_or_fail

        try:
            server = settings.build(
                ServerConfig, "server", file_data(), {"host": host, "port": port, "api_key": api_key}
            )
        except ValueError as exc:
            fail(str(exc))
        rt = load_runtime_or_fail(model=model)
        banner(rt)
        err_console.print(f"serving on http://{server.host}:{server.port}/v1 (models: {', '.join(rt.persona_names())})")
        engine = engine_or_fail(rt)  # the [rag] and [chat] settings, as `chat` and `ask` use them
        uvicorn.run(create_app(rt, server, engine=engine), host=server.host, port=server.port, log_level="info")
