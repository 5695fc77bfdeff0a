"""Summaries of older turns: when a chat's history no longer fits the context, the turns the assembly had to
drop are summarised by the same model (the base model, greedy, short) instead of being silently forgotten.

The summary goes in the system part of the next turns (`Engine.prepare(summary=...)`, a part of kind
"summary" in what the model saw), and the turns it covers are no longer sent. The app runs `summarise` in a
background thread and stores the result with the chat (`chats.update_summary`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["SUMMARY_PROMPT", "SUMMARY_TOKENS", "dropped_history", "summarise"]

SUMMARY_TOKENS = 200  # a summary is at most this long
SUMMARY_PROMPT = (
    "请用简洁的中文概括下面这段对话的要点（出现的人物、发生的事、做过的约定和提到的重要细节），"
    "不超过150字，只输出概要。\n\n{previous}对话：\n{transcript}"
)


def dropped_history(parts: Sequence[Any]) -> int:
    """How many history messages a prepared turn had to leave out (they are the oldest ones)."""
    count = 0
    for part in parts:
        kind = part["kind"] if isinstance(part, Mapping) else part.kind
        included = part["included"] if isinstance(part, Mapping) else part.included
        if kind == "history" and not included:
            count += 1
    return count


def summarise(
    ask: Callable[..., str],
    messages: Sequence[Mapping[str, Any]],
    previous: str = "",
    user_name: str = "用户",
    character_name: str = "角色",
    persona: str | None = None,
) -> str:
    """The summary of `messages` (continuing `previous`, the summary of what came before them), written by the
    chat's own model (`persona`: its adapter; None: the base model) through `ask` (`Engine.ask`, which leaves
    the oldest lines out while the prompt does not fit the context); "" when the model wrote nothing."""
    lines = []
    for msg in messages:
        if not (msg.get("content") or "").strip():
            continue
        who = user_name if msg.get("role") == "user" else msg.get("persona_label") or character_name
        lines.append(f"{who}：{' '.join(msg['content'].split())}")
    if not lines:
        return previous
    head = f"之前的概要：{previous}\n\n" if previous.strip() else ""

    def render(kept: list[str]) -> str:
        return SUMMARY_PROMPT.format(previous=head, transcript="\n".join(kept))

    return ask(render, lines, persona, {"temperature": 0.0, "max_new_tokens": SUMMARY_TOKENS})
