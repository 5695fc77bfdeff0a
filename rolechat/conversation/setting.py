"""What a chat adds around its characters, as SillyTavern keeps it in the chat's metadata: lorebooks bound to
the chat (a scene's own first), a scenario override, an author's note, and the timed lore effects (sticky,
cooldown) its last turn left.

    setting = ChatSetting(lorebooks=["旅途", "notes/extra.json"], scenario="暴雨夜的客栈",
                          authors_note=AuthorsNote("保持紧张的气氛。", depth=2))
    turn = engine.prepare(message, character="rin", history=history, setting=setting)
    setting.lore_state = turn.lore_state          # keep it for the next turn (a saved chat stores it)
    ChatSetting.from_dict(setting.as_dict())      # the JSON shape chats and the API carry

Books are library names or lorebook file paths (`books.load_book`), or `Lorebook` objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AN_POSITIONS", "AuthorsNote", "ChatSetting", "UserPersona"]

AN_POSITIONS = ("in_chat", "after_story", "before_story")  # SillyTavern's note positions 1, 0 and 2


@dataclass
class UserPersona:
    """Who the user is in the conversation: `{{user}}` is the name; the description goes in the system part."""

    name: str = "用户"
    description: str = ""

    def __post_init__(self) -> None:
        self.name = (self.name or "").strip() or "用户"
        self.description = (self.description or "").strip()


@dataclass
class AuthorsNote:
    """SillyTavern's Author's Note: text a chat adds `depth` messages from the end (in_chat) or after / before
    the character's definition, every `interval` user messages (1: every turn; 0: never)."""

    text: str = ""
    depth: int = 4
    role: str = "system"
    position: str = "in_chat"
    interval: int = 1

    def __post_init__(self) -> None:
        if self.position not in AN_POSITIONS:
            raise ValueError(f"author's note position must be one of {', '.join(AN_POSITIONS)}, got {self.position!r}")
        if self.role not in ("system", "user", "assistant"):
            raise ValueError(f"author's note role must be system, user or assistant, got {self.role!r}")
        for name in ("depth", "interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"author's note {name} must be a whole number >= 0, got {value!r}")

    def due(self, user_messages: int) -> bool:
        """Whether the note goes in on a turn after `user_messages` user messages (the new one included)."""
        if self.interval == 1:
            return True
        if user_messages <= 0 or self.interval <= 0:
            return False
        left = user_messages % self.interval if user_messages >= self.interval else self.interval - user_messages
        return left == 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> AuthorsNote | None:
        """From `as_dict`'s shape (None for none); ValueError naming the field for a bad one."""
        if not d:
            return None
        unknown = set(d) - {"text", "depth", "role", "position", "interval"}
        if unknown:
            raise ValueError(f"authors_note: unknown field {sorted(unknown)[0]!r}")
        if not isinstance(d.get("text", ""), str):
            raise ValueError("authors_note.text: expected text")
        return cls(**d)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ChatSetting:
    """A chat's lorebooks, scenario override, author's note and timed lore state (see the module docstring)."""

    lorebooks: list[Any] = field(default_factory=list)
    scenario: str = ""
    authors_note: AuthorsNote | None = None
    lore_state: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ChatSetting:
        """From `as_dict`'s shape; ValueError naming the field for a bad one."""
        d = d or {}
        books = d.get("lorebooks")
        books = [] if books is None else books
        if not isinstance(books, list) or not all(isinstance(b, str) for b in books):
            raise ValueError("lorebooks: expected a list of lorebook names")
        scenario = d.get("scenario")
        scenario = "" if scenario is None else scenario
        if not isinstance(scenario, str):
            raise ValueError("scenario: expected text")
        note = d.get("authors_note")
        if note is not None and not isinstance(note, Mapping):
            raise ValueError("authors_note: expected an object")
        state = d.get("lore_state")
        state = {} if state is None else state
        if not isinstance(state, Mapping):
            raise ValueError("lore_state: expected an object")
        return cls(list(books), scenario, AuthorsNote.from_dict(note), dict(state))

    def as_dict(self) -> dict[str, Any]:
        return {
            "lorebooks": [b if isinstance(b, str) else getattr(b, "name", "") for b in self.lorebooks],
            "scenario": self.scenario,
            "authors_note": self.authors_note.as_dict() if self.authors_note else None,
            "lore_state": dict(self.lore_state),
        }
