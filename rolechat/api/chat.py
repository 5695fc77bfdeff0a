"""The OpenAI-compatible routes: `GET /v1/models`, `GET /v1/models/{id}`, `POST /v1/chat/completions`.

Each persona is a "model" (`base` is the plain base model). A request may add `"knowledge_base": "NAME"`
(and `"k"`) to answer from a knowledge base; the reply then carries `sources` (`[n]` in the text is
`sources[n-1]`). `"rolechat": {"user_name", "user_description", "show_prompt", "lorebooks", "scenario",
"authors_note", "lore_state", "scene", "scene_name", "speaker", "order"}` says who the user is in the
conversation ({{user}} in cards), asks for "what the model saw" (`prompt_parts`, first chunk when streaming),
and gives the chat its lorebooks, scenario override, author's note, timed lore state and scene. Every response
carries `rolechat: {"lore_state", "user_text"}` (and `speaker` in a scene): the state to send with the next
request, and the user's message as regex scripts left it; when a prompt had to leave older turns out, they are
summarised and `rolechat.summary` ({"text", "covers"}, in the last chunk when streaming) is to be sent back as
`rolechat.summary`, as the app keeps it with a chat. Every turn runs through a `conversation.Session`, as in
the app and the CLI: a scene reply comes without the speaker's own leading name. Streaming follows OpenAI's
chunk format, `stream_options.include_usage` included.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from rolechat.api.errors import APIError, internal_error
from rolechat.api.kb_routes import public_sources
from rolechat.api.schemas import ChatRequest, RolechatOptions
from rolechat.api.services import Services, public_model, services
from rolechat.api.turns import (
    RelayResponse,
    check_prompt,
    check_prompt_tokens,
    collect,
    finish_turn,
    resolve_persona,
    start_turn,
)

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter()


def _model_card(svc: Services, name: str, created: int) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "rolechat",
        "root": public_model(svc.runtime),
    }


@router.get("/v1/models")
def list_models(request: Request) -> dict[str, Any]:
    svc = services(request)
    svc.runtime.refresh_personas()
    now = int(time.time())
    return {"object": "list", "data": [_model_card(svc, name, now) for name in svc.runtime.persona_names()]}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    svc = services(request)
    await run_in_threadpool(resolve_persona, svc.runtime, model_id)  # a 404 naming the models there are
    return _model_card(svc, model_id, int(time.time()))


def _clip_fixed(svc: Services, turn: Any, stop: list[str] | None, max_tokens: int | None) -> bool:
    """Apply `stop` and `max_tokens` to a reply known without the model; True when max_tokens cut it."""
    text = turn.fixed_reply
    cuts = [text.find(s) for s in stop or () if s and s in text]
    if cuts:
        text = text[: min(cuts)]
    cut = False
    if max_tokens:
        tok = svc.runtime.tokenizer
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if len(ids) > max_tokens:
            text, cut = tok.decode(ids[:max_tokens], skip_special_tokens=True).rstrip("\ufffd"), True
    turn.fixed_reply = text
    return cut


def _prepare(svc: Services, req: ChatRequest, texts: list[str], held: dict[str, Any]) -> tuple[Any, Any]:
    """Runs on the relay thread: persona, token limit, the request's `Session` and its reply (kept in `held`)."""
    from rolechat.rag import list_kbs

    persona = resolve_persona(svc.runtime, req.model)
    check_prompt_tokens(svc, texts)
    if req.knowledge_base and req.knowledge_base not in list_kbs():
        raise APIError(
            404,
            f"Knowledge base {req.knowledge_base!r} not found; available: {', '.join(list_kbs()) or 'none'}.",
            param="knowledge_base",
            code="knowledge_base_not_found",
        )
    options = req.rolechat or RolechatOptions()
    session = held["session"] = _session(svc, req, options, persona)
    speaker = _speaker(svc, req, options, session) if options.scene or options.scene_name else None
    reply = held["reply"] = session.reply(speaker)
    turn = reply.turn
    if turn.sources:  # as clients see them: no server paths
        turn.sources = public_sources(req.knowledge_base, turn.sources, svc.engine)
    # a reply known without the model: the request's stop and max_tokens still apply
    length_cut = turn.fixed_reply is not None and _clip_fixed(svc, turn, req.stop_list(), req.max_new_tokens())
    stream = reply.stream
    if length_cut:  # re-tokenizing the cut text may count differently; the reply never exceeds max_tokens
        stream.stats.finish_reason = "length"
        stream.stats.completion_tokens = min(stream.stats.completion_tokens, req.max_new_tokens())
    return turn, stream


