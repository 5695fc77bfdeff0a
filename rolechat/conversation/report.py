"""The prompt view as a file: every part of a turn's prompt with why it is there (or is not), and the messages
the runtime renders, as text for people or JSON for programs (`rolechat chat --prompt-file`).

    text = report([turn, ...])           # one section per turn: parts (full text), then the messages
    data = report([turn], as_json=True)  # {"turns": [{"persona", "speaker", "prompt_tokens", "parts", ...}]}
    text = report(turns, render=engine.rendered)   # + each turn's exact text as the tokenizer receives it

`rolechat chat --prompt-file PATH` writes the text report with the rendered prompt to PATH and, beside it, the
JSON of the same turns (PATH with the suffix .json); a PATH ending in .json gets the JSON alone.

A lore part names the book it came from (`source`) and says why it fired: the key found (in a recursion
sweep or not), constant, sticky or `@@activate`, with its order and position. Entries the scan activated but
left out (the budget spent, a failed probability roll, an inclusion group lost, cooldown, delay) are listed
as `lore-skipped` parts, not sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from rolechat.conversation.assembly import NOT_SENT

__all__ = ["report", "turn_record"]


def turn_record(turn: Any, render: Callable[[Any], str] | None = None) -> dict[str, Any]:
    """One turn as plain data; `render` (`Engine.rendered`) adds the exact text the tokenizer receives."""
    return {
        "persona": turn.persona or "base",
        "speaker": turn.speaker,
        "prompt_tokens": turn.prompt_tokens,
        "budget": turn.budget,
        "fixed_reply": turn.fixed_reply,
        "parts": turn.what_the_model_saw(),
        "messages": [dict(m) for m in turn.messages],
        "lore_state": turn.lore_state,
        "answer_mode": getattr(turn, "answer_mode", ""),
        "rendered": render(turn) if render is not None else None,
    }


def _status(part: dict[str, Any]) -> str:
    if part["kind"] in NOT_SENT:
        return "left out" if part["kind"] == "lore-skipped" else "not sent"
    return "sent" if part["included"] else "dropped"


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines()) or "    "


def _turn_text(n: int, record: dict[str, Any]) -> str:
    who = record["persona"] + (f", speaker {record['speaker']}" if record["speaker"] else "")
    lines = [
        f"# turn {n} ({who})",
        f"prompt: {record['prompt_tokens']} tokens of {record['budget']} the context leaves",
        "",
    ]
    lines.append("## parts")
    for part in record["parts"]:
        head = f"[{_status(part)}] {part['kind']} | {part['label']} | {part['tokens']} tokens"
        if part.get("source"):
            head += f" | book {part['source']}"
        if part.get("why"):
            head += f" | {part['why']}"
        lines += [head, _indent(part["text"])]
    lines += ["", "## messages"]
    for message in record["messages"]:
        lines += [f"### {message['role']}", message["content"], ""]
    if record.get("rendered"):
        lines += ["## rendered (the exact text the tokenizer receives)", record["rendered"], ""]
    if record["fixed_reply"] is not None:
        lines += ["## fixed reply", record["fixed_reply"], ""]
    return "\n".join(lines)


def report(turns: Sequence[Any], *, as_json: bool = False, render: Callable[[Any], str] | None = None) -> str:
    """The prompt view of `turns` (see the module docstring); `render`: see `turn_record`."""
    records = [turn_record(t, render) for t in turns]
    if as_json:
        return json.dumps({"turns": records}, ensure_ascii=False, indent=2) + "\n"
    return "\n\n".join(_turn_text(n, r) for n, r in enumerate(records, 1)) + "\n"
