"""`POST /`: the endpoint of the classic ChatGLM FastAPI tutorial (THUDM's api.py, and the self-llm
ChatGLM3 lesson built on it), on the same runtime, so the scripts written against it keep working.

    curl -X POST http://127.0.0.1:8000 -H 'Content-Type: application/json' \\
         -d '{"prompt": "你好", "history": [], "persona": "miaomiao"}'
    -> {"response": "...", "history": [["你好", "..."]], "status": 200, "time": "2026-11-30 12:00:00"}

Fields as in the tutorial: `prompt`, `history` (ChatGLM's `[[question, answer], ...]`, or ChatGLM3's
role dicts; the reply's history has the form that was sent), `max_length` (prompt plus reply, in tokens,
as in `model.chat`), `top_p`, `temperature`; plus `model` or `persona` to pick a persona. Missing
values take the runtime's defaults.
"""

from __future__ import annotations

import datetime
from dataclasses import replace
from functools import partial
from typing import Any

from fastapi import APIRouter, Request

from rolechat.api.errors import APIError
from rolechat.api.schemas import HistoryMessage, TutorialRequest
from rolechat.api.services import Services, services
from rolechat.api.turns import check_prompt, check_prompt_tokens, collect, finish_turn, resolve_persona, start_turn
from rolechat.conversation.session import Session

__all__ = ["router"]

router = APIRouter()


def _messages(history: list[Any]) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    for item in history:
        if isinstance(item, HistoryMessage):
            messages.append({"role": item.role, "content": item.content})
        else:
            question, answer = item
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return messages


def _prepare(svc: Services, req: TutorialRequest, history: list[dict[str, str]]) -> tuple[Any, Any]:
    persona = resolve_persona(svc.runtime, req.persona or req.model)
    check_prompt_tokens(svc, [m["content"] for m in history] + [req.prompt], param="history")
    system = "\n\n".join(m["content"] for m in history if m["role"] == "system")
    params = {"temperature": req.temperature, "top_p": req.top_p}
    said = [m for m in history if m["role"] in ("user", "assistant")] + [{"role": "user", "content": req.prompt}]
    reply = Session(svc.engine, persona=persona, system=system, params=params, history=said).reply()
    turn = reply.turn
    if req.max_length is not None:  # ChatGLM's max_length bounds prompt + reply
        room = req.max_length - turn.prompt_tokens
        if room < 1:
            raise APIError(
                400,
                f"The prompt is {turn.prompt_tokens} tokens; max_length {req.max_length} leaves no room for a reply.",
                param="max_length",
            )
        turn.params = replace(turn.params, max_new_tokens=min(turn.params.max_new_tokens, room))
    return turn, reply.stream


@router.post("/")
async def tutorial_chat(req: TutorialRequest, request: Request) -> dict[str, Any]:
    svc = services(request)
    history = _messages(req.history or [])
    check_prompt(svc, [m["content"] for m in history] + [req.prompt], param="history")
    granted, relay = await start_turn(svc, request, partial(_prepare, svc, req, history))
    try:
        response = await collect(relay, request)
    finally:
        await finish_turn(svc, relay, granted)
    if req.history and isinstance(req.history[0], HistoryMessage):
        new_history: list[Any] = [m.model_dump() for m in req.history]
        new_history += [{"role": "user", "content": req.prompt}, {"role": "assistant", "content": response}]
    else:
        new_history = [list(pair) for pair in req.history or []] + [[req.prompt, response]]
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    return {"response": response, "history": new_history, "status": 200, "time": now}
