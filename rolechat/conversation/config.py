"""Settings of the conversation engine: section `[chat]` of rolechat.toml, `ROLECHAT_CHAT_*` variables.

Token budgets for each part of the prompt. The system prompt with the character's card, the new message and
the post-history instructions always go in; every other part takes at most its budget and only the room the
parts above it left (0 = no budget of its own: whatever room is left). Then the bounds on what a card may
cost: its file's size, and the time and checks one turn's lorebook scan may take.

Build one with `rolechat.settings.build(ConversationConfig, "chat", file_data, overrides)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from rolechat.settings import ConfigError

__all__ = ["ConversationConfig"]


def _help(text: str) -> dict:
    return {"help": text}


@dataclass
class ConversationConfig:
    """Per-part token budgets of the prompt the engine assembles (the model's context is the hard limit), and
    the bounds on what a card and its lorebook may cost."""

    lore_tokens: int = field(
        default=1024,
        metadata=_help(
            "most tokens of lorebook entries per turn (always-on entries first, then triggered ones by insertion "
            "order); a card's own lorebook budget, when smaller, wins; 0 = no limit but the context"
        ),
    )
    memory_tokens: int = field(
        default=512,
        metadata=_help(
            "most tokens of the character's remembered exchanges (memory.jsonl) per turn, most relevant first; "
            "0 = the 8 most relevant, as far as the context allows"
        ),
    )
    knowledge_tokens: int = field(
        default=2048,
        metadata=_help(
            "most tokens of knowledge-base passages per turn (best-ranked first); 0 = no limit but the context"
        ),
    )
    examples_tokens: int = field(
        default=1024,
        metadata=_help(
            "most tokens of the card's example dialogues (whole <START> blocks, in order); they are the first "
            "part dropped when the context is full; 0 = no limit but the context"
        ),
    )
    history_tokens: int = field(
        default=0,
        metadata=_help(
            "most tokens of earlier turns (the newest kept, the oldest dropped first); 0 = whatever room is left"
        ),
    )

    lore_regex_timeout: float = field(
        default=0.25,
        metadata=_help(
            "seconds one lorebook key pattern (a key written /pattern/, or any key of a use_regex entry) may take to "
            "match one text; a pattern that takes longer turns its entry off (a notice in what the model saw)"
        ),
    )
    lore_scan_seconds: float = field(
        default=3.0,
        metadata=_help(
            "most seconds one turn spends matching lorebook keys; when spent, the entries not checked by then stay "
            "out of that turn (a notice says so)"
        ),
    )
    lore_max_checks: int = field(
        default=50000,
        metadata=_help(
            "most lorebook entry checks per turn (each recursion sweep checks the entries not yet active again); "
            "past it the scan stops with what it found (a notice says so)"
        ),
    )
    card_max_mb: float = field(
        default=20.0,
        metadata=_help(
            "largest character card or lorebook file read (MB; a PNG card's picture included), and the most a "
            "CHARX card archive may expand to; a larger one is refused, naming the limit"
        ),
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            if not f.name.endswith("_tokens"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"chat.{f.name} must be a whole number of tokens, got {value!r}")
            if value < 0:
                raise ConfigError(f"chat.{f.name} must be >= 0 (0 = no budget of its own), got {value}")
        for name in ("lore_regex_timeout", "lore_scan_seconds", "card_max_mb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"chat.{name} must be a number > 0, got {value!r}")
        if isinstance(self.lore_max_checks, bool) or not isinstance(self.lore_max_checks, int):
            raise ConfigError(f"chat.lore_max_checks must be a whole number, got {self.lore_max_checks!r}")
        if self.lore_max_checks < 1:
            raise ConfigError(f"chat.lore_max_checks must be >= 1, got {self.lore_max_checks}")

    @property
    def card_max_bytes(self) -> int:
        return int(self.card_max_mb * 1e6)
