"""Settings of the conversation engine: section `[chat]` of rolechat.toml, `ROLECHAT_CHAT_*` variables.

Token budgets for each part of the prompt. The system prompt with the character's card, the new message and
the post-history instructions always go in; every other part takes at most its budget and only the room the
parts above it left (0 = no budget of its own: whatever room is left). Then SillyTavern's world-info settings
(lore_*: the scan over every lorebook of a turn, see `worldinfo`), the global lorebooks, and the bounds on
what a card may cost: its file's size, and the time and checks one turn's lorebook scan may take.

Build one with `rolechat.settings.build(ConversationConfig, "chat", file_data, overrides)`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from rolechat.settings import ConfigError, setting

__all__ = ["ConversationConfig", "STRATEGIES"]

STRATEGIES = ("character_first", "global_first", "evenly")  # SillyTavern's world_info_character_strategy


@dataclass
class ConversationConfig:
    """Per-part token budgets of the prompt the engine assembles (the model's context is the hard limit), and
    the bounds on what a card and its lorebook may cost."""

    lore_budget_percent: float = setting(
        25.0,
        "lorebook entries per turn may take this share (percent) of the room the context leaves the prompt "
        "(SillyTavern's Context %); entries go in by order, highest first, and the first that does not fit "
        "ends the scan",
    )
    lore_tokens: int = setting(
        0,
        "most tokens of lorebook entries per turn whatever lore_budget_percent allows (SillyTavern's Budget "
        "Cap); 0 = no cap",
    )
    lore_scan_depth: int = setting(
        2,
        "messages (newest first, the new one included) scanned for lorebook keys; a book or an entry may set "
        "its own; 0 = none",
    )
    lore_include_names: bool = setting(
        True, "scan each message as `name: text`, so a name activates the entries it is a key of"
    )
    lore_whole_words: bool = setting(
        True,
        "a one-word key matches only between non-word characters (ASCII letters, digits and _ are word "
        "characters, as in SillyTavern: a Chinese key still matches inside Chinese text); entries may override",
    )
    lore_case_sensitive: bool = setting(False, "lorebook keys match letter case exactly; entries may override")
    lore_recursive: bool = setting(True, "activated entries' content is scanned too and can activate more entries")
    lore_max_recursion_steps: int = setting(
        0, "most scan sweeps per turn (1 = no recursion); 0 = until nothing new activates"
    )
    lore_group_scoring: bool = setting(
        False, "in an inclusion group, only the entries with the most keys found take part; entries may override"
    )
    lore_strategy: str = setting(
        "character_first",
        "how the character's and the global books share the budget after the chat's own books: "
        "character_first, global_first or evenly (all by order)",
    )
    global_lorebooks: list[str] = setting(
        factory=list,
        help="lorebooks (names in $ROLECHAT_HOME/lorebooks) every chat scans, as SillyTavern's global world info",
    )
    memory_tokens: int = setting(
        512,
        "most tokens of the character's remembered exchanges (memory.jsonl) per turn, most relevant first; "
        "0 = the 8 most relevant, as far as the context allows",
    )
    knowledge_tokens: int = setting(
        2048, "most tokens of knowledge-base passages per turn (best-ranked first); 0 = no limit but the context"
    )
    examples_tokens: int = setting(
        1024,
        "most tokens of the card's example dialogues (whole <START> blocks, in order); they are the first "
        "part dropped when the context is full; 0 = no limit but the context",
    )
    history_tokens: int = setting(
        0, "most tokens of earlier turns (the newest kept, the oldest dropped first); 0 = whatever room is left"
    )

    lore_regex_timeout: float = setting(
        0.25,
        "seconds one card-supplied pattern (a lorebook key written /pattern/flags, a regex script's find) may take "
        "on one text; a key pattern that takes longer turns its entry off (a notice in what the model saw), a "
        "script's is skipped",
    )
    lore_scan_seconds: float = setting(
        3.0,
        "most seconds one turn spends matching lorebook keys; when spent, the entries not checked by then stay "
        "out of that turn (a notice says so)",
    )
    lore_max_checks: int = setting(
        50000,
        "most lorebook entry checks per turn (each recursion sweep checks the entries not yet active again); "
        "past it the scan stops with what it found (a notice says so)",
    )
    card_regex: bool = setting(
        True,
        "apply a card's own regex scripts (data.extensions.regex_scripts) besides the global ones in "
        "$ROLECHAT_HOME/regex (SillyTavern asks once per card; importing it is that consent here)",
    )
    card_max_mb: float = setting(
        20.0,
        "largest character card or lorebook file read (MB; a PNG card's picture included), and the most a "
        "CHARX card archive may expand to; a larger one is refused, naming the limit",
    )

    def __post_init__(self) -> None:
        if self.lore_strategy not in STRATEGIES:
            raise ConfigError(f"chat.lore_strategy must be one of {', '.join(STRATEGIES)}, got {self.lore_strategy!r}")
        for name in ("lore_scan_depth", "lore_max_recursion_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"chat.{name} must be a whole number >= 0, got {value!r}")
        percent = self.lore_budget_percent
        if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 < percent <= 100:
            raise ConfigError(f"chat.lore_budget_percent must be a number in (0, 100], got {percent!r}")
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
