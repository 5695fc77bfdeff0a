"""An OpenAI-compatible HTTP API over the runtime: `/v1/models`, `/v1/chat/completions` (streaming or not).

Each persona is a "model" (`base` is the plain base model). Requests are served by the same runtime as the
app and the CLI, so switching persona per request costs nothing and requests never mix personas.
A request may add `"knowledge_base": "NAME"` (and `"k"`) to answer from a knowledge base with sources, and
`"rolechat": {"user_name": ..., "user_description": ..., "show_prompt": true}`: who the user is in the
conversation ({{user}} in cards), and "what the model saw" (`prompt_parts`: every part of the prompt with
its token count, dropped ones marked) in the response (the first chunk when streaming).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from rolechat.api.classify import classify_router
from rolechat.api.config import ServerConfig

__all__ = ["ServerConfig", "create_app"]

log = logging.getLogger(__name__)


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class RolechatOptions(BaseModel):
    """rolechat's own request extension (field `rolechat`)."""

    user_name: str = Field(default="", max_length=100)
    user_description: str = Field(default="", max_length=4000)
    show_prompt: bool = False


class ChatRequest(BaseModel):
    model: str = "base"
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    knowledge_base: str | None = None
    k: int | None = Field(default=None, ge=1, le=50)
    rolechat: RolechatOptions | None = None


def _persona(runtime: Any, model: str) -> str | None:
    """Map an OpenAI `model` field to a persona: a persona name, `base`, or the base model's own id."""
    if model in ("base", "", runtime.info.model_id):
        return None
    if model not in runtime.persona_names():
        runtime.reload_personas()  # a persona trained since start-up
    if model not in runtime.persona_names():
        raise HTTPException(404, f"model {model!r} not found; available: {', '.join(runtime.persona_names())}")
    return model


def create_app(runtime: Any, server: ServerConfig | None = None, engine: Any = None) -> FastAPI:
    """Build the FastAPI app over `engine` (a rolechat.conversation.Engine; one over `runtime` by default)."""
    from rolechat.conversation import Engine, UserPersona

    server = server or ServerConfig()
    engine = engine or Engine(runtime)
    app = FastAPI(title="rolechat", version="0.1.0")

    def auth(authorization: str | None = Header(default=None)) -> None:
        if server.api_key and authorization != f"Bearer {server.api_key}":
            raise HTTPException(401, "missing or wrong API key (Authorization: Bearer <key>)")

    app.include_router(classify_router(runtime.cfg.device), dependencies=[Depends(auth)])

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": runtime.info.model_id, "demo": runtime.info.is_demo}

    @app.get("/v1/models", dependencies=[Depends(auth)])
    def models() -> dict[str, Any]:
        runtime.reload_personas()
        now = int(time.time())
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": now, "owned_by": "rolechat", "root": runtime.info.model_id}
                for name in runtime.persona_names()
            ],
        }

    @app.post("/v1/chat/completions", dependencies=[Depends(auth)])
    def chat_completions(req: ChatRequest):
        persona = _persona(runtime, req.model)
        params = {
            "temperature": req.temperature,
            "top_p": req.top_p,
            "seed": req.seed,
            "max_new_tokens": req.max_completion_tokens or req.max_tokens,
            "stop": [req.stop] if isinstance(req.stop, str) else req.stop,
        }
        messages = [m.model_dump() for m in req.messages]
        if messages[-1]["role"] != "user":
            raise HTTPException(400, "the last message must come from the user")
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        options = req.rolechat or RolechatOptions()
        try:
            turn = engine.prepare(
                messages[-1]["content"],
                character=persona,
                history=messages[:-1],
                user=UserPersona(options.user_name, options.user_description),
                knowledge_base=req.knowledge_base,
                k=req.k,
                system=system,
                params=params,
            )
            stream = engine.stream(turn)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        pieces, stats = stream, stream.stats
        sources = turn.sources or []
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        extra = {"sources": sources} if req.knowledge_base else {}
        if options.show_prompt:
            extra["prompt_parts"] = turn.what_the_model_saw()

        def usage() -> dict[str, int] | None:
            if stats is None:
                return None
            return {
                "prompt_tokens": stats.prompt_tokens,
                "completion_tokens": stats.completion_tokens,
                "total_tokens": stats.prompt_tokens + stats.completion_tokens,
            }

        def finish() -> str:
            return "length" if stats is not None and stats.finish_reason == "length" else "stop"

        if not req.stream:
            text = "".join(pieces)
            return JSONResponse(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": req.model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish()}
                    ],
                    "usage": usage(),
                    **extra,
                }
            )

        def events() -> Iterator[str]:
            def chunk(delta: dict, reason: str | None = None, **more: Any) -> str:
                body = {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": req.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": reason}],
                    **more,
                }
                return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

            yield chunk({"role": "assistant", "content": ""}, **extra)
            try:
                for piece in pieces:
                    yield chunk({"content": piece})
            finally:
                close = getattr(pieces, "close", None) or getattr(iter(pieces), "close", None)
                if close:
                    close()
            yield chunk({}, finish(), usage=usage())
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app
