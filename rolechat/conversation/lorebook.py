"""Lorebooks (world info): entries of background text that enter the prompt when their keys appear in the chat.

The data follows the Character Card V2/V3 `character_book` shape, with SillyTavern's own per-entry settings read
from each entry's `extensions` (where SillyTavern's card export writes them). Interface (stable):

    book = Lorebook.from_dict(card_data["character_book"])   # CardError naming the field on bad input
    book.to_dict()                                            # the card's `character_book` again, unchanged
    entry.matches("我们去长安城吧")                            # its keys against one text

Which entries a chat activates is the world-info scan's (`worldinfo.scan` over several books, or
`worldinfo.activate(book, messages, count_tokens)` over one); entry `content` is raw card text, so apply
`rolechat.conversation.card.apply_macros` to it before it enters a prompt.

Key matching, as SillyTavern's `WorldInfoBuffer.matchKeys` (public/scripts/world-info.js):

- A key written `/pattern/flags` (flags of g, i, m, s, u, y; no unescaped `/` inside) is a JavaScript-style
  regular expression: ASCII `\\w`, `\\b`, `\\d` unless `u`; case from its own `i` flag. It runs time-bounded
  (`patterns.TimedPattern`). Any other key is literal text, whatever `use_regex` says (SillyTavern writes
  `use_regex: true` on every exported entry and never reads it).
- A literal key is case-insensitive unless the entry (or the scan) is case-sensitive.
- With "match whole words" (the scan's default, an entry may override it) a one-word key must stand between
  non-word characters, where a word character is ASCII `[A-Za-z0-9_]` as in JavaScript's `\\W`: a Chinese key
  inside Chinese text matches, `king` inside `liking` does not. A key of several words matches as a substring.

V3 decorators (`@@name value` lines opening an entry's content) are kept apart in `decorators`, so `content` is
prompt text; `@@activate` and `@@dont_activate` are honoured.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rolechat.conversation.fields import CardError, as_bool, as_count, as_dict, as_number, as_str, as_str_list
from rolechat.conversation.patterns import Scan, ScanLimits, TimedPattern, js_pattern, nested_quantifiers

__all__ = [
    "CardError",
    "DEFAULT_SCAN_DEPTH",
    "LOGICS",
    "LoreEntry",
    "LoreNotice",
    "Lorebook",
    "POSITIONS",
    "ROLES",
    "ScanLimits",
    "ScanText",
]

DEFAULT_SCAN_DEPTH = 2  # SillyTavern's default: the last two messages
DEFAULT_DEPTH = 4  # SillyTavern's default depth of an @depth entry
DEFAULT_WEIGHT = 100  # an inclusion group member's weight
LOGICS = ("AND_ANY", "NOT_ALL", "NOT_ANY", "AND_ALL")  # SillyTavern's numeric selectiveLogic is the index
# SillyTavern's numeric positions are the index: before/after the character's definition, top/bottom of the
# author's note, @depth in the chat, before/after the example dialogues, a named outlet.
POSITIONS = ("before_char", "after_char", "an_top", "an_bottom", "at_depth", "em_top", "em_bottom", "outlet")
ROLES = ("system", "user", "assistant")  # an @depth entry's role; SillyTavern's numeric role is the index


# -- SillyTavern's own field forms (the plain readers are `fields`') ------------------------------------


def _level(value: Any, where: str) -> bool | int:
    """SillyTavern's "delay until recursion": false, true (level 1) or a recursion level."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    return as_count(value, where, False)


def _role(value: Any, where: str) -> str:
    if value is None or value == "":
        return "system"
    if isinstance(value, str) and value.strip().lower() in ROLES:
        return value.strip().lower()
    index = as_number(value, where)
    if index not in range(len(ROLES)):
        raise CardError(f"{where}: expected 0 (system), 1 (user) or 2 (assistant), got {value!r}")
    return ROLES[index]


# -- matching -------------------------------------------------------------------------------------------

