"""What every route works with, kept on `app.state.services`: a router only needs `services(request)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from rolechat.api.admission import Admission
from rolechat.api.config import ServerConfig
from rolechat.api.metrics import Metrics

__all__ = ["Services", "services"]


@dataclass
class Services:
    runtime: Any  # rolechat.llm.Runtime
    engine: Any  # rolechat.conversation.Engine
    config: ServerConfig
    admission: Admission
    metrics: Metrics
    jobs: Any = None  # rolechat.api.kb_routes.IndexJobs


def services(request: Request) -> Services:
    return request.app.state.services
