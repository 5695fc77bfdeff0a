"""The world-info scan: which lorebook entries of several books a turn activates, why, and what the budget left out.

SillyTavern's `checkWorldInfo` (public/scripts/world-info.js), read and rewritten for rolechat:

    found = scan([Source(chat_book, "chat", "旅途"), Source(card.character_book, "character", "林夕")],
                 [("小明", "我们去长安吧"), ...], count_tokens, ScanSettings(), budget=400,
                 state=saved_state, chat_length=7, rng=random.Random(seed))
    found.active      # Decisions of the entries that go in, in prompt order (by order, lower first)
    found.skipped     # Decisions of entries activated but left out: budget, probability, inclusion group, ...
    found.state       # the timed effects (sticky, cooldown) to keep with the chat for its next turn
    found.notices     # what the scan's own bounds cut short (a key pattern that timed out, the scan's time)
    activate(book, ["我们去长安吧"], count_tokens)   # one book on its own: its active entries, in prompt order

- Books are scanned as one list in SillyTavern's order: chat-bound books (a scene's first) by order, then the
  character's and the global books by `strategy` (character_first: the character's by order, then the global
  ones by order; global_first; evenly: both sorted together). Higher order ranks first; equal orders keep that
  list's order.
- The scanned text is the last `scan_depth` messages, newest first, each `name: text` (with `include_names`),
  each opened by SillyTavern's `\\x01` marker; then the contents recursion added. A key never spans two messages.
- Each sweep: entries on delay or cooldown (unless sticky) stay out; `@@activate`, constant and sticky entries go
  in; others need a key (see `lorebook`). Sticky entries first, then the list's order; then inclusion groups keep
  one entry per group (a sticky member, else the best-scored with group scoring, else the highest-order
  override, else a draw by weight); then each entry's probability is rolled (sticky ones skip it) and it is
  admitted while `used + tokens < budget`. The first that does not fit spends the budget: later entries stay
  out (but for `ignore_budget` ones) and recursion stops.
- Recursion: the admitted entries' contents (but for prevent-recursion ones) are scanned in the next sweep,
  where exclude-recursion entries cannot activate. An entry its book's budget left out feeds nothing; one the
  scan's budget refused ends recursion, but a delayed level that opens after it still scans it (SillyTavern's
  rule). "Delay until recursion" entries wait for recursion, at their level: level 1 first, then, when a sweep
  finds nothing new, the next level. `max_recursion_steps` caps sweeps.
- Timed effects count messages (the chat's length, the new message included): sticky keeps an entry active for
  N messages after it activates, cooldown keeps it out for N messages (starting when sticky ends), delay keeps
  it out until the chat has N messages.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from rolechat.conversation.config import STRATEGIES
from rolechat.conversation.lorebook import (
    DEFAULT_SCAN_DEPTH,
    MATCH_SOURCES,
    Lorebook,
    LoreEntry,
    LoreNotice,
    ScanText,
    forced,
)
from rolechat.conversation.patterns import PatternTimeout, Scan, ScanLimits, ScanStopped

__all__ = ["Decision", "ScanSettings", "Source", "STRATEGIES", "WorldInfo", "activate", "budget_of", "scan"]

_MARK = "\x01"  # SillyTavern opens every scanned message with it
_JOIN = "\n" + _MARK


@dataclass(frozen=True)
class ScanSettings:
    """SillyTavern's world-info activation settings (its defaults; `ConversationConfig`'s lore_* set them)."""

    scan_depth: int = DEFAULT_SCAN_DEPTH
    include_names: bool = True
    recursive: bool = True
    case_sensitive: bool = False
    whole_words: bool = True
    max_recursion_steps: int = 0  # 0: as many sweeps as recursion finds new entries
    group_scoring: bool = False
    strategy: str = "character_first"
    limits: ScanLimits | None = None  # None: ConversationConfig's defaults

    @classmethod
    def of(cls, cfg: Any) -> ScanSettings:
        """The settings of a ConversationConfig: each field is its `lore_<field>` (the scan limits its own)."""
        named = {f.name: getattr(cfg, f"lore_{f.name}") for f in fields(cls) if f.name != "limits"}
        return cls(**named, limits=ScanLimits.of(cfg))


def budget_of(percent: float, cap: int, context: int) -> int:
    """SillyTavern's world-info budget: `percent` of the context the prompt may use (at least 1 token), no more
    than `cap` when it is set."""
    budget = round(percent * context / 100) or 1
    return min(budget, cap) if cap > 0 else budget


@dataclass
class Source:
    """One book in the scan: `kind` is chat (a chat's or scene's own book), character or global; `name` is
    how the prompt view names it and what keys its entries' timed effects."""

    book: Lorebook
    kind: str
    name: str