Predicate = Callable[["ScanText", Scan], bool]
_ASCII_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")  # JavaScript's \w, no u flag


def _whole_word(needle: str) -> Callable[[str], bool]:
    r"""Whether `needle` occurs between non-word characters (SillyTavern's `(?:^|\W)key(?:$|\W)`), by plain
    search: no pattern to compile for each of a large book's keys."""

    def found(text: str) -> bool:
        at = text.find(needle)
        while at >= 0:
            end = at + len(needle)
            if (at == 0 or text[at - 1] not in _ASCII_WORD) and (end == len(text) or text[end] not in _ASCII_WORD):
                return True
            at = text.find(needle, at + 1)
        return False

    return found


@functools.lru_cache(maxsize=1 << 16)
def _matcher(key: str, case_sensitive: bool, whole_words: bool) -> Predicate | None:
    """A predicate for one key, or None when the key can never match (blank). `/pattern/flags` keys run with
    a time limit (`patterns.TimedPattern`); a pattern that once timed out stays off in this process."""
    key = key.strip()
    if not key:
        return None
    pattern = js_pattern(key)
    if pattern is not None:  # its own flags decide case, as in SillyTavern
        timed = TimedPattern.js(*pattern)
        if timed is not None:
            return lambda text, scan: timed.search(text.raw, scan)
        # not a pattern that compiles: SillyTavern matches it as plain text
    needle = key if case_sensitive else key.lower()
    if whole_words and len(needle.split()) == 1:
        word = _whole_word(needle)
        if case_sensitive:
            return lambda text, scan: word(text.raw)
        return lambda text, scan: word(text.lowered)
    if case_sensitive:
        return lambda text, scan: needle in text.raw
    return lambda text, scan: needle in text.lowered


class ScanText:
    """Scanned text, lower-cased once for all the case-insensitive keys."""

    __slots__ = ("raw", "_lowered")

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self._lowered: str | None = None

    @property
    def lowered(self) -> str:
        if self._lowered is None:
            self._lowered = self.raw.lower()
        return self._lowered


@dataclass
class LoreNotice:
    """Why an entry (`entry`: its label) or the whole scan (`entry` = "") was cut short in one activation."""

    entry: str
    message: str

    def __str__(self) -> str:
        return f"lorebook entry {self.entry!r}: {self.message}" if self.entry else self.message


# -- entries --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Setting:
    """One of SillyTavern's per-entry settings kept in `extensions`: the entry attribute, its key there, its
    default, and how a value is read."""

    attr: str
    key: str
    default: Any
    read: Callable[[Any, str], Any]


def _flag(default: bool | None):
    return lambda value, where: as_bool(value, where, default)


def _any_number(default: Any):
    return lambda value, where: as_number(value, where, default)


def _whole(default: Any):
    return lambda value, where: as_count(value, where, default)


