"""`rolechat serve`: the OpenAI-compatible API over the same runtime as the app."""

from __future__ import annotations

import typer

from rolechat.cli.common import build, err_console
from rolechat.cli.options import Overrides, config_flags


def register(app: typer.Typer) -> None:
    @app.command()
    @config_flags("server", "llm", "rag", "chat")
    def serve(config: Overrides | None = None) -> None:
        """Serve the OpenAI-compatible API (/v1/chat/completions, streaming), the ChatGLM tutorial endpoint
        (POST /), knowledge-base routes, /health and /metrics for every persona (docs/api.md). Give the API
        key through ROLECHAT_SERVER_API_KEY or server.api_key_file rather than --api-key (visible in ps)."""
        import uvicorn

        from rolechat.api import create_app
        from rolechat.cli.chat import banner, engine_or_fail, load_runtime_or_fail

        server = build("server", config["server"])
        rag_cfg = build("rag", config["rag"])
        rt = load_runtime_or_fail(config["llm"])
        banner(rt)
        auth = "API key required" if server.key() else "no API key"
        models = ", ".join(rt.persona_names())
        err_console.print(f"serving on http://{server.host}:{server.port}/v1 ({auth}; models: {models})")
        engine = engine_or_fail(rt, rag_cfg, config["chat"])  # the [rag] and [chat] settings, as chat and ask
        uvicorn.run(
            create_app(rt, server, engine=engine),
            host=server.host,
            port=server.port,
            log_level="info",
            timeout_graceful_shutdown=5,  # on Ctrl-C / SIGTERM, open streams are cut after this
        )
