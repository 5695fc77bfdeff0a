"""`rolechat serve`: the OpenAI-compatible API over the same runtime as the app."""

from __future__ import annotations

from typing import Optional

import typer

from rolechat.cli.common import err_console, fail, file_data


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: Optional[str] = typer.Option(None, help="Address to listen on (default 127.0.0.1)."),
        port: Optional[int] = typer.Option(None, help="TCP port (default 8000)."),
        model: Optional[str] = typer.Option(None, "--model", help="Base model folder or cached hub id."),
        api_key: Optional[str] = typer.Option(None, help="Require `Authorization: Bearer KEY`."),
    ) -> None:
        """Serve /v1/models and /v1/chat/completions (OpenAI-compatible, streaming) for every persona."""
        import uvicorn

        from rolechat import config
        from rolechat.api import ServerConfig, create_app
        from rolechat.cli.chat import banner, load_runtime_or_fail

        try:
            server = config.build(ServerConfig, "server", file_data(), {"host": host, "port": port, "api_key": api_key})
        except ValueError as exc:
            fail(str(exc))
        rt = load_runtime_or_fail(model=model)
        banner(rt)
        err_console.print(f"serving on http://{server.host}:{server.port}/v1 (models: {', '.join(rt.persona_names())})")
        from rag import RAGConfig

        from rolechat.kb_answer import make_kb_answerer

        answerer = make_kb_answerer(config.build(RAGConfig, "rag", file_data()))
        uvicorn.run(create_app(rt, server, kb_answerer=answerer), host=server.host, port=server.port,
                    log_level="info")