# SillyTavern's own card export (src/endpoints/characters.js, convertWorldInfoToCharacterBook) writes these keys;
# its import (public/scripts/world-info.js, convertCharacterBook) reads them back with these defaults.
_SETTINGS = (
    _Setting("scan_depth", "scan_depth", None, _whole(None)),
    _Setting("match_whole_words", "match_whole_words", None, _flag(None)),
    _Setting("exclude_recursion", "exclude_recursion", False, _flag(False)),
    _Setting("prevent_recursion", "prevent_recursion", False, _flag(False)),
    _Setting("delay_until_recursion", "delay_until_recursion", False, _level),
    _Setting("depth", "depth", DEFAULT_DEPTH, _whole(DEFAULT_DEPTH)),
    _Setting("role", "role", "system", _role),
    _Setting("probability", "probability", 100, _any_number(100)),
    _Setting("use_probability", "useProbability", True, _flag(True)),
    _Setting("group", "group", "", lambda value, where: as_str(value, where)),
    _Setting("group_override", "group_override", False, _flag(False)),
    _Setting("group_weight", "group_weight", DEFAULT_WEIGHT, _any_number(DEFAULT_WEIGHT)),
    _Setting("use_group_scoring", "use_group_scoring", None, _flag(None)),
    _Setting("sticky", "sticky", 0, _whole(0)),
    _Setting("cooldown", "cooldown", 0, _whole(0)),
    _Setting("delay", "delay", 0, _whole(0)),
    _Setting("ignore_budget", "ignore_budget", False, _flag(False)),
    _Setting("outlet", "outlet_name", "", lambda value, where: as_str(value, where)),
)
_ENCODE = {"role": ROLES.index}  # how SillyTavern writes a value back (its role is a number)
_ENTRY_FIELDS = (
    "keys",
    "content",
    "extensions",
    "enabled",
    "insertion_order",
    "case_sensitive",
    "use_regex",
    "constant",
    "name",
    "priority",
    "id",
    "comment",
    "selective",
    "secondary_keys",
    "position",
)
# Extra text some entries are matched against besides the chat (newer SillyTavern's "additional matching
# sources"): extension key -> the name of the text (`worldinfo.Buffer`'s extra texts).
MATCH_SOURCES = {
    "match_persona_description": "persona",
    "match_character_description": "description",
    "match_character_personality": "personality",
    "match_character_depth_prompt": "depth_prompt",
    "match_scenario": "scenario",
    "match_creator_notes": "creator_notes",
}


