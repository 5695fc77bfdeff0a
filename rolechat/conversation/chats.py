"""Saved conversations: one JSON file per chat under `$ROLECHAT_HOME/chats/<id>.json`.

A `ChatLog` is what a chat needs to be listed, resumed and exported: its title, its characters (one persona
for a solo chat, two or more for a scene), the user's name, its messages in the chat page's shape
({"role", "content", ...}; a scene's assistant lines carry "name", the persona that said them), and its
setting (`setting.ChatSetting.as_dict()`: the lorebooks bound to it, its scenario override, author's note and
timed lore state) with a scene's speaker order. A reply that was regenerated keeps its alternatives as swipes:
"swipes" (every text, in order) and "swipe" (the index shown, whose text is "content").

Every save is atomic (a temporary file in the same folder, flushed to disk, then renamed over the old one), so
a killed app leaves either the previous or the new file, never half of one. A file that cannot be read is
reported with its path (and line and column for broken JSON) and left where it is.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rolechat.limits import InputError, load_json

__all__ = [
    "ChatFileError",
    "ChatLog",
    "chats_dir",
    "delete_chat",
    "list_chats",
    "load_chat",
    "new_chat",
    "save_chat",
    "to_markdown",
    "to_json",
    "update_summary",
    "add_swipe",
    "select_swipe",
]

FORMAT = 1
TITLE_CHARS = 30


class ChatFileError(ValueError):
    """A chat file that cannot be read: the message names the file (and the line for broken JSON)."""


@dataclass
class ChatLog:
    id: str
    characters: list[str] = field(default_factory=list)  # persona names ("base": the plain model)
    messages: list[dict[str, Any]] = field(default_factory=list)
    title: str = ""
    user_name: str = ""
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    summary: dict[str, Any] | None = None  # the summary of older turns, when the history outgrew the context
    setting: dict[str, Any] = field(default_factory=dict)  # ChatSetting.as_dict(): books, scenario, note, lore state
    order: str = ""  # a scene's speaker order ("": the default)

    @property
    def scene(self) -> bool:
        return len(self.characters) > 1

    def display_title(self) -> str:
        """The title, or the first thing the user said, or the characters."""
        if self.title.strip():
            return self.title.strip()
        first = next((m["content"] for m in self.messages if m.get("role") == "user" and m.get("content")), "")
        first = " ".join(first.split())
        if first:
            return first[:TITLE_CHARS] + ("…" if len(first) > TITLE_CHARS else "")
        return "、".join(self.characters) or self.id

    def as_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}


def chats_dir() -> Path:
    """Where saved chats live (created on first use)."""
    from rolechat import settings

    path = settings.home() / "chats"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _path(chat_id: str) -> Path:
    if not chat_id or any(c in chat_id for c in "/\\") or chat_id.startswith("."):
        raise ValueError(f"not a chat id: {chat_id!r}")
    return chats_dir() / f"{chat_id}.json"


def new_chat(characters: list[str], user_name: str = "", messages: list[dict[str, Any]] | None = None) -> ChatLog:
    """A new chat with a fresh id (time-ordered, so file names sort by creation)."""
    chat_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
    return ChatLog(id=chat_id, characters=list(characters), user_name=user_name, messages=list(messages or []))


def _clean(messages: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Messages as JSON can hold them (whatever is not JSON, e.g. a live object, is left out)."""
    out = []
    for msg in messages:
        keep = {}
        for key, value in msg.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                continue
            keep[key] = value
        out.append(keep)
    return out


_LOCK = threading.RLock()  # a summary written by a background thread and a save never interleave


def save_chat(log: ChatLog) -> Path:
    """Write the chat atomically (the old file stays whole until the new one is complete). A chat saved without
    a summary keeps the one its file already has (written by `update_summary` in the meantime)."""
    with _LOCK:
        if log.summary is None:
            try:
                log.summary = load_chat(log.id).summary
            except (OSError, ValueError):
                pass
        return _write(log)


def update_summary(chat_id: str, summary: dict[str, Any]) -> None:
    """Store `summary` ({"text", "covers": how many leading messages it stands for}) in the saved chat."""
    with _LOCK:
        log = load_chat(chat_id)
        log.summary = dict(summary)
        _write(log)


