"""The HTTP API (`rolechat serve`): OpenAI-compatible chat, the ChatGLM tutorial endpoint and
knowledge-base routes, on top of the conversation engine. See rolechat.api.app."""

from rolechat.api.app import create_app
from rolechat.api.config import ServerConfig

__all__ = ["ServerConfig", "create_app"]
