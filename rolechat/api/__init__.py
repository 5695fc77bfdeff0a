"""The HTTP API (`rolechat serve`): OpenAI-compatible chat, the ChatGLM tutorial endpoint and
knowledge-base routes, on top of the conversation engine (see rolechat.api.app).

`ServerConfig` imports nothing heavy; `create_app` (FastAPI) is imported on first use.
"""

from typing import Any

from rolechat.api.config import ServerConfig

__all__ = ["ServerConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from rolechat.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
