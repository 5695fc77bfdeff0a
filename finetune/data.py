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
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rolechat.limits import MAX_DEPTH, InputError, check_depth, load_json

__all__ = ["DataError", "Issue", "Conversation", "Dataset", "load_dataset"]

log = logging.getLogger(__name__)

_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "system": "system",
}


class DataError(ValueError):
    """The data file cannot be used (unreadable, not JSON, or a bad record under --strict)."""


@dataclass(frozen=True)
class Issue:
    """One rejected record: where it is and what is wrong with it."""

    file: str
    line: int
    record: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: record {self.record}"
        return f"{where}: field {self.field!r}: {self.message}" if self.field else f"{where}: {self.message}"


@dataclass
class Conversation:
    """One training conversation: user/assistant turns (no system message) and the record's own system prompt."""

    messages: list[dict[str, str]]
    system: str = ""
    line: int = 0
    record: int = 0


@dataclass
class Dataset:
    """The usable conversations of a file plus what was rejected and why."""

    path: str
    conversations: list[Conversation] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    records: int = 0
    duplicates: int = 0
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
            "file": self.path,
            "records": self.records,
            "conversations": len(self.conversations),
            "skipped": len(self.issues),
            "duplicates_removed": self.duplicates,
            "formats": dict(self.formats),
            "assistant_turns": sum(sum(m["role"] == "assistant" for m in c.messages) for c in self.conversations),
        }


class _Bad(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


def _iter_json(text: str, name: str) -> Iterator[tuple[int, Any]]:
    """(line, record) pairs from a JSON array or from JSON lines, with precise positions on syntax errors."""
    decoder = json.JSONDecoder()
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("["):
        pos = text.index("[") + 1
        line = text.count("\n", 0, pos) + 1
        last = pos
        while True:
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            if pos < len(text) and text[pos] == "]":
                return
            line += text.count("\n", last, pos)
            last = pos
            try:
                obj, end = decoder.raw_decode(text, pos)
                check_depth(obj)
            except json.JSONDecodeError as exc:
                raise DataError(f"{name}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}") from None
            except (InputError, RecursionError, ValueError) as exc:  # too deep (or too long a number) to read
                raise DataError(f"{name}:{line}: {_too_deep(exc)}") from None
            yield line, obj
            pos = end
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            if pos < len(text) and text[pos] == ",":
                pos += 1
            elif pos < len(text) and text[pos] == "]":
                return
            else:
                doc_line = text.count("\n", 0, pos) + 1
                col = pos - (text.rfind("\n", 0, pos) + 1) + 1
                raise DataError(f"{name}:{doc_line}:{col}: malformed JSON: expected ',' or ']' after a record")
    elif stripped.startswith("{") and not _looks_like_jsonl(stripped):
        try:
            obj = json.loads(text)
            check_depth(obj)
        except json.JSONDecodeError as exc:
            raise DataError(f"{name}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}") from None
        except (InputError, RecursionError, ValueError) as exc:
            raise DataError(f"{name}: {_too_deep(exc)}") from None
        records = obj.get("data") if isinstance(obj, dict) else None
        if not isinstance(records, list):
            raise DataError(f"{name}: expected a JSON array of records, JSON lines, or an object with a 'data' array")
        for rec in records:
            yield 0, rec
    else:
        for number, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                record = load_json(raw)
            except InputError as exc:
                record = _Malformed(f"malformed JSON: {str(exc).removeprefix('invalid JSON ')}")
            yield number, record


def _looks_like_jsonl(text: str) -> bool:
    first = text.split("\n", 1)[0].strip()
    try:
        load_json(first)
        return True
    except InputError:
        return False


def _too_deep(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, InputError | ValueError) else f"nested deeper than {MAX_DEPTH} levels"


@dataclass
class _Malformed:
    message: str


def _text(rec: dict, key: str, *, required: bool, where: str | None = None) -> str:
    value = rec.get(key)
    label = where or key
    if value is None:
        if required:
            raise _Bad(label, "missing")
        return ""
    if not isinstance(value, str):
        raise _Bad(label, f"must be a string, got {type(value).__name__}")
    return value


def _alpaca(rec: dict) -> tuple[list[dict[str, str]], str]:
    instruction = _text(rec, "instruction", required=True)
    extra = _text(rec, "input", required=False)
    output = _text(rec, "output", required=True)
    prompt = f"{instruction}\n{extra}" if instruction.strip() and extra.strip() else instruction or extra
    if not prompt.strip():
        raise _Bad("instruction", "empty (and no input)")
    messages: list[dict[str, str]] = []
    history = rec.get("history") or []
    if not isinstance(history, list):
        raise _Bad("history", f"must be a list of [user, assistant] pairs, got {type(history).__name__}")
    for i, pair in enumerate(history):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(x, str) for x in pair):
            raise _Bad(f"history[{i}]", "must be a [user, assistant] pair of strings")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    return messages, _text(rec, "system", required=False)