def _session(svc: Services, req: ChatRequest, options: RolechatOptions, persona: str | None) -> Any:
    """The conversation the request carries: its messages, who the user is, the chat's setting and summary."""
    from rolechat.conversation import UserPersona
    from rolechat.conversation.session import Session, Summary

    system = "\n\n".join(m.text() for m in req.messages if m.role in ("system", "developer") and m.text())
    history = [
        {"role": m.role, "content": m.text(), **({"name": m.name} if m.name else {})}
        for m in req.messages
        if m.role in ("user", "assistant")
    ]
    params = {
        "temperature": req.temperature,
        "top_p": req.top_p,
        "seed": req.seed,
        "max_new_tokens": req.max_new_tokens(),
        "stop": req.stop_list(),
    }
    saved = options.summary.model_dump() if options.summary is not None else None
    return Session(
        svc.engine,
        persona=persona,
        user=UserPersona(options.user_name, options.user_description),
        setting=_setting(options),
        knowledge_base=req.knowledge_base,
        k=req.k,
        answer_mode=req.answer_mode,
        system=system,
        params=params,
        history=history,
        summary=Summary.of(saved, sum(1 for m in history[:-1] if m["content"])),
    )


def _setting(options: RolechatOptions) -> Any:
    """The chat's setting from the request: library lorebooks only (a client names no server file)."""
    from rolechat.conversation.books import load_book
    from rolechat.conversation.lorebook import CardError
    from rolechat.conversation.setting import AuthorsNote, ChatSetting

    for name in options.lorebooks:
        try:
            load_book(name, library_only=True)
        except CardError as exc:
            raise APIError(404, str(exc), param="rolechat.lorebooks", code="lorebook_not_found") from None
    note = options.authors_note
    return ChatSetting(
        lorebooks=list(options.lorebooks),
        scenario=options.scenario,
        authors_note=AuthorsNote(**note.model_dump()) if note is not None and note.text else None,
        lore_state=dict(options.lore_state or {}),
    )


def _speaker(svc: Services, req: ChatRequest, options: RolechatOptions, session: Any) -> str:
    """Make `session` the request's scene (`scene`, or the saved scene `scene_name`, whose books and scenario
    then join the chat's); who replies: `speaker`, or the next by `order`."""
    import random

    if req.knowledge_base:
        raise APIError(400, "A scene answers without a knowledge base.", param="knowledge_base")
    if options.scene_name:
        from rolechat.conversation.scene import load_scene

        try:
            saved = load_scene(options.scene_name)
        except ValueError as exc:
            raise APIError(404, str(exc), param="rolechat.scene_name", code="scene_not_found") from None
        setting = session.setting
        merged = saved.setting(setting.lorebooks, setting.scenario)
        setting.lorebooks, setting.scenario = merged.lorebooks, merged.scenario
        session.characters, session.order = list(saved.characters), options.order or saved.order
        session.allow_self, session.muted = saved.allow_self_responses, list(saved.muted)
    else:
        session.characters = [resolve_persona(svc.runtime, name) or name for name in options.scene or []]
        session.order = options.order or "natural"
    if options.speaker is None and session.order == "manual":
        raise APIError(400, "The manual order picks nobody: name the speaker.", param="rolechat.speaker")
    if options.speaker is not None and options.speaker not in session.characters:
        scene = ", ".join(session.characters)
        raise APIError(400, f"speaker {options.speaker!r} is not in the scene ({scene}).", param="rolechat.speaker")
    found = session.speakers(options.speaker, random.Random(req.seed))
    if not found:
        raise ValueError(f"speaker order {session.order!r} picks nobody: name the speaker")
    return found[0]


