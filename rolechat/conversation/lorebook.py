"""Lorebooks (world info): entries of background text that enter the prompt when their keys appear in the chat.

The data follows the Character Card V2/V3 `character_book` shape; the activation follows SillyTavern's world
info. Interface (stable; the engine is written against it):

    book = Lorebook.from_dict(card_data["character_book"])   # CardError naming the field on bad input
    active = book.activate(["用户：我们去长安城吧"], count_tokens, budget=300)
    before = [e.content for e in active if e.position == "before_char"]   # above the character definition
    after = [e.content for e in active if e.position == "after_char"]     # below it
    book.to_dict()                                            # the card's `character_book` again

`activate` returns the entries themselves; their `content` is raw card text, so apply
`rolechat.conversation.card.apply_macros` to it before it enters a prompt.

Activation rules, as SillyTavern applies them:

- Only `enabled` entries with non-blank content take part. `constant` entries are always on.
- The scan text is the last `scan_depth` messages (the entry's own `scan_depth` overrides the book's; the
  book's default is 2; 0 means only recursion can activate the entry).
- A key matches as a substring: Chinese has no word boundaries. Case-insensitive unless the entry is
  `case_sensitive`. A key written `/pattern/flags` is a regular expression (JavaScript flags i, m, s honoured).
  With `use_regex` (V3) every key is a pattern (one that does not compile matches literally).
  `match_whole_words` (SillyTavern's per-entry setting, in `extensions`) makes one-word keys match whole words.
- An entry needs one primary key. If it is `selective` and has secondary keys, `selective_logic` decides:
  AND_ANY (also one secondary), AND_ALL (all secondaries), NOT_ANY (no secondary), NOT_ALL (not every secondary).
- Recursion (unless `recursive_scanning` is false): the content of activated entries is scanned too, and can
  activate more entries, for at most `max_recursion_steps` sweeps (0: until nothing new activates).
  Per entry: `exclude_recursion` (only the chat can activate it), `prevent_recursion` (its content activates
  nothing), `delay_until_recursion` (only recursion can activate it).
- Budget: entries are admitted constant first, then those the chat activated, then recursion's, each group
  by `priority` (or `insertion_order` when an entry has none), highest first; the first entry that does not
  fit ends the activation (an entry with SillyTavern's `ignore_budget` in its extensions goes in regardless).
  The result comes back sorted by `insertion_order` (lower = earlier in the prompt).

SillyTavern features without a place in rolechat (probability, inclusion groups, timed effects, @depth
positions, vector matching) are kept in `extensions` so they survive a round trip, but do not change activation.
V3 decorators (`@@name value` lines opening an entry's content) are kept apart in `decorators`, so `content`
is prompt text; `@@activate` and `@@dont_activate` are honoured, the others are kept for the round trip.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rolechat.conversation.patterns import (
    PatternTimeout,
    Scan,
    ScanLimits,
    ScanStopped,
    TimedPattern,
    nested_quantifiers,
)

__all__ = [
    "CardError",
    "DEFAULT_SCAN_DEPTH",
    "LOGICS",
    "LoreEntry",
    "LoreNotice",
    "Lorebook",
    "POSITIONS",
    "ScanLimits",
]

DEFAULT_SCAN_DEPTH = 2  # SillyTavern's default: the last two messages
LOGICS = ("AND_ANY", "NOT_ALL", "NOT_ANY", "AND_ALL")  # SillyTavern's numeric selectiveLogic is the index
POSITIONS = ("before_char", "after_char")
_SCAN_SEPARATOR = "\n\x01"  # SillyTavern marks each message with \x01; a key never spans two messages


class CardError(ValueError):
    """A character card or lorebook is unusable; the message names the file (when known) and the field."""


# -- validation helpers (shared with card.py) ------------------------------------------------------------


def _str(value: Any, where: str, default: str = "") -> str:
    if value is None:
        return default
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # community cards sometimes hold a number where a string belongs (a version "1")
    raise CardError(f"{where}: expected a string, got {type(value).__name__}")


def _str_list(value: Any, where: str, *, split_commas: bool = False) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):  # a keys field written as one "a, b" string (SillyTavern's plaintext key input)
        if not split_commas:
            return [value] if value else []
        return [k.strip() for k in value.split(",") if k.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CardError(f"{where}: expected a list of strings")
    return list(value)


def _bool(value: Any, where: str, default: bool | None = False) -> bool | None:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):  # a lax writer's "true"
        return value.strip().lower() == "true"
    raise CardError(f"{where}: expected true or false, got {value!r}")


def _number(value: Any, where: str, default: Any = None) -> Any:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise CardError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return int(value) if float(value).is_integer() else value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise CardError(f"{where}: expected a number, got {value!r}") from None
        return int(number) if number.is_integer() else number
    raise CardError(f"{where}: expected a number, got {type(value).__name__}")


def _dict(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CardError(f"{where}: expected an object")
    return copy.deepcopy(value)


# -- matching -------------------------------------------------------------------------------------------

_REGEX_KEY = re.compile(r"^/(.+)/([a-zA-Z]*)$", re.DOTALL)
_JS_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}  # the `regex` package's flags have these values
Predicate = Callable[["_Text", Scan], bool]


@functools.lru_cache(maxsize=4096)
def _matcher(key: str, case_sensitive: bool, whole_words: bool, use_regex: bool) -> Predicate | None:
    """A predicate for one key, or None when the key can never match (blank, or a broken /regex/). Patterns run
    with a time limit (`patterns.TimedPattern`); a pattern that once timed out stays off in this process."""
    key = key.strip()
    if not key:
        return None
    pattern = _key_pattern(key)
    if pattern is not None:  # its own flags decide case, as in SillyTavern
        source, flags = pattern
        timed = TimedPattern.compile(source, flags)
        return None if timed is None else lambda text, scan: timed.search(text.raw, scan)
    if use_regex:
        timed = TimedPattern.compile(key, 0 if case_sensitive else re.IGNORECASE)
        if timed is not None:
            return lambda text, scan: timed.search(text.raw, scan)
        # a key that is not a valid pattern matches literally
    if whole_words and re.fullmatch(r"\w+", key):
        words = re.compile(rf"(?:^|\W){re.escape(key)}(?:$|\W)", 0 if case_sensitive else re.IGNORECASE)
        return lambda text, scan: words.search(text.raw) is not None  # an escaped word: linear time
    if case_sensitive:
        return lambda text, scan: key in text.raw
    folded = key.lower()
    return lambda text, scan: folded in text.lowered


def _key_pattern(key: str) -> tuple[str, int] | None:
    """(pattern, flags) of a key written `/pattern/flags` (JavaScript flags i, m, s honoured), else None."""
    slashed = _REGEX_KEY.match(key)
    if not slashed:
        return None
    flags = 0
    for flag in slashed.group(2):
        flags |= _JS_FLAGS.get(flag, 0)
    return slashed.group(1), flags


class _Text:
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

# SillyTavern keeps its own per-entry settings in `extensions` under these names (snake_case, except
# selectiveLogic); a card exported by SillyTavern carries them there.
_EXT_FIELDS = {
    "scan_depth": "scan_depth",
    "match_whole_words": "match_whole_words",
    "exclude_recursion": "exclude_recursion",
    "prevent_recursion": "prevent_recursion",
    "delay_until_recursion": "delay_until_recursion",
}
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


@dataclass
class LoreEntry:
    """One lorebook entry (the card spec's fields plus SillyTavern's activation settings).

    >>> LoreEntry(keys=["长安"], content="长安是大唐的都城。", insertion_order=10)
    >>> LoreEntry(keys=["剑"], secondary_keys=["师父"], selective=True, selective_logic="AND_ALL", content="...")
    """

    keys: list[str] = field(default_factory=list)
    content: str = ""  # what enters the prompt (V3 `@@decorator` lines kept apart, in `decorators`)
    secondary_keys: list[str] = field(default_factory=list)
    selective: bool = False
    selective_logic: str = "AND_ANY"  # one of LOGICS
    constant: bool = False
    enabled: bool = True
    insertion_order: int | float = 100
    priority: int | float | None = None  # budget rank; None: insertion_order ranks
    position: str = "before_char"  # one of POSITIONS
    case_sensitive: bool | None = None  # None: the book's default (case-insensitive)
    use_regex: bool | None = None  # V3: every key is a pattern
    match_whole_words: bool | None = None
    scan_depth: int | None = None  # None: the book's
    exclude_recursion: bool = False
    prevent_recursion: bool = False
    delay_until_recursion: bool = False
    id: int | str | None = None
    comment: str = ""
    name: str = ""
    extensions: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # unknown fields, written back unchanged
    decorators: list[str] = field(default_factory=list)  # V3 `@@name value` lines that opened the content

    def __post_init__(self) -> None:
        if self.selective_logic not in LOGICS:
            raise CardError(f"selective_logic: expected one of {', '.join(LOGICS)}, got {self.selective_logic!r}")
        if self.position not in POSITIONS:
            raise CardError(f"position: expected one of {', '.join(POSITIONS)}, got {self.position!r}")
        if self.scan_depth is not None and (not isinstance(self.scan_depth, int) or self.scan_depth < 0):
            raise CardError(f"scan_depth: expected a whole number >= 0, got {self.scan_depth!r}")

    @property
    def label(self) -> str:
        """A short human name for listings: comment, name, first key or id."""
        return self.comment or self.name or (self.keys[0] if self.keys else "") or f"#{self.id}"

    # -- matching --

    def _predicates(self, keys: Sequence[str], case_sensitive: bool) -> list[Predicate]:
        found = (_matcher(k, case_sensitive, bool(self.match_whole_words), bool(self.use_regex)) for k in keys)
        return [m for m in found if m is not None]

    def matches(self, text: str | _Text, case_sensitive: bool = False, scan: Scan | None = None) -> bool:
        """Do the keys (and, for a selective entry, the secondary keys) match `text`? Ignores `constant`.

        Key patterns run within `scan`'s limits (default: `ConversationConfig`'s): PatternTimeout when one took
        too long (the entry is then off), ScanStopped when the scan's budget is spent."""
        text = text if isinstance(text, _Text) else _Text(text)
        scan = scan or Scan(_default_limits())
        case = self.case_sensitive if self.case_sensitive is not None else case_sensitive
        if not any(m(text, scan) for m in self._predicates(self.keys, case)):
            return False
        secondary = self._predicates(self.secondary_keys, case) if self.selective else []
        if not secondary:
            return True
        hits = [m(text, scan) for m in secondary]
        if self.selective_logic == "AND_ANY":
            return any(hits)
        if self.selective_logic == "AND_ALL":
            return all(hits)
        if self.selective_logic == "NOT_ANY":
            return not any(hits)
        return not all(hits)  # NOT_ALL

    # -- (de)serialisation --

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "entry") -> LoreEntry:
        """From the card spec's entry shape (SillyTavern's settings read from `extensions` too)."""
        if not isinstance(d, Mapping):
            raise CardError(f"{where}: expected an object")
        ext = _dict(d.get("extensions"), f"{where}.extensions")

        def pick(name: str) -> Any:  # the spec's own field wins over SillyTavern's copy in extensions
            return d[name] if d.get(name) is not None else ext.get(_EXT_FIELDS.get(name, name))

        logic = ext.get("selectiveLogic", d.get("selective_logic"))
        if isinstance(logic, str) and logic.upper() in LOGICS:
            logic = logic.upper()
        elif logic is None:
            logic = "AND_ANY"
        else:
            index = _number(logic, f"{where}.extensions.selectiveLogic")
            if index not in range(len(LOGICS)):
                raise CardError(f"{where}.extensions.selectiveLogic: expected 0-3, got {logic!r}")
            logic = LOGICS[index]
        position = d.get("position")
        if position in (None, ""):
            position = "before_char"
        elif isinstance(position, (int, float)) and not isinstance(position, bool):
            position = "before_char" if position == 0 else "after_char"  # SillyTavern's numeric positions
        elif position not in POSITIONS:
            raise CardError(f"{where}.position: expected 'before_char' or 'after_char', got {position!r}")
        scan_depth = _number(pick("scan_depth"), f"{where}.scan_depth")
        if scan_depth is not None and (not isinstance(scan_depth, int) or scan_depth < 0):
            raise CardError(f"{where}.scan_depth: expected a whole number >= 0, got {scan_depth!r}")
        decorators, content = _split_decorators(_str(d.get("content"), f"{where}.content"))
        entry_id = d.get("id")
        if entry_id is not None and (isinstance(entry_id, bool) or not isinstance(entry_id, (int, str))):
            raise CardError(f"{where}.id: expected a number or a string")
        return cls(
            keys=_str_list(d.get("keys"), f"{where}.keys", split_commas=True),
            content=content,
            decorators=decorators,
            secondary_keys=_str_list(d.get("secondary_keys"), f"{where}.secondary_keys", split_commas=True),
            selective=bool(_bool(d.get("selective"), f"{where}.selective")),
            selective_logic=logic,
            constant=bool(_bool(d.get("constant"), f"{where}.constant")),
            enabled=bool(_bool(d.get("enabled"), f"{where}.enabled", True)),
            insertion_order=_number(d.get("insertion_order"), f"{where}.insertion_order", 100),
            priority=_number(d.get("priority"), f"{where}.priority"),
            position=position,
            case_sensitive=_bool(pick("case_sensitive"), f"{where}.case_sensitive", None),
            use_regex=_bool(d.get("use_regex"), f"{where}.use_regex", None),
            match_whole_words=_bool(pick("match_whole_words"), f"{where}.extensions.match_whole_words", None),
            scan_depth=scan_depth,
            exclude_recursion=bool(_bool(pick("exclude_recursion"), f"{where}.extensions.exclude_recursion")),
            prevent_recursion=bool(_bool(pick("prevent_recursion"), f"{where}.extensions.prevent_recursion")),
            delay_until_recursion=bool(
                _bool(pick("delay_until_recursion"), f"{where}.extensions.delay_until_recursion")
            ),
            id=entry_id,
            comment=_str(d.get("comment"), f"{where}.comment"),
            name=_str(d.get("name"), f"{where}.name"),
            extensions=ext,
            extra={k: copy.deepcopy(v) for k, v in d.items() if k not in _ENTRY_FIELDS},
        )

    def to_dict(self) -> dict[str, Any]:
        """The card spec's entry shape; SillyTavern's settings also go to `extensions`, where it reads them."""
        ext = copy.deepcopy(self.extensions)
        for attr, key in _EXT_FIELDS.items():
            value = getattr(self, attr)
            if key in ext or value not in (None, False):
                ext[key] = value
        if "selectiveLogic" in ext or self.selective_logic != "AND_ANY":
            ext["selectiveLogic"] = LOGICS.index(self.selective_logic)
        if ext.get("position") in (0, 1):  # SillyTavern's numeric copy follows an edited position
            ext["position"] = POSITIONS.index(self.position)
        out: dict[str, Any] = {
            "keys": list(self.keys),
            "content": "\n".join([*self.decorators, self.content]) if self.decorators else self.content,
            "extensions": ext,
            "enabled": self.enabled,
            "insertion_order": self.insertion_order,
        }
        if self.case_sensitive is not None:
            out["case_sensitive"] = self.case_sensitive
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
        out["position"] = self.position
        out.update(copy.deepcopy(self.extra))
        return out