def _turns(rec: dict, key: str, role_key: str, text_key: str) -> tuple[list[dict[str, str]], str]:
    turns = rec[key]
    if not isinstance(turns, list) or not turns:
        raise _Bad(key, "must be a non-empty list of messages")
    system = _text(rec, "system", required=False)
    messages = []
    for i, turn in enumerate(turns):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise _Bad(where, f"must be an object, got {type(turn).__name__}")
        raw_role = turn.get(role_key)
        role = _ROLES.get(raw_role) if isinstance(raw_role, str) else None
        if role is None:
            raise _Bad(f"{where}.{role_key}", f"unknown role {raw_role!r}")
        content = _text(turn, text_key, required=True, where=f"{where}.{text_key}")
        if role == "system":
            if messages:
                raise _Bad(where, "a system message may only come first")
            system = content
            continue
        messages.append({"role": role, "content": content})
    return messages, system


def _conversation(rec: Any) -> tuple[list[dict[str, str]], str, str]:
    if not isinstance(rec, dict):
        raise _Bad("", f"a record must be a JSON object, got {type(rec).__name__}")
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
        raise _Bad("", "unknown record shape: expected instruction/output, conversations or messages")
    _check_turns(messages, "conversations" if kind == "sharegpt" else "messages" if kind == "openai" else "")
    return messages, system, kind


def _check_turns(messages: list[dict[str, str]], key: str) -> None:
    for i, m in enumerate(messages):
        expected = "user" if i % 2 == 0 else "assistant"
        where = f"{key}[{i}]" if key else ("output" if m["role"] == "assistant" else "instruction")
        if m["role"] != expected:
            raise _Bad(where, f"expected a {expected} message here (turns must alternate, starting with the user)")
        if m["role"] == "assistant" and not m["content"].strip():
            raise _Bad(where, "empty reply")
    if not messages or messages[-1]["role"] != "assistant":
        raise _Bad(key or "output", "the conversation must end with an assistant reply")


def load_dataset(path: str | Path, *, strict: bool = False, dedupe: bool = True) -> Dataset:
    """Read and validate a data file. Bad records are skipped and listed in `.issues` (raised when `strict`)."""
    path = Path(path)
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    out = Dataset(name)
    seen: set[str] = set()
    for number, (line, rec) in enumerate(_iter_json(text, name), start=1):
        out.records += 1
        try:
            if isinstance(rec, _Malformed):
                raise _Bad("", rec.message)
            messages, system, kind = _conversation(rec)
        except _Bad as bad:
            issue = Issue(name, line, number, bad.field, bad.message)
            if strict:
                raise DataError(f"{issue} (--strict stops at the first bad record)") from None
            out.issues.append(issue)
            continue
        key = json.dumps([system, messages], ensure_ascii=False)
        if key in seen:
            out.duplicates += 1
            if dedupe:
                continue
        seen.add(key)
        out.formats[kind] += 1
        out.conversations.append(Conversation(messages, system, line, number))
    if out.records == 0:
        raise DataError(f"{name}: no records")
    if not out.conversations:
        first = out.issues[0] if out.issues else None
        raise DataError(
            f"{name}: no usable records ({len(out.issues)} rejected" + (f"; first: {first})" if first else ")")
        )
    if out.issues:
        log.warning("%s: skipped %d bad record(s); first: %s", name, len(out.issues), out.issues[0])
    return out
