"""Settings of the conversation engine: section `[chat]` of rolechat.toml, `ROLECHAT_CHAT_*` variables.

Token budgets for each part of the prompt. The system prompt with the character's card, the new message and
the post-history instructions always go in; every other part takes at most its budget and only the room the
parts above it left (0 = no budget of its own: whatever room is left).

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
    """Per-part token budgets of the prompt the engine assembles (the model's context is the hard limit)."""

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

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"chat.{f.name} must be a whole number of tokens, got {value!r}")
            if value < 0:
                raise ConfigError(f"chat.{f.name} must be >= 0 (0 = no budget of its own), got {value}")
