"""The HTTP API of `rolechat serve`, assembled: an OpenAI-compatible chat API over the runtime, the
classic ChatGLM tutorial endpoint, knowledge-base routes, `/health` and `/metrics`.

    app = create_app(runtime, ServerConfig(api_key="..."), engine)   # engine: a rolechat.conversation.Engine
    uvicorn.run(app, host=..., port=...)

Requests are served by the same runtime as the app and the CLI, through the one conversation engine.
Routers live in their own modules (chat, tutorial, kb_routes); a new one is `app.include_router(...)` and
finds what it needs with `rolechat.api.services.services(request)`. See docs/api.md for every route,
limit and error.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from rolechat.api import chat, classify, kb_routes, tutorial
from rolechat.api.admission import Admission
from rolechat.api.config import ServerConfig
from rolechat.api.errors import install_error_handlers
from rolechat.api.gate import Gate
from rolechat.api.metrics import CONTENT_TYPE_LATEST, Metrics
from rolechat.api.services import Services, public_model, services

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(runtime: Any, server: ServerConfig | None = None, engine: Any = None) -> FastAPI:
    """Build the app over `engine` (a rolechat.conversation.Engine; one over `runtime` by default)."""
    from rolechat.conversation import Engine

    server = server or ServerConfig()
    engine = engine or Engine(runtime)
    concurrency = server.max_concurrent or getattr(runtime, "parallel_generations", 1)
    admission = Admission(concurrency, server.max_queue, server.queue_timeout)
    metrics = Metrics(queue_depth=lambda: admission.waiting, in_flight=lambda: admission.active)
    admission.on_reject = lambda reason: metrics.rejected.labels(reason).inc()
    jobs = kb_routes.IndexJobs(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        jobs.shutdown()

    app = FastAPI(
        title="rolechat",
        version="0.1.0",
        summary="OpenAI-compatible chat over local role-play and knowledge models.",
        lifespan=lifespan,
    )
    app.state.services = Services(runtime, engine, server, admission, metrics, jobs)
    install_error_handlers(app)
    # the docs routes are ordinary routes: behind the key like everything but /health
    app.add_middleware(
        Gate,
        key=server.key(),
        body_limit=server.max_body_bytes,
        upload_limit=server.max_upload_bytes,
        metrics=metrics,
    )

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        """Liveness and load, answered on the event loop: never waits for the model."""
        svc = services(request)
        info = svc.runtime.info
        return {
            "status": "ok",
            "model": public_model(svc.runtime),
            "demo": info.is_demo,
            "in_flight": svc.admission.active,
            "queued": svc.admission.waiting,
        }

    @app.get("/metrics")
    async def prometheus_metrics(request: Request) -> Response:
        return Response(services(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(chat.router)
    app.include_router(kb_routes.router)
    app.include_router(tutorial.router)
    app.include_router(classify.router)
    return app