@dataclass
class Decision:
    """What happened to one entry this turn: `status` is "active" or why it stayed out (budget, book budget,
    probability, group, cooldown, delay); `reason` is why it activated (the key found, constant, recursion...)."""

    entry: LoreEntry
    source: Source
    status: str
    reason: str = ""
    tokens: int = 0
    rank: int = 0  # admission order (the budget's priority: lower first)

    @property
    def book(self) -> str:
        return self.source.name


@dataclass
class WorldInfo:
    """The scan's outcome (see the module docstring)."""

    active: list[Decision] = field(default_factory=list)
    skipped: list[Decision] = field(default_factory=list)
    notices: list[LoreNotice] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    budget: int | None = None
    used: int = 0


@dataclass(eq=False)
class _Item:
    """An entry in the scan's list: where it came from, its place in the list, its keys after substitution."""

    entry: LoreEntry
    source: Source
    index: int
    probe: LoreEntry  # the entry with its keys substituted (the entry itself without a substitution)
    key: str = ""  # what its timed effects are kept under: the book's name and the entry's id (or place)


def _ordered(sources: Sequence[Source], strategy: str) -> list[tuple[LoreEntry, Source]]:
    """Every usable entry in SillyTavern's order: chat lore, then character and global lore by strategy."""

    def by_order(kinds: tuple[str, ...]) -> list[tuple[LoreEntry, Source]]:
        found = [(e, s) for s in sources if s.kind in kinds for e in s.book.entries if e.enabled and e.content.strip()]
        return sorted(found, key=lambda pair: -float(pair[0].insertion_order))  # stable: ties keep their place

    chat = by_order(("chat",))
    if strategy == "evenly":
        return chat + by_order(("character", "global"))
    character, common = by_order(("character",)), by_order(("global",))
    return chat + (common + character if strategy == "global_first" else character + common)


class _Buffer:
    """The scanned text (SillyTavern's WorldInfoBuffer): recent messages newest first, then recursion's text."""

    def __init__(self, messages: Sequence[tuple[str, str]], include_names: bool, extra: Mapping[str, str]) -> None:
        lines = [f"{name}: {text}" if include_names and name else text for name, text in messages]
        self.depth_buffer = [line.strip() for line in reversed(lines)]
        self.recurse: list[str] = []
        self.extra = extra
        self._cache: dict[tuple, ScanText] = {}

    def text(self, entry: LoreEntry, depth: int, recursion: bool) -> ScanText:
        extras = tuple(
            name for key, name in MATCH_SOURCES.items() if entry.extensions.get(key) and self.extra.get(name)
        )
        cache_key = (depth, recursion, len(self.recurse), extras)
        if cache_key not in self._cache:
            if depth <= 0:  # SillyTavern: a scan depth of 0 sees nothing, not even recursion
                self._cache[cache_key] = ScanText("")
            else:
                parts = [_MARK + _JOIN.join(self.depth_buffer[:depth]), *(self.extra[n] for n in extras)]
                if recursion:
                    parts += self.recurse
                self._cache[cache_key] = ScanText(_JOIN.join(parts))
        return self._cache[cache_key]


