"""What every route works with, kept on `app.state.services`: a router only needs `services(request)`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from rolechat.api.admission import Admission
from rolechat.api.config import ServerConfig
from rolechat.api.metrics import Metrics

__all__ = ["Services", "public_model", "services"]


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


def public_model(runtime: Any) -> str:
    """The base model's id as clients see it: a local folder by its name only (never the server's path)."""
    model_id = runtime.info.model_id
    return os.path.basename(model_id.rstrip("/")) if os.path.isabs(model_id) else model_id
