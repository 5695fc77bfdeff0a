"""The OpenAI-compatible HTTP API (`rolechat serve`): routes on top of the conversation engine."""

from rolechat.api.app import ServerConfig, create_app

__all__ = ["ServerConfig", "create_app"]