class _Timed:
    """Timed effects (SillyTavern's WorldInfoTimedEffects): which entries are sticky, cooling down or delayed
    at this chat length, and the state to keep for the next turn."""

    def __init__(self, state: Mapping[str, Any] | None, items: Sequence[_Item], length: int) -> None:
        self.length = length
        state = state if isinstance(state, Mapping) else {}
        self.state = {k: dict(v) if isinstance(v := state.get(k), Mapping) else {} for k in ("sticky", "cooldown")}
        by_key = {item.key: item for item in items}
        self.active: dict[str, set[str]] = {"sticky": set(), "cooldown": set(), "delay": set()}
        for kind in ("sticky", "cooldown"):
            for key, effect in list(self.state[kind].items()):
                self._check(kind, key, effect, by_key.get(key))
        self.active["delay"] = {i.key for i in items if i.entry.delay and length < i.entry.delay}

    def _check(self, kind: str, key: str, effect: Any, item: _Item | None) -> None:
        start, end = (_whole(effect.get(k)) if isinstance(effect, Mapping) else None for k in ("start", "end"))
        if start is None or end is None:  # not an effect this scan wrote: dropped
            del self.state[kind][key]
            return
        if self.length <= start and not effect.get("protected"):  # the chat did not advance (a regeneration)
            del self.state[kind][key]
            return
        if item is None or item.entry.fingerprint != effect.get("hash"):  # gone or changed since
            if self.length >= end:
                del self.state[kind][key]
            return
        if not getattr(item.entry, kind):
            del self.state[kind][key]
            return
        if self.length >= end:
            del self.state[kind][key]
            if kind == "sticky" and item.entry.cooldown:  # cooldown starts when sticky ends
                self.state["cooldown"][key] = self._effect(item.entry, "cooldown", protected=True)
                self.active["cooldown"].add(key)
            return
        self.active[kind].add(key)

    def _effect(self, entry: LoreEntry, kind: str, protected: bool = False) -> dict[str, Any]:
        end = self.length + getattr(entry, kind)
        return {"hash": entry.fingerprint, "start": self.length, "end": end, "protected": protected}

    def is_(self, kind: str, item: _Item) -> bool:
        return item.key in self.active[kind]

    def record(self, admitted: Sequence[_Item]) -> dict[str, Any]:
        for item in admitted:
            for kind in ("sticky", "cooldown"):
                if getattr(item.entry, kind) and item.key not in self.state[kind]:
                    self.state[kind][item.key] = self._effect(item.entry, kind)
        return {kind: value for kind, value in self.state.items() if value}


def scan(
    sources: Sequence[Source],
    messages: Sequence[tuple[str, str]],
    count_tokens: Callable[[str], int],
    settings: ScanSettings | None = None,
    *,
    budget: int | None = None,
    state: Mapping[str, Any] | None = None,
    chat_length: int | None = None,
    rng: random.Random | None = None,
    substitute: Callable[[str], str] | None = None,
    extra: Mapping[str, str] | None = None,
    accept: Callable[[LoreEntry], bool] | None = None,
) -> WorldInfo:
    """The scan of the module docstring. `messages` are (speaker name, text), oldest first, the new message
    last; `budget` is in tokens (None: none); `state` the timed effects kept from the chat's last turn;
    `chat_length` the number of messages timed effects count (default: len(messages)); `substitute` rewrites
    keys before matching (macros); `extra` holds the texts an entry may also be matched against (its
    `match_*` settings: persona, description, personality, depth_prompt, scenario, creator_notes); `accept`
    says whether an entry may activate for this character at all (SillyTavern's character filter)."""
    settings = settings or ScanSettings()
    run = _Run(sources, messages, count_tokens, settings, budget, rng or random.Random(), substitute, extra or {})
    timed = _Timed(state, run.items, len(messages) if chat_length is None else chat_length)
    run.go(timed, accept)
    return run.outcome(timed)


def activate(
    book: Lorebook,
    messages: Sequence[str],
    count_tokens: Callable[[str], int],
    budget: int | None = None,
    *,
    substitute: Callable[[str], str] | None = None,
    limits: ScanLimits | None = None,
    notices: list[LoreNotice] | None = None,
    settings: ScanSettings | None = None,
) -> list[LoreEntry]:
    """The entries of `book` alone that `messages` (oldest first, most recent last) activate, in prompt order
    (by insertion order, lower first): `scan` over this one book.

    `budget` (tokens; None: no limit) is the scan's budget (the book's own `token_budget` also applies).
    `substitute` rewrites keys before matching (e.g. to replace `{{char}}` and `{{user}}` in them).
    `settings` default to SillyTavern's, with the book's own recursion settings; `limits` bound the scan's cost
    (an entry whose key pattern took too long stays out, and so do entries not checked when the scan's time or
    checks run out: each such cut is appended to `notices` when a list is given)."""
    own: dict[str, Any] = {"limits": limits} if limits is not None else {}
    if settings is None:
        own["recursive"] = book.recursive_scanning is not False
        own["max_recursion_steps"] = book.max_recursion_steps
    settings = ScanSettings(**{**(settings or ScanSettings()).__dict__, **own})
    source = Source(book, "character", book.name or "lorebook")
    found = scan([source], [("", m) for m in messages], count_tokens, settings, budget=budget, substitute=substitute)
    if notices is not None:
        notices.extend(found.notices)
    return [d.entry for d in found.active]