@dataclass
class LoreEntry:
    """One lorebook entry (the card spec's fields plus SillyTavern's activation settings).

    >>> LoreEntry(keys=["长安"], content="长安是大唐的都城。", insertion_order=10)
    >>> LoreEntry(keys=["剑"], secondary_keys=["师父"], selective=True, selective_logic="AND_ALL", content="...")
    >>> LoreEntry(keys=["雨"], content="窗外下着雨。", position="at_depth", depth=2, role="user", sticky=3)
    """

    keys: list[str] = field(default_factory=list)
    content: str = ""  # what enters the prompt (V3 `@@decorator` lines kept apart, in `decorators`)
    secondary_keys: list[str] = field(default_factory=list)
    selective: bool = False
    selective_logic: str = "AND_ANY"  # one of LOGICS
    constant: bool = False
    enabled: bool = True
    insertion_order: int | float = 100  # SillyTavern's "order": higher wins the budget, and sits later
    priority: int | float | None = None  # the V2 spec's field, kept; SillyTavern (and rolechat) rank by order
    position: str = "before_char"  # one of POSITIONS
    depth: int = DEFAULT_DEPTH  # at_depth: messages from the end of the chat
    role: str = "system"  # at_depth: one of ROLES
    case_sensitive: bool | None = None  # None: the scan's setting
    use_regex: bool | None = None  # kept for the round trip; a key is a pattern only when written /.../
    match_whole_words: bool | None = None  # None: the scan's setting
    scan_depth: int | None = None  # None: the book's, else the scan's
    exclude_recursion: bool = False  # only the chat can activate it
    prevent_recursion: bool = False  # its content activates nothing
    delay_until_recursion: bool | int = False  # only recursion can activate it (a number: from that level on)
    probability: int | float = 100  # percent chance to go in once activated (with use_probability)
    use_probability: bool = True
    group: str = ""  # inclusion groups, comma-separated: one entry per group goes in
    group_override: bool = False  # wins its group (highest order first) instead of a weighted draw
    group_weight: int | float = DEFAULT_WEIGHT
    use_group_scoring: bool | None = None  # None: the scan's setting
    sticky: int = 0  # stays active this many messages after activating
    cooldown: int = 0  # cannot activate for this many messages after activating (or after sticky ends)
    delay: int = 0  # cannot activate before the chat has this many messages
    ignore_budget: bool = False  # goes in even when the budget is spent
    outlet: str = ""  # position "outlet": the name it is stored under
    id: int | str | None = None
    comment: str = ""
    name: str = ""
    extensions: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # unknown fields, written back unchanged
    decorators: list[str] = field(default_factory=list)  # V3 `@@name value` lines that opened the content
    card_position: Any = field(default=None, compare=False, repr=False)  # the spec's `position` as read
    has_extensions: bool = field(default=True, compare=False, repr=False)  # written back when read or non-empty

    def __post_init__(self) -> None:
        if self.selective_logic not in LOGICS:
            raise CardError(f"selective_logic: expected one of {', '.join(LOGICS)}, got {self.selective_logic!r}")
        if self.position not in POSITIONS:
            raise CardError(f"position: expected one of {', '.join(POSITIONS)}, got {self.position!r}")
        if self.role not in ROLES:
            raise CardError(f"role: expected one of {', '.join(ROLES)}, got {self.role!r}")
        for name in ("scan_depth", "depth", "sticky", "cooldown", "delay"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise CardError(f"{name}: expected a whole number >= 0, got {value!r}")
        level = self.delay_until_recursion
        if not isinstance(level, bool) and (not isinstance(level, int) or level < 0):
            raise CardError(f"delay_until_recursion: expected true, false or a level >= 0, got {level!r}")

    @property
    def label(self) -> str:
        """A short human name for listings: comment, name, first key or id."""
        return self.comment or self.name or (self.keys[0] if self.keys else "") or f"#{self.id}"

    @property
    def recursion_level(self) -> int:
        """The recursion level "delay until recursion" waits for (0: not delayed)."""
        level = self.delay_until_recursion
        return 1 if level is True else 0 if level is False else int(level)

    @property
    def groups(self) -> list[str]:
        return [g.strip() for g in self.group.split(",") if g.strip()]

    @property
    def fingerprint(self) -> str:
        """Changes whenever the entry's keys, content or timing change (a timed effect then lapses)."""
        parts = [*self.keys, "\x00", *self.secondary_keys, "\x00", self.content, str(self.sticky), str(self.cooldown)]
        return hashlib.sha1("\x01".join(parts).encode("utf-8")).hexdigest()[:12]

    # -- matching --

    def _predicates(self, keys: Sequence[str], case_sensitive: bool, whole_words: bool) -> list[Predicate]:
        found = (_matcher(k, case_sensitive, whole_words) for k in keys)
        return [m for m in found if m is not None]

    def matched_key(self, text: ScanText, scan: Scan, case_sensitive: bool = False, whole_words: bool = True):
        """The first primary key found in `text` when the secondary keys (if any) agree, else None."""
        case = self.case_sensitive if self.case_sensitive is not None else case_sensitive
        words = self.match_whole_words if self.match_whole_words is not None else whole_words
        primary = next((k for k in self.keys if (m := _matcher(k, case, words)) and m(text, scan)), None)
        if primary is None:
            return None
        secondary = self._predicates(self.secondary_keys, case, words) if self.selective else []
        if not secondary:
            return primary
        hits = [m(text, scan) for m in secondary]
        if self.selective_logic == "AND_ANY":
            ok = any(hits)
        elif self.selective_logic == "AND_ALL":
            ok = all(hits)
        elif self.selective_logic == "NOT_ANY":
            ok = not any(hits)
        else:  # NOT_ALL
            ok = not all(hits)
        return primary if ok else None

    def score(self, text: ScanText, scan: Scan, case_sensitive: bool = False, whole_words: bool = True) -> int:
        """SillyTavern's group score: primary keys found, plus secondary ones under AND ANY (or AND ALL, when
        all are found)."""
        case = self.case_sensitive if self.case_sensitive is not None else case_sensitive
        words = self.match_whole_words if self.match_whole_words is not None else whole_words
        primary = sum(m(text, scan) for m in self._predicates(self.keys, case, words))
        if not self.keys:
            return 0
        secondary = self._predicates(self.secondary_keys, case, words)
        found = sum(m(text, scan) for m in secondary)
        if secondary and self.selective_logic == "AND_ANY":
            return primary + found
        if secondary and self.selective_logic == "AND_ALL" and found == len(secondary):
            return primary + found
        return primary

    def matches(
        self, text: str | ScanText, case_sensitive: bool = False, scan: Scan | None = None, whole_words: bool = True
    ) -> bool:
        """Do the keys (and, for a selective entry, the secondary keys) match `text`? Ignores `constant`.

        Key patterns run within `scan`'s limits (default: `ConversationConfig`'s): PatternTimeout when one took
        too long (the entry is then off), ScanStopped when the scan's budget is spent."""
        text = text if isinstance(text, ScanText) else ScanText(text)
        return self.matched_key(text, scan or Scan(_default_limits()), case_sensitive, whole_words) is not None

    # -- (de)serialisation --

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "entry") -> LoreEntry:
        """From the card spec's entry shape (SillyTavern's settings read from `extensions` too)."""
        if not isinstance(d, Mapping):
            raise CardError(f"{where}: expected an object")
        ext = as_dict(d.get("extensions"), f"{where}.extensions")
        settings = {s.attr: s.read(ext.get(s.key), f"{where}.extensions.{s.key}") for s in _SETTINGS}
        if d.get("scan_depth") is not None:  # a top-level copy (some writers) wins, as the spec's own fields do
            settings["scan_depth"] = as_count(d["scan_depth"], f"{where}.scan_depth")
        decorators, content = _split_decorators(as_str(d.get("content"), f"{where}.content"))
        entry_id = d.get("id")
        if entry_id is not None and (isinstance(entry_id, bool) or not isinstance(entry_id, (int, str))):
            raise CardError(f"{where}.id: expected a number or a string")
        case = d["case_sensitive"] if d.get("case_sensitive") is not None else ext.get("case_sensitive")
        return cls(
            keys=as_str_list(d.get("keys"), f"{where}.keys", split_commas=True),
            content=content,
            decorators=decorators,
            secondary_keys=as_str_list(d.get("secondary_keys"), f"{where}.secondary_keys", split_commas=True),
            selective=bool(as_bool(d.get("selective"), f"{where}.selective")),
            selective_logic=_logic(ext.get("selectiveLogic", d.get("selective_logic")), where),
            constant=bool(as_bool(d.get("constant"), f"{where}.constant")),
            enabled=bool(as_bool(d.get("enabled"), f"{where}.enabled", True)),
            insertion_order=as_number(d.get("insertion_order"), f"{where}.insertion_order", 100),
            priority=as_number(d.get("priority"), f"{where}.priority"),
            position=_position(d.get("position"), ext.get("position"), where),
            card_position=copy.deepcopy(d.get("position")),
            case_sensitive=as_bool(case, f"{where}.case_sensitive", None),
            use_regex=as_bool(d.get("use_regex"), f"{where}.use_regex", None),
            id=entry_id,
            comment=as_str(d.get("comment"), f"{where}.comment"),
            name=as_str(d.get("name"), f"{where}.name"),
            extensions=ext,
            has_extensions="extensions" in d,
            extra={k: copy.deepcopy(v) for k, v in d.items() if k not in _ENTRY_FIELDS},
            **settings,
        )

    def to_dict(self) -> dict[str, Any]:
        """The card spec's entry shape; SillyTavern's settings go to `extensions`, where it reads them. A card
        read and written back unchanged is the same card: a setting is (re)written only when it changed."""
        ext = copy.deepcopy(self.extensions)
        for s in _SETTINGS:
            value = getattr(self, s.attr)
            try:
                was = s.read(ext.get(s.key), s.key)
            except CardError:
                was = None
            if value != was and not (s.key not in ext and value == s.default):
                ext[s.key] = _ENCODE.get(s.attr, lambda v: v)(value)
        if "selectiveLogic" in ext or self.selective_logic != "AND_ANY":
            ext["selectiveLogic"] = LOGICS.index(self.selective_logic)
        if "position" in ext or self.position not in ("before_char", "after_char"):
            ext["position"] = POSITIONS.index(self.position)
        out: dict[str, Any] = {
            "keys": list(self.keys),
            "content": "\n".join([*self.decorators, self.content]) if self.decorators else self.content,
        }
        if ext or self.has_extensions:
            out["extensions"] = ext
        out.update(enabled=self.enabled, insertion_order=self.insertion_order)
        if self.case_sensitive is not None and ext.get("case_sensitive") != self.case_sensitive:
            out["case_sensitive"] = self.case_sensitive  # SillyTavern keeps it in extensions only
        if self.use_regex is not None:
            out["use_regex"] = self.use_regex
        out["constant"] = self.constant
        if self.name:
            out["name"] = self.name
        if self.priority is not None:
            out["priority"] = self.priority
        if self.id is not None:
            out["id"] = self.id
        out["comment"] = self.comment
        out["selective"] = self.selective
        out["secondary_keys"] = list(self.secondary_keys)
        out["position"] = self._card_position()
        out.update(copy.deepcopy(self.extra))
        return out

    def _card_position(self) -> Any:
        """The spec's `position`: as read while it still means the same side of the character, else derived."""
        before = self.position == "before_char"
        if self.card_position in ("before_char", "after_char") and (self.card_position == "before_char") == before:
            return self.card_position
        return "before_char" if before else "after_char"


