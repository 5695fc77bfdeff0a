"""Running one turn under admission control: the part the chat, tutorial (and future) routes share.

    granted, relay = await start_turn(svc, request, prepare)  # 429 when busy; 4xx when prepare() refuses
    try:
        text = await collect(relay, request)            # or stream relay.pieces() from a RelayResponse
    finally:
        await finish_turn(svc, relay, granted)          # cancels if unfinished, frees the slot

`prepare()` runs on the relay thread: everything that may block (persona reloads, tokenizing, retrieval,
a follow-up rewrite) happens there, never on the event loop or the shared thread pool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
from fastapi import Request
from starlette.responses import StreamingResponse

from rolechat.api.errors import APIError
from rolechat.api.relay import Relay
from rolechat.api.services import Services, public_model

__all__ = [
    "RelayResponse",
    "check_prompt",
    "collect",
    "finish_turn",
    "resolve_persona",
    "start_turn",
]

log = logging.getLogger(__name__)


def resolve_persona(runtime: Any, model: str | None) -> str | None:
    """Map an OpenAI `model` to a persona: a persona name, `base`, or the base model's own id (-> None)."""
    if model in (None, "", "base", runtime.info.model_id, public_model(runtime)):
        return None
    if model not in runtime.persona_names():
        runtime.refresh_personas()  # a persona trained since start-up (a rescan only when a folder changed)
    if model not in runtime.persona_names():
        raise APIError(
            404,
            f"The model {model!r} does not exist; available: {', '.join(runtime.persona_names())}.",
            param="model",
            code="model_not_found",
        )
    return model


def check_prompt(svc: Services, texts: Sequence[str], param: str = "messages") -> None:
    """Refuse oversized prompts before the engine sees them: count and characters first (cheap), then
    tokens only when the UTF-8 size could exceed the token limit (a token is at least one byte)."""
    cfg = svc.config
    if len(texts) > cfg.max_messages:
        raise APIError(
            400,
            f"Too many messages: {len(texts)} (server.max_messages = {cfg.max_messages}).",
            param=param,
            code="too_many_messages",
        )
    chars = sum(len(t) for t in texts)
    if chars > cfg.max_prompt_chars:
        raise APIError(
            400,
            f"The messages hold {chars} characters; the limit is {cfg.max_prompt_chars} (server.max_prompt_chars).",
            param=param,
            code="context_length_exceeded",
        )


def check_prompt_tokens(svc: Services, texts: Sequence[str], param: str = "messages") -> None:
    """The token limit (blocking: call it on the relay thread)."""
    limit = svc.config.max_prompt_tokens
    if sum(len(t.encode("utf-8")) for t in texts) <= limit:
        return
    tokenizer = svc.runtime.tokenizer
    tokens = sum(len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"])
    if tokens > limit:
        raise APIError(
            400,
            f"The messages are {tokens} tokens; the limit is {limit} (server.max_prompt_tokens).",
            param=param,
            code="context_length_exceeded",
        )


def _as_api_error(exc: BaseException) -> BaseException:
    from rolechat.conversation import ContextOverflow

    if isinstance(exc, ContextOverflow):
        return APIError(400, str(exc), param="messages", code="context_length_exceeded")
    if isinstance(exc, ValueError) and not isinstance(exc, APIError):
        return APIError(400, str(exc))
    return exc


async def _disconnected(request: Request) -> None:
    """Returns once the client has hung up (the body has been read: nothing else can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _admit(svc: Services, request: Request) -> float:
    """A slot, or a 499 if the client hangs up while waiting (so a queue of abandoned requests drains
    without running any of them)."""
    granted: float | None = None
    refused: APIError | None = None  # raised outside the task group, which would wrap it in an ExceptionGroup
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            await _disconnected(request)
            group.cancel_scope.cancel()

        group.start_soon(watch)
        try:
            granted = await svc.admission.acquire()
        except APIError as exc:
            refused = exc
        group.cancel_scope.cancel()
    if refused is not None:
        raise refused
    if granted is None:
        raise APIError(499, "The client closed the request while it waited for a slot.", type="client_closed_request")
    return granted


async def start_turn(svc: Services, request: Request, prepare: Callable[[], tuple[Any, Any]]) -> tuple[float, Relay]:
    """Wait for a slot, then run `prepare` on a relay; a ValueError from it becomes a 400."""
    granted = await _admit(svc, request)
    try:
        relay = Relay(prepare)
    except BaseException:
        svc.admission.release(granted)
        raise
    try:
        await relay.ready()
    except BaseException as exc:
        await finish_turn(svc, relay, granted)
        raise _as_api_error(exc) from None
    return granted, relay


async def finish_turn(svc: Services, relay: Relay, granted: float) -> None:
    """Cancel (if unfinished), wait until the model is free, count tokens, hand the slot on."""
    try:
        await relay.aclose()
        stats = getattr(relay.stream, "stats", None)
        if stats is not None:
            svc.metrics.count_tokens(stats.prompt_tokens, stats.completion_tokens)
    finally:
        svc.admission.release(granted)


async def collect(relay: Relay, request: Request) -> str:
    """The whole reply; a client that hangs up meanwhile cancels the generation."""

    async def watch() -> None:
        await _disconnected(request)
        relay.close()

    watcher = asyncio.create_task(watch())
    try:
        return "".join([piece async for piece in relay.pieces()])
    finally:
        watcher.cancel()


class RelayResponse(StreamingResponse):
    """A streaming response that always runs `on_close` once it ends, however it ends (finished, client
    gone, server stopping), so the generation is cancelled and the slot freed at once."""

    def __init__(self, content: Any, on_close: Callable[[], Awaitable[None]], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()