# -- books ----------------------------------------------------------------------------------------------

_BOOK_FIELDS = ("name", "description", "scan_depth", "token_budget", "recursive_scanning", "extensions", "entries")
_MAX_STEPS_KEY = "rolechat/max_recursion_steps"


@dataclass
class Lorebook:
    """A lorebook: entries plus the scanning settings.

    >>> book = Lorebook(entries=[LoreEntry(keys=["长安"], content="长安是都城。")], token_budget=500)
    >>> [e.content for e in book.activate(["我想去长安"], len)]
    ['长安是都城。']
    """

    entries: list[LoreEntry] = field(default_factory=list)
    name: str = ""
    description: str = ""
    scan_depth: int | None = None  # None: DEFAULT_SCAN_DEPTH
    token_budget: int | None = None  # None: no limit of its own
    recursive_scanning: bool | None = None  # None: on (SillyTavern's default)
    max_recursion_steps: int = 0  # scan sweeps in all; 0: until nothing new activates; 1: no recursion
    extensions: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scan_depth is not None and (not isinstance(self.scan_depth, int) or self.scan_depth < 0):
            raise CardError(f"scan_depth: expected a whole number >= 0, got {self.scan_depth!r}")
        if self.token_budget is not None and (not isinstance(self.token_budget, int) or self.token_budget < 0):
            raise CardError(f"token_budget: expected a whole number >= 0, got {self.token_budget!r}")
        if not isinstance(self.max_recursion_steps, int) or self.max_recursion_steps < 0:
            raise CardError(f"max_recursion_steps: expected a whole number >= 0, got {self.max_recursion_steps!r}")

    def activate(
        self,
        messages: Sequence[str],
        count_tokens: Callable[[str], int],
        budget: int | None = None,
        *,
        substitute: Callable[[str], str] | None = None,
        limits: ScanLimits | None = None,
        notices: list[LoreNotice] | None = None,
    ) -> list[LoreEntry]:
        """The entries `messages` (oldest first, most recent last) activate, sorted by insertion order.

        `budget` (tokens) caps the book's own `token_budget` (the smaller applies; None for both: no limit).
        `substitute` rewrites keys before matching (e.g. to replace `{{char}}` and `{{user}}` in them).
        `limits` bound what the scan may cost (default: `ConversationConfig`'s lore_* settings); an entry whose
        key pattern took too long stays out, and so do entries not yet checked when the scan's time or checks
        run out: each such cut is appended to `notices` (a `LoreNotice`) when a list is given.
        """
        caps = [b for b in (self.token_budget, budget) if b is not None]
        entries = [e for e in self.entries if e.enabled and e.content.strip()]
        if substitute is not None:
            entries = [_Substituted.of(e, substitute) for e in entries]  # keys rewritten, the original entry returned
        depth = self.scan_depth if self.scan_depth is not None else DEFAULT_SCAN_DEPTH
        run = _Activation(entries, messages, depth, Scan(limits or _default_limits()))
        step = 1
        while True:
            new, overflow = run.admit(run.sweep(step), count_tokens, min(caps) if caps else None)
            if run.stopped or overflow or self.recursive_scanning is False:
                break
            if self.max_recursion_steps and step >= self.max_recursion_steps:
                break
            if not new and not (step == 1 and run.delayed_left()):
                break
            step += 1
        if notices is not None:
            notices.extend(run.notices)
        return run.result()

    def risky_keys(self) -> list[tuple[str, str]]:
        """(entry label, key) of each key pattern with nested quantifiers (`/(a+)+$/`): the shape that can take
        exponential time to match. Matching gives each pattern a time limit and turns its entry off past it."""
        found = []
        for entry in self.entries:
            for key in (*entry.keys, *entry.secondary_keys):
                pattern = _key_pattern(key.strip())
                source = pattern[0] if pattern else key.strip() if entry.use_regex else None
                if source and nested_quantifiers(source):
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
        ext = _dict(d.get("extensions"), f"{where}.extensions")
        steps = _number(ext.get(_MAX_STEPS_KEY), f"{where}.extensions.{_MAX_STEPS_KEY}", 0)
        scan_depth = _number(d.get("scan_depth"), f"{where}.scan_depth")
        budget = _number(d.get("token_budget"), f"{where}.token_budget")
        try:
            return cls(
                entries=[LoreEntry.from_dict(e, f"{where}.entries[{n}]") for n, e in enumerate(raw_entries)],
                name=_str(d.get("name"), f"{where}.name"),
                description=_str(d.get("description"), f"{where}.description"),
                scan_depth=scan_depth,
                token_budget=budget,
                recursive_scanning=_bool(d.get("recursive_scanning"), f"{where}.recursive_scanning", None),
                max_recursion_steps=steps,
                extensions=ext,
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


def _forced(entry: LoreEntry) -> bool | None:
    """`@@activate` (on in any case) -> True, `@@dont_activate` -> False, else None: the keys decide."""
    names = {d.split(None, 1)[0] for d in entry.decorators if not d.startswith("@@@")}
    if "@@activate" in names:
        return True
    return False if "@@dont_activate" in names else None


def _rank(entry: LoreEntry) -> float:
    return float(entry.priority if entry.priority is not None else entry.insertion_order)


def _default_limits() -> ScanLimits:
    from rolechat.conversation.config import ConversationConfig

    return ScanLimits.of(ConversationConfig())


class _Activation:
    """One activation under way: the scanned texts, what is done and admitted, the scan's cost and its notices."""

    def __init__(self, entries: list[LoreEntry], messages: Sequence[str], depth: int, scan: Scan) -> None:
        self.entries, self.messages, self.depth, self.scan = entries, list(messages), depth, scan
        self.chats: dict[int, _Text] = {}
        self.combined: dict[int, _Text] = {}  # chat + recursion text, per scan depth, for the current sweep
        self.recursion: list[str] = []  # contents that recursion scans
        self.accepted: list[tuple[int, LoreEntry]] = []  # (index in entries, entry)
        self.done: set[int] = set()
        self.used = 0
        self.notices: list[LoreNotice] = []
        self.stopped = False  # the scan's time or checks ran out

    def text(self, depth: int, step: int) -> _Text:
        if depth not in self.chats:
            recent = self.messages[-depth:] if depth > 0 else []
            self.chats[depth] = _Text("".join(_SCAN_SEPARATOR + m for m in recent))
        if step == 1:
            return self.chats[depth]
        if depth not in self.combined:
            self.combined[depth] = _Text(self.chats[depth].raw + "".join(self.recursion))
        return self.combined[depth]

    def sweep(self, step: int) -> list[tuple[tuple, int]]:
        """The entries sweep `step` activates, in admission order: constant first, then the chat's, then
        recursion's, each group by rank (stable: equal ranks keep the book's order)."""
        self.combined.clear()
        found = []
        for i, entry in enumerate(self.entries):
            if i not in self.done:
                place = self._place(i, entry, step)
                if place is not None:
                    found.append((place, i))
        found.sort(key=lambda item: item[0])
        return found

    def _place(self, i: int, entry: LoreEntry, step: int) -> tuple | None:
        forced = _forced(entry)
        if forced is False:
            return None
        if step == 1 and (entry.constant or forced):
            return (0, -_rank(entry))
        if (step == 1 and entry.delay_until_recursion) or (step > 1 and entry.exclude_recursion) or self.stopped:
            return None
        depth = entry.scan_depth if entry.scan_depth is not None else self.depth
        try:
            self.scan.check()
            if not entry.matches(self.text(depth, step), scan=self.scan):
                return None
        except PatternTimeout as exc:
            self.done.add(i)
            self.notices.append(LoreNotice(_original(entry).label, str(exc)))
            return None
        except ScanStopped as exc:
            self.stopped = True
            self.notices.append(LoreNotice("", str(exc)))
            return None
        return (1, -_rank(entry)) if step == 1 else (2, step, -_rank(entry))

    def admit(self, found: list[tuple[tuple, int]], count_tokens: Callable[[str], int], limit: int | None):
        """Admit what a sweep found within the token limit: (entries admitted, whether one did not fit)."""
        new, overflow = 0, False
        for _, i in found:
            entry = self.entries[i]
            self.done.add(i)
            if not entry.extensions.get("ignore_budget"):  # SillyTavern's "ignore budget" entries always go in
                if overflow:
                    continue
                tokens = count_tokens(_original(entry).content)
                if limit is not None and self.used + tokens > limit:
                    overflow = True
                    continue
                self.used += tokens
            self.accepted.append((i, entry))
            new += 1
            if not entry.prevent_recursion:
                self.recursion.append(_SCAN_SEPARATOR + _original(entry).content)
        return new, overflow

    def delayed_left(self) -> bool:
        return any(e.delay_until_recursion for j, e in enumerate(self.entries) if j not in self.done)

    def result(self) -> list[LoreEntry]:
        self.accepted.sort(key=lambda item: (item[1].insertion_order, item[0]))
        return [_original(e) for _, e in self.accepted]


@dataclass
class _Substituted(LoreEntry):
    """An entry whose keys went through a substitution, remembering the entry it came from."""

    source: LoreEntry | None = None

    @classmethod
    def of(cls, entry: LoreEntry, substitute: Callable[[str], str]) -> _Substituted:
        values = {f: getattr(entry, f) for f in entry.__dataclass_fields__}
        values["keys"] = [substitute(k) for k in entry.keys]
        values["secondary_keys"] = [substitute(k) for k in entry.secondary_keys]
        return cls(**values, source=entry)


def _original(entry: LoreEntry) -> LoreEntry:
    return entry.source if isinstance(entry, _Substituted) and entry.source is not None else entry