def _logic(value: Any, where: str) -> str:
    if isinstance(value, str) and value.upper() in LOGICS:
        return value.upper()
    if value is None:
        return "AND_ANY"
    index = as_number(value, f"{where}.extensions.selectiveLogic")
    if index not in range(len(LOGICS)):
        raise CardError(f"{where}.extensions.selectiveLogic: expected 0-3, got {value!r}")
    return LOGICS[index]


def _position(spec: Any, numeric: Any, where: str) -> str:
    """SillyTavern's numeric `extensions.position` (0-7) when present, else the spec's before_char/after_char
    (as SillyTavern's import reads them)."""
    if numeric is not None and numeric != "":
        index = as_number(numeric, f"{where}.extensions.position")
        if index not in range(len(POSITIONS)):
            raise CardError(f"{where}.extensions.position: expected 0-{len(POSITIONS) - 1}, got {numeric!r}")
        return POSITIONS[index]
    if spec in (None, ""):
        return "before_char"
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return "before_char" if spec == 0 else "after_char"
    if spec not in POSITIONS:
        raise CardError(f"{where}.position: expected 'before_char' or 'after_char', got {spec!r}")
    return spec


# -- books ----------------------------------------------------------------------------------------------

_BOOK_FIELDS = ("name", "description", "scan_depth", "token_budget", "recursive_scanning", "extensions", "entries")
_MAX_STEPS_KEY = "rolechat/max_recursion_steps"