async def _summary(held: dict[str, Any], options: RolechatOptions | None) -> dict[str, Any] | None:
    """The chat's summary for the client's next request: written now when this turn had to leave older turns
    out, else the one the request sent (None without one)."""
    session, reply = held.get("session"), held.get("reply")
    job = session.summary_job(reply) if session is not None and reply is not None else None
    if job is not None:
        try:
            written = await run_in_threadpool(job.run)
        except Exception:  # the reply stands; the turns are dropped, as before
            log.exception("summarising the chat")
            written = None
        if written is not None:
            return written.as_dict()
    return options.summary.model_dump() if options is not None and options.summary is not None else None


def _usage(stream: Any) -> dict[str, int]:
    stats = stream.stats
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": stats.prompt_tokens + stats.completion_tokens,
    }


def _finish_reason(stream: Any) -> str:
    return "length" if stream.stats.finish_reason == "length" else "stop"


def _check(svc: Services, req: ChatRequest) -> list[str]:
    bad = req.unsupported()
    if bad:
        name, value = bad
        shown = json.dumps(value, ensure_ascii=True, default=str)[:80]
        raise APIError(
            400,
            f"{name} = {shown} is not supported by rolechat (leave it out, or use its default).",
            param=name,
            code="unsupported_parameter",
        )
    texts = [m.text() for m in req.messages]
    check_prompt(svc, texts)
    if req.messages[-1].role != "user":
        raise APIError(400, "The last message must come from the user.", param="messages")
    return texts


@router.post("/v1/chat/completions")
async def chat_completions(req: ChatRequest, request: Request):
    svc = services(request)
    texts = _check(svc, req)
    held: dict[str, Any] = {}
    granted, relay = await start_turn(svc, request, partial(_prepare, svc, req, texts, held))
    turn, stream = relay.turn, relay.stream
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    extra: dict[str, Any] = {}
    if req.knowledge_base:  # how the answer was made; grounded false: the knowledge base does not answer
        extra = {"sources": turn.sources or [], "answer_mode": turn.answer_mode, "grounded": turn.grounded}
    if req.rolechat and req.rolechat.show_prompt:
        extra["prompt_parts"] = turn.what_the_model_saw()
    extra["rolechat"] = {"lore_state": turn.lore_state, "user_text": turn.user_text}  # for the client's next turn
    if turn.speaker:  # a scene: who replied
        extra["rolechat"]["speaker"] = turn.speaker

    if not req.stream:
        try:
            text = await collect(relay, request)
            summary = await _summary(held, req.rolechat)
        finally:
            await finish_turn(svc, relay, granted)
        if summary is not None:
            extra["rolechat"]["summary"] = summary
        if req.knowledge_base:
            extra["grounded"] = svc.engine.grounded(turn, text)
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish_reason(stream)}
        body = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": req.model,
            "choices": [choice],
            "usage": _usage(stream),
            **extra,
        }
        return JSONResponse(body)

    include_usage = bool(req.stream_options and req.stream_options.include_usage)

    def chunk(choices: list[dict[str, Any]], **more: Any) -> str:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": req.model}
        body.update(choices=choices, **more)
        if include_usage:
            body.setdefault("usage", None)
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    async def events() -> AsyncIterator[str]:
        yield chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}], **extra)
        try:
            async for piece in relay.pieces():
                yield chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        except Exception:  # headers are sent: report in-band, as OpenAI does
            log.exception("generation failed mid-stream")
            yield f"data: {json.dumps(internal_error().body())}\n\n"
            return
        summary = await _summary(held, req.rolechat)
        last = {"rolechat": {"summary": summary}} if summary is not None else {}
        yield chunk([{"index": 0, "delta": {}, "finish_reason": _finish_reason(stream)}], **last)
        if include_usage:
            yield chunk([], usage=_usage(stream))
        yield "data: [DONE]\n\n"

    return RelayResponse(
        events(),
        on_close=partial(finish_turn, svc, relay, granted),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