class _Run:
    """One scan under way (the loop of `scan`)."""

    def __init__(self, sources, messages, count_tokens, settings, budget, rng, substitute, extra) -> None:
        self.settings, self.budget, self.rng, self.count = settings, budget, rng, count_tokens
        probe = (lambda e: _with_keys(e, substitute)) if substitute else (lambda e: e)
        pairs = _ordered(sources, settings.strategy)
        places = {id(e): n for s in sources for n, e in enumerate(s.book.entries)}
        self.items = [
            _Item(e, s, i, probe(e), f"{s.name}.{e.id if e.id is not None else f'#{places[id(e)]}'}")
            for i, (e, s) in enumerate(pairs)
        ]
        self.buffer = _Buffer(messages, settings.include_names, extra)
        self.scan = Scan(settings.limits or _default_limits())
        self.admitted: list[tuple[_Item, str, int]] = []  # (item, reason, tokens) in admission order
        self.skipped: dict[int, Decision] = {}  # item index -> the first reason it stayed out
        self.notices: list[LoreNotice] = []
        self.done: set[int] = set()  # items admitted, failed their roll or turned off
        self.used, self.book_used = 0, {id(s): 0 for s in sources}
        self.book_full: set[int] = set()
        self.overflow = self.stopped = False

    def go(self, timed: _Timed, accept) -> None:
        levels = sorted({i.entry.recursion_level for i in self.items if i.entry.recursion_level})
        level = levels.pop(0) if levels else 0
        step, recursion = 0, False
        while True:
            steps = self.settings.max_recursion_steps
            if steps and steps <= step:
                break
            step += 1
            found = self._sweep(timed, accept, recursion, level, step)
            found.sort(key=lambda pair: (not timed.is_("sticky", pair[0]), pair[0].index))
            found = self._groups(found, timed, recursion)
            fresh = self._admit(found, timed)
            feed = [i for i in fresh if not i.entry.prevent_recursion and i.source.book.recursive_scanning is not False]
            more = self.settings.recursive and not self.overflow and bool(feed)
            if not more and levels:
                more, level = True, levels.pop(0)
            if not more or self.stopped:
                break
            recursion = True
            text = "\n".join(i.entry.content for i in feed)
            if text:
                self.buffer.recurse.append(text)

    def _sweep(self, timed: _Timed, accept, recursion: bool, level: int, step: int) -> list[tuple[_Item, str]]:
        found = []
        for item in self.items:
            if item.index in self.done or (accept is not None and not accept(item.entry)):
                continue
            reason = self._check(item, timed, recursion, level)
            if reason:
                found.append(
                    (item, f"{reason} (recursion, sweep {step})" if recursion and reason[:3] == "key" else reason)
                )
        return found

    def _check(self, item: _Item, timed: _Timed, recursion: bool, level: int) -> str | None:
        """Why `item` activates in this sweep, or None."""
        entry, sticky = item.entry, timed.is_("sticky", item)
        if timed.is_("delay", item) or (timed.is_("cooldown", item) and not sticky):
            return None
        if not sticky and entry.recursion_level and (not recursion or entry.recursion_level > level):
            return None
        if not sticky and recursion and (entry.exclude_recursion or item.source.book.recursive_scanning is False):
            return None
        decided = forced(entry)
        if decided is not None:
            return "@@activate" if decided else None
        if entry.constant:
            return "constant"
        if sticky:
            return "sticky"
        if not entry.keys or self.stopped:
            return None
        return self._match(item, recursion)

    def _match(self, item: _Item, recursion: bool) -> str | None:
        depth = _depth(item, self.settings)
        try:
            self.scan.check()
            key = item.probe.matched_key(
                self.buffer.text(item.entry, depth, recursion),
                self.scan,
                self.settings.case_sensitive,
                self.settings.whole_words,
            )
        except PatternTimeout as exc:
            self.done.add(item.index)
            self.notices.append(LoreNotice(item.entry.label, str(exc)))
            return None
        except ScanStopped as exc:
            self.stopped = True
            self.notices.append(LoreNotice("", str(exc)))
            return None
        return None if key is None else f"key {key.strip()}"

    def _groups(self, found: list[tuple[_Item, str]], timed: _Timed, recursion: bool) -> list[tuple[_Item, str]]:
        """SillyTavern's filterByInclusionGroups: one entry per inclusion group."""
        groups: dict[str, list[_Item]] = {}
        for item, _ in found:
            for name in item.entry.groups:
                groups.setdefault(name, []).append(item)
        out: set[int] = set()
        for name, members in groups.items():
            for loser, why in self._group_losers(name, members, timed, recursion):
                if loser.index not in out:
                    out.add(loser.index)
                    self._skip(loser, "group", why)
        return [(i, r) for i, r in found if i.index not in out]

    def _group_losers(self, name: str, members: list[_Item], timed: _Timed, recursion: bool):
        sticky = [m for m in members if timed.is_("sticky", m)]
        if sticky:
            return [(m, f"inclusion group {name}: a sticky member stays") for m in members if m not in sticky]
        if self._scored(members):
            members, losers = self._by_score(name, members, recursion)
        else:
            losers = []
        if any(a.entry.group == name for a, _, _ in self.admitted):
            return losers + [(m, f"inclusion group {name}: already filled") for m in members]
        if len(members) <= 1:
            return losers
        first = [m for m in members if m.entry.group_override]
        if first:
            winner = sorted(first, key=lambda m: -float(m.entry.insertion_order))[0]
            why = f"inclusion group {name}: {winner.entry.label} has priority"
        else:
            winner = self._draw(members)
            why = f"inclusion group {name}: {winner.entry.label} won the draw"
        return losers + [(m, why) for m in members if m is not winner]

    def _scored(self, members: list[_Item]) -> bool:
        return self.settings.group_scoring or any(m.entry.use_group_scoring for m in members)

    def _by_score(self, name: str, members: list[_Item], recursion: bool):
        scores = {}
        for m in members:
            text = self.buffer.text(m.entry, _depth(m, self.settings), recursion)
            try:
                scores[m.index] = m.probe.score(
                    text, self.scan, self.settings.case_sensitive, self.settings.whole_words
                )
            except (PatternTimeout, ScanStopped):
                scores[m.index] = 0
        best = max(scores.values())
        scored = lambda m: (
            m.entry.use_group_scoring if m.entry.use_group_scoring is not None else self.settings.group_scoring
        )
        losers = [m for m in members if scored(m) and scores[m.index] < best]
        why = f"inclusion group {name}: fewer keys found than the best ({best})"
        return [m for m in members if m not in losers], [(m, why) for m in losers]

    def _draw(self, members: list[_Item]) -> _Item:
        total = sum(float(m.entry.group_weight) for m in members)
        roll, upto = self.rng.random() * total, 0.0
        for m in members:
            upto += float(m.entry.group_weight)
            if roll <= upto:
                return m
        return members[-1]

    def _admit(self, found: list[tuple[_Item, str]], timed: _Timed) -> list[_Item]:
        """Roll each entry's probability and admit it within the budget; the ones that feed recursion: those that
        rolled in, but for those their book's budget left out."""
        fresh = []
        for item, reason in found:
            entry = item.entry
            if self.overflow and not entry.ignore_budget:
                self.done.add(item.index)  # nothing but ignore-budget entries goes in any more
                self._skip(item, "budget", reason)
                continue
            if not self._rolled(item, timed):
                self.done.add(item.index)
                self._skip(item, "probability", f"{reason}; {entry.probability:g}%")
                continue
            tokens = self.count(entry.content + "\n")
            if not entry.ignore_budget and not self._fits(item, tokens):
                self.done.add(item.index)
                if id(item.source) in self.book_full:
                    # Left out by its book's token_budget, it feeds no recursion. SillyTavern reads no book budget
                    # (convertCharacterBook drops token_budget); in its checkWorldInfo a refusal by its one budget
                    # sets token_budget_overflowed, which ends recursion, so a recursion sweep only ever follows a
                    # sweep whose entries all went in. Fed with the left-out ones, recursion grew with the book
                    # (every match of one sweep scanned by the next): quadratic, 2.7 s a turn at 10,000 entries
                    # (docs/benchmarks.md, Scale curves).
                    self._skip(item, "book budget", reason, tokens)
                else:
                    fresh.append(item)  # as in SillyTavern: it stops recursion, but a delayed level still scans it
                    self._skip(item, "budget", reason, tokens)
                continue
            fresh.append(item)
            self.done.add(item.index)
            self.admitted.append((item, reason, tokens))
        return fresh

    def _skip(self, item: _Item, status: str, why: str, tokens: int = 0) -> None:
        self.skipped.setdefault(item.index, Decision(item.entry, item.source, status, why, tokens))

    def _rolled(self, item: _Item, timed: _Timed) -> bool:
        entry = item.entry
        if not entry.use_probability or entry.probability >= 100 or timed.is_("sticky", item):
            return True
        return self.rng.random() * 100 <= entry.probability

    def _fits(self, item: _Item, tokens: int) -> bool:
        """Whether `tokens` more fit the scan's budget (SillyTavern: used + tokens < budget; the first that does
        not ends the scan) and the book's own token_budget (one that does not fit ends that book's entries)."""
        book = item.source.book
        if id(item.source) in self.book_full:
            return False
        if book.token_budget is not None and self.book_used[id(item.source)] + tokens > book.token_budget:
            self.book_full.add(id(item.source))
            return False
        if self.budget is not None and self.used + tokens >= self.budget:
            self.overflow = True
            return False
        self.used += tokens
        self.book_used[id(item.source)] += tokens
        return True

    def outcome(self, timed: _Timed) -> WorldInfo:
        decisions = [
            Decision(item.entry, item.source, "active", reason, tokens, rank)
            for rank, (item, reason, tokens) in enumerate(self.admitted)
        ]
        # SillyTavern builds each position's text from order high to low, each entry put in front: lower order
        # first, and of equal orders the one admitted later first
        decisions.sort(key=lambda d: (float(d.entry.insertion_order), -d.rank))
        state = timed.record([item for item, _, _ in self.admitted])
        held = timed.active["delay"] | (timed.active["cooldown"] - timed.active["sticky"])
        for item in self.items:
            if item.key in held and (item.entry.constant or (item.probe.keys and self._would_match(item))):
                self._skip(item, "delay" if item.key in timed.active["delay"] else "cooldown", "it would activate now")
        admitted = {item.index for item, _, _ in self.admitted}
        skipped = [d for index, d in self.skipped.items() if index not in admitted]
        return WorldInfo(decisions, skipped, self.notices, state, self.budget, self.used)

    def _would_match(self, item: _Item) -> bool:
        try:
            text = self.buffer.text(item.entry, _depth(item, self.settings), False)
            return (
                item.probe.matched_key(text, self.scan, self.settings.case_sensitive, self.settings.whole_words)
                is not None
            )
        except (PatternTimeout, ScanStopped):
            return False


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _depth(item: _Item, settings: ScanSettings) -> int:
    entry, book = item.entry, item.source.book
    if entry.scan_depth is not None:
        return entry.scan_depth
    return book.scan_depth if book.scan_depth is not None else settings.scan_depth


def _with_keys(entry: LoreEntry, substitute: Callable[[str], str]) -> LoreEntry:
    """A copy of `entry` whose keys went through `substitute` (for matching only); the entry itself when no key
    holds a macro (`{{...}}` or a legacy `<BOT>`-style one)."""
    from dataclasses import replace

    if not any("{{" in k or "<" in k for k in (*entry.keys, *entry.secondary_keys)):
        return entry
    return replace(
        entry,
        keys=[substitute(k) for k in entry.keys],
        secondary_keys=[substitute(k) for k in entry.secondary_keys],
    )


def _default_limits() -> ScanLimits:
    from rolechat.conversation.config import ConversationConfig

    return ScanLimits.of(ConversationConfig())