@dataclass
class Lorebook:
    """A lorebook: entries plus the card spec's scanning settings.

    `scan_depth`, `token_budget` and `recursive_scanning` are the V2 spec's book fields. SillyTavern ignores them
    (its own exports never write them); rolechat honours them for the book's own entries (see docs/characters.md).

    >>> book = Lorebook(entries=[LoreEntry(keys=["长安"], content="长安是都城。")], token_budget=500)
    >>> [e.content for e in worldinfo.activate(book, ["我想去长安"], len)]
    ['长安是都城。']
    """

    entries: list[LoreEntry] = field(default_factory=list)
    name: str = ""
    description: str = ""
    scan_depth: int | None = None  # None: the scan's
    token_budget: int | None = None  # None: no limit of its own
    recursive_scanning: bool | None = None  # None: the scan's (on by default)
    max_recursion_steps: int = 0  # scan sweeps in all; 0: the scan's; 1: no recursion
    extensions: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # SillyTavern's exports have no book `extensions`: written back only when the book had it or it holds something
    has_extensions: bool = field(default=True, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.scan_depth is not None and (not isinstance(self.scan_depth, int) or self.scan_depth < 0):
            raise CardError(f"scan_depth: expected a whole number >= 0, got {self.scan_depth!r}")
        if self.token_budget is not None and (not isinstance(self.token_budget, int) or self.token_budget < 0):
            raise CardError(f"token_budget: expected a whole number >= 0, got {self.token_budget!r}")
        if not isinstance(self.max_recursion_steps, int) or self.max_recursion_steps < 0:
            raise CardError(f"max_recursion_steps: expected a whole number >= 0, got {self.max_recursion_steps!r}")

    def risky_keys(self) -> list[tuple[str, str]]:
        """(entry label, key) of each key pattern with nested quantifiers (`/(a+)+$/`): the shape that can take
        exponential time to match. Matching gives each pattern a time limit and turns its entry off past it."""
        found = []
        for entry in self.entries:
            for key in (*entry.keys, *entry.secondary_keys):
                pattern = js_pattern(key.strip())
                if pattern is not None and nested_quantifiers(pattern[0]):
                    found.append((entry.label, key.strip()))
        return found

    # -- (de)serialisation --

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "character_book") -> Lorebook:
        """From the card spec's `character_book` (or a V3 `lorebook_v3` file's `data`)."""
        if not isinstance(d, Mapping):
            raise CardError(f"{where}: expected an object")
        raw_entries = d.get("entries")
        if raw_entries is None:
            raw_entries = []
        if not isinstance(raw_entries, list):
            raise CardError(f"{where}.entries: expected a list")
        ext = as_dict(d.get("extensions"), f"{where}.extensions")
        try:
            return cls(
                entries=[LoreEntry.from_dict(e, f"{where}.entries[{n}]") for n, e in enumerate(raw_entries)],
                name=as_str(d.get("name"), f"{where}.name"),
                description=as_str(d.get("description"), f"{where}.description"),
                scan_depth=as_count(d.get("scan_depth"), f"{where}.scan_depth"),
                token_budget=as_count(d.get("token_budget"), f"{where}.token_budget"),
                recursive_scanning=as_bool(d.get("recursive_scanning"), f"{where}.recursive_scanning", None),
                max_recursion_steps=as_count(ext.get(_MAX_STEPS_KEY), f"{where}.extensions.{_MAX_STEPS_KEY}", 0),
                extensions=ext,
                has_extensions="extensions" in d,
                extra={k: copy.deepcopy(v) for k, v in d.items() if k not in _BOOK_FIELDS},
            )
        except CardError as exc:
            if str(exc).startswith(where):
                raise
            raise CardError(f"{where}.{exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The card spec's `character_book` shape."""
        ext = copy.deepcopy(self.extensions)
        if self.max_recursion_steps or _MAX_STEPS_KEY in ext:
            ext[_MAX_STEPS_KEY] = self.max_recursion_steps
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        if self.description:
            out["description"] = self.description
        if self.scan_depth is not None:
            out["scan_depth"] = self.scan_depth
        if self.token_budget is not None:
            out["token_budget"] = self.token_budget
        if self.recursive_scanning is not None:
            out["recursive_scanning"] = self.recursive_scanning
        if ext or self.has_extensions:
            out["extensions"] = ext
        out["entries"] = [e.to_dict() for e in self.entries]
        out.update(copy.deepcopy(self.extra))
        return out


def _split_decorators(content: str) -> tuple[list[str], str]:
    """V3 decorators: `@@name value` lines (and `@@@` fallbacks) opening the content, apart from the text."""
    lines = content.split("\n")
    n = 0
    while n < len(lines) and lines[n].startswith("@@"):
        n += 1
    if not n:
        return [], content
    return lines[:n], "\n".join(lines[n:]).strip("\n")


def forced(entry: LoreEntry) -> bool | None:
    """`@@activate` (on in any case) -> True, `@@dont_activate` -> False, else None: the keys decide."""
    names = {d.split(None, 1)[0] for d in entry.decorators if not d.startswith("@@@")}
    if "@@activate" in names:
        return True
    return False if "@@dont_activate" in names else None


def _default_limits() -> ScanLimits:
    from rolechat.conversation.config import ConversationConfig

    return ScanLimits.of(ConversationConfig())