def _write(log: ChatLog) -> Path:
    log.updated = time.time()
    path = _path(log.id)
    data = {**log.as_dict(), "messages": _clean(log.messages)}
    fd, tmp = tempfile.mkstemp(prefix=f".{log.id}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _read(path: Path) -> ChatLog:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ChatFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = load_json(text)
    except InputError as exc:  # bad JSON, or nested deeper than anything can walk
        raise ChatFileError(f"{path}: {str(exc).removeprefix('invalid JSON at ')}") from None
    if not isinstance(data, dict):
        raise ChatFileError(f"{path}: a chat file holds one JSON object, found {type(data).__name__}")
    messages = data.get("messages", [])
    if not isinstance(messages, list):
        raise ChatFileError(f"{path}: messages: expected a list")
    for n, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant", "system"):
            raise ChatFileError(f"{path}: messages[{n}]: expected an object with role user or assistant")
        if not isinstance(msg.get("content", ""), str):
            raise ChatFileError(f"{path}: messages[{n}].content: expected text")
    characters = data.get("characters", [])
    if not isinstance(characters, list) or not all(isinstance(c, str) for c in characters):
        raise ChatFileError(f"{path}: characters: expected a list of persona names")
    setting = data.get("setting") or {}
    try:
        from rolechat.conversation.setting import ChatSetting

        ChatSetting.from_dict(setting)
    except (TypeError, ValueError) as exc:
        raise ChatFileError(f"{path}: setting.{exc}") from None
    try:
        return ChatLog(
            id=path.stem,
            characters=characters,
            messages=messages,
            title=str(data.get("title") or ""),
            user_name=str(data.get("user_name") or ""),
            created=float(data.get("created") or path.stat().st_mtime),
            updated=float(data.get("updated") or path.stat().st_mtime),
            summary=data.get("summary") if isinstance(data.get("summary"), dict) else None,
            setting=dict(setting),
            order=str(data.get("order") or ""),
        )
    except (TypeError, ValueError) as exc:
        raise ChatFileError(f"{path}: {exc}") from None


def load_chat(chat_id: str) -> ChatLog:
    """The saved chat `chat_id`; FileNotFoundError or ChatFileError (naming the file) otherwise."""
    path = _path(chat_id)
    if not path.is_file():
        raise FileNotFoundError(f"no saved chat {chat_id!r} ({path})")
    return _read(path)


def list_chats() -> tuple[list[ChatLog], list[str]]:
    """Every saved chat, most recently updated first, and an error line for each file that cannot be read
    (those files are left in place)."""
    chats, errors = [], []
    for path in sorted(chats_dir().glob("*.json")):
        try:
            chats.append(_read(path))
        except (ChatFileError, OSError) as exc:
            errors.append(str(exc))
    chats.sort(key=lambda c: c.updated, reverse=True)
    return chats, errors


def delete_chat(chat_id: str) -> None:
    _path(chat_id).unlink(missing_ok=True)


# -- swipes ---------------------------------------------------------------------------------------------


def add_swipe(msg: dict[str, Any], text: str, **extra: Any) -> None:
    """Keep the reply's current text as a swipe and show `text`, a regenerated alternative."""
    swipes = msg.setdefault("swipes", [msg.get("content", "")])
    swipes.append(text)
    msg["swipe"] = len(swipes) - 1
    msg["content"] = text
    msg.update(extra)


def select_swipe(msg: dict[str, Any], index: int) -> None:
    """Show alternative `index` (clamped to the ones there are)."""
    swipes = msg.get("swipes") or [msg.get("content", "")]
    index = max(0, min(index, len(swipes) - 1))
    msg["swipe"] = index
    msg["content"] = swipes[index]


# -- export ---------------------------------------------------------------------------------------------


def to_json(log: ChatLog) -> str:
    return json.dumps({**log.as_dict(), "messages": _clean(log.messages)}, ensure_ascii=False, indent=2)


def to_markdown(log: ChatLog, names: Mapping[str, str] | None = None) -> str:
    """The chat as Markdown: a title, who is in it, then one `**speaker**: text` paragraph per message."""
    names = dict(names or {})
    user = log.user_name or "用户"
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(log.created))
    lines = [f"# {log.display_title()}", "", f"{'、'.join(names.get(c, c) for c in log.characters)} · {when}", ""]
    if log.summary and log.summary.get("text"):
        lines += [f"> {log.summary['text']}", ""]
    for msg in log.messages:
        if msg.get("role") == "user":
            who = user
        else:
            persona = msg.get("name") or msg.get("persona") or (log.characters[0] if log.characters else "")
            who = names.get(persona) or msg.get("persona_label") or persona or "assistant"
        lines += [f"**{who}**: {msg.get('content', '')}", ""]
    return "\n".join(lines)
