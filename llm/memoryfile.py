"""The character memory file: `memory.jsonl` in a persona folder, the one definition of its format.

A character's memory (ChatHaruhi style) is the exchanges it once had: what was said to it and how it
answered. Each line of `memory.jsonl` is one exchange, a JSON object:

    {"query": "皇上驾到，你可知罪？", "reply": "臣妾不知何罪之有。", "source": "train:data.jsonl:12"}

- `reply` (required, non-empty): the character's line.
- `query` (optional, "" when absent): what was said to it just before (by the user in a training
  conversation, or the other speakers' lines before it in a script, each as `名字：台词`).
- `source` (optional): where the entry came from. `rolechat train` writes `train:FILE:LINE`;
  `rolechat character import-memory` writes `import:FILE:LINE`. Training a persona again replaces the
  `train:` entries and keeps the others.

Blank lines are ignored. Writers here replace the file atomically (a temporary file renamed over it), so a
reader sees the old file or the new one, never half of one. `rolechat train` (finetune) writes it;
the conversation engine (`rolechat.conversation.memory`) reads it and retrieves from it each turn.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rolechat.limits import InputError, load_json

__all__ = ["MEMORY_FILE", "MemoryEntry", "MemoryFileError", "read_memory", "write_memory", "TRAIN_SOURCE"]

MEMORY_FILE = "memory.jsonl"
TRAIN_SOURCE = "train:"  # the prefix of entries `rolechat train` writes (replaced when it trains again)


class MemoryFileError(ValueError):
    """A memory file is unreadable; the message names the file and line."""


@dataclass(frozen=True)
class MemoryEntry:
    """One remembered exchange: what was said to the character (`query`) and its `reply`."""

    reply: str
    query: str = ""
    source: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"query": self.query, "reply": self.reply, "source": self.source}


def _entry(raw: object, where: str) -> MemoryEntry:
    if not isinstance(raw, dict):
        raise MemoryFileError(f"{where}: expected a JSON object with 'query' and 'reply'")
    unknown = sorted(set(raw) - {"query", "reply", "source"})
    if unknown:
        raise MemoryFileError(f"{where}: unknown field(s) {', '.join(unknown)} (expected query, reply, source)")
    for key in ("query", "reply", "source"):
        if key in raw and not isinstance(raw[key], str):
            raise MemoryFileError(f"{where}: '{key}' must be a string, got {type(raw[key]).__name__}")
    reply = raw.get("reply", "").strip()
    if not reply:
        raise MemoryFileError(f"{where}: 'reply' (the character's line) is missing or empty")
    return MemoryEntry(reply, raw.get("query", "").strip(), raw.get("source", "").strip())


def read_memory(path: str | Path) -> list[MemoryEntry]:
    """The entries of a memory file, in file order; MemoryFileError naming the file and line for a bad one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MemoryFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            raw = load_json(line)
        except InputError as exc:  # bad JSON, or nested deeper than anything can walk
            raise MemoryFileError(f"{where}: {exc}") from None
        entries.append(_entry(raw, where))
    return entries


def write_memory(path: str | Path, entries: Iterable[MemoryEntry]) -> Path:
    """Write `entries` as the whole memory file, atomically (a temporary file beside it, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as out:
            for entry in entries:
                out.write(json.dumps(entry.as_dict(), ensure_ascii=False) + "\n")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
