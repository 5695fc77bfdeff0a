"""Persona datasets: read Alpaca / ShareGPT / OpenAI-style JSON or JSONL into validated conversations.

Nothing heavy is imported here, so `rolechat train` can reject a bad file before torch loads. Every problem
is reported with the file, the line (JSONL line, or the line where a record of a JSON array starts), the
record number and the field. By default bad records are skipped and counted; `strict=True` raises.

Accepted record shapes (the format is detected per record):

- Alpaca: ``{"instruction", "input"?, "output", "system"?, "history"?: [[user, assistant], ...]}``
- ShareGPT: ``{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}], "system"?}``
- OpenAI: ``{"messages": [{"role": "user"|"assistant"|"system", "content": ...}]}``
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rolechat.finetune.records import DataError, Issue, Reading, RecordError, iter_json, read_records, read_text

__all__ = ["DataError", "Issue", "Conversation", "Dataset", "load_dataset"]

_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "system": "system",
}


@dataclass
class Conversation:
    """One training conversation: user/assistant turns (no system message) and the record's own system prompt."""

    messages: list[dict[str, str]]
    system: str = ""
    line: int = 0
    record: int = 0


@dataclass
class Dataset(Reading):
    """The usable conversations of a file plus what was rejected and why."""

    conversations: list[Conversation] = field(default_factory=list)
    formats: Counter = field(default_factory=Counter)

    @property
    def dataset_system(self) -> str:
        """The most common system prompt in the records ('' when none has one)."""
        counts = Counter(c.system for c in self.conversations if c.system)
        return counts.most_common(1)[0][0] if counts else ""

    def other_systems(self, system: str) -> list[Conversation]:
        """The conversations whose own system prompt is set and differs from `system` (the persona's): they
        are trained under the persona's, which is what inference will use."""
        return [c for c in self.conversations if c.system and c.system != system]

    def summary(self) -> dict[str, Any]:
        return {
            **self.tally("conversations", len(self.conversations)),
            "formats": dict(self.formats),
            "assistant_turns": sum(sum(m["role"] == "assistant" for m in c.messages) for c in self.conversations),
        }


def _text(rec: dict, key: str, *, required: bool, where: str | None = None) -> str:
    value = rec.get(key)
    label = where or key
    if value is None:
        if required:
            raise RecordError(label, "missing")
        return ""
    if not isinstance(value, str):
        raise RecordError(label, f"must be a string, got {type(value).__name__}")
    return value


def _alpaca(rec: dict) -> tuple[list[dict[str, str]], str]:
    instruction = _text(rec, "instruction", required=True)
    extra = _text(rec, "input", required=False)
    output = _text(rec, "output", required=True)
    prompt = f"{instruction}\n{extra}" if instruction.strip() and extra.strip() else instruction or extra
    if not prompt.strip():
        raise RecordError("instruction", "empty (and no input)")
    messages: list[dict[str, str]] = []
    history = rec.get("history") or []
    if not isinstance(history, list):
        raise RecordError("history", f"must be a list of [user, assistant] pairs, got {type(history).__name__}")
    for i, pair in enumerate(history):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(x, str) for x in pair):
            raise RecordError(f"history[{i}]", "must be a [user, assistant] pair of strings")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    return messages, _text(rec, "system", required=False)


def _turns(rec: dict, key: str, role_key: str, text_key: str) -> tuple[list[dict[str, str]], str]:
    turns = rec[key]
    if not isinstance(turns, list) or not turns:
        raise RecordError(key, "must be a non-empty list of messages")
    system = _text(rec, "system", required=False)
    messages = []
    for i, turn in enumerate(turns):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise RecordError(where, f"must be an object, got {type(turn).__name__}")
        raw_role = turn.get(role_key)
        role = _ROLES.get(raw_role) if isinstance(raw_role, str) else None
        if role is None:
            raise RecordError(f"{where}.{role_key}", f"unknown role {raw_role!r}")
        content = _text(turn, text_key, required=True, where=f"{where}.{text_key}")
        if role == "system":
            if messages:
                raise RecordError(where, "a system message may only come first")
            system = content
            continue
        messages.append({"role": role, "content": content})
    return messages, system


def _conversation(rec: Any) -> tuple[list[dict[str, str]], str, str]:
    if not isinstance(rec, dict):
        raise RecordError("", f"a record must be a JSON object, got {type(rec).__name__}")
    if "conversations" in rec:
        messages, system = _turns(rec, "conversations", "from", "value")
        kind = "sharegpt"
    elif "messages" in rec:
        messages, system = _turns(rec, "messages", "role", "content")
        kind = "openai"
    elif "instruction" in rec or "output" in rec:
        messages, system = _alpaca(rec)
        kind = "alpaca"
    else:
        raise RecordError("", "unknown record shape: expected instruction/output, conversations or messages")
    _check_turns(messages, "conversations" if kind == "sharegpt" else "messages" if kind == "openai" else "")
    return messages, system, kind


def _check_turns(messages: list[dict[str, str]], key: str) -> None:
    for i, m in enumerate(messages):
        expected = "user" if i % 2 == 0 else "assistant"
        where = f"{key}[{i}]" if key else ("output" if m["role"] == "assistant" else "instruction")
        if m["role"] != expected:
            raise RecordError(
                where, f"expected a {expected} message here (turns must alternate, starting with the user)"
            )
        if m["role"] == "assistant" and not m["content"].strip():
            raise RecordError(where, "empty reply")
    if not messages or messages[-1]["role"] != "assistant":
        raise RecordError(key or "output", "the conversation must end with an assistant reply")


def load_dataset(path: str | Path, *, strict: bool = False, dedupe: bool = True) -> Dataset:
    """Read and validate a data file. Bad records are skipped and listed in `.issues` (raised when `strict`)."""
    name = str(path)
    parsed = read_records(
        iter_json(read_text(path), name),
        name,
        _conversation,
        key=lambda item: json.dumps([item[1], item[0]], ensure_ascii=False),
        strict=strict,
        dedupe=dedupe,
    )
    out = Dataset(name, parsed.issues, parsed.records, parsed.duplicates)
    for line, number, (messages, system, kind) in parsed.items:
        out.formats[kind] += 1
        out.conversations.append(Conversation(messages, system, line, number))
    parsed.warn_skipped()
    return out
