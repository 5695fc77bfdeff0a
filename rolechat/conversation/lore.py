"""A turn's lore: the books a chat scans, the author's note, and the scan's outcome as prompt pieces by position.

    books = LoreBooks(chat=[scene_book, chat_book], character=card.character_book, common=[global_book])
    found = run_scan(books, lines, count_tokens, settings, budget=..., state=..., rng=..., ...)
    placed = place(found, count_tokens, macro, note=AuthorsNote("天色已晚。"), user_messages=3)
    placed.before / placed.after      # system pieces around the character's definition
    placed.depth                      # pieces injected into the chat at their depth, in their role
    placed.em_top / placed.em_bottom  # example-dialogue blocks before / after the card's own
    placed.shown                      # what the prompt view lists but the model never sees (skipped entries,
                                      # the scan's notices)

SillyTavern puts every entry of one position together in order (lower first) and inserts entries placed around
the author's note only on turns the note is due (its interval). Entries at the same depth and role share one
message, after the author's note and the character's note at that depth (SillyTavern sorts its injections by
name: "2_floating_prompt", "DEPTH_PROMPT", "customDepthWI-...").
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rolechat.conversation.assembly import Piece, PromptPart
from rolechat.conversation.lorebook import Lorebook
from rolechat.conversation.setting import AuthorsNote
from rolechat.conversation.worldinfo import Decision, ScanSettings, Source, WorldInfo, budget_of, scan

__all__ = ["LoreBooks", "Placed", "depth_piece", "place", "run_scan", "turn_lore"]

_GROUP_ORDER = {"authors-note": 0, "depth-prompt": 1}  # then lore entries: SillyTavern's injection name order


@dataclass
class LoreBooks:
    """The books one turn scans: the chat's own (a scene's first), the character's, the global ones; each
    (book, name) so the prompt view can say where an entry came from."""

    chat: list[tuple[Lorebook, str]] = field(default_factory=list)
    character: tuple[Lorebook, str] | None = None
    common: list[tuple[Lorebook, str]] = field(default_factory=list)

    def sources(self) -> list[Source]:
        found = [Source(book, "chat", name) for book, name in self.chat]
        if self.character is not None:
            found.append(Source(self.character[0], "character", self.character[1]))
        found += [Source(book, "global", name) for book, name in self.common]
        return [s for s in found if s.book.entries]


def run_scan(
    books: LoreBooks,
    lines: Sequence[tuple[str, str]],
    count_tokens: Callable[[str], int],
    settings: ScanSettings,
    **kwargs: Any,
) -> WorldInfo:
    """`worldinfo.scan` over the turn's books (keyword arguments as there); nothing to scan, nothing found."""
    sources = books.sources()
    if not sources:
        return WorldInfo(state=dict(kwargs.get("state") or {}), budget=kwargs.get("budget"))
    kwargs.setdefault("rng", random.Random())
    return scan(sources, lines, count_tokens, settings, **kwargs)


@dataclass
class Placed:
    """The scan's outcome as pieces, by where they go (see the module docstring)."""

    before: list[Piece] = field(default_factory=list)
    after: list[Piece] = field(default_factory=list)
    note_before: list[Piece] = field(default_factory=list)  # the author's note (and its lore), before_story
    note_after: list[Piece] = field(default_factory=list)  # ... after_story
    depth: list[Piece] = field(default_factory=list)
    em_top: list[Piece] = field(default_factory=list)  # example-dialogue blocks before the card's own
    em_bottom: list[Piece] = field(default_factory=list)
    shown: list[Piece] = field(default_factory=list)


def place(
    found: WorldInfo,
    count_tokens: Callable[[str], int],
    macro: Callable[[str], str],
    note: AuthorsNote | None = None,
    user_messages: int = 1,
) -> Placed:
    """The pieces of `found`'s entries (macros applied) and of the author's note, by position."""
    placed = Placed()
    note = note or AuthorsNote()
    due = note.due(user_messages)
    top: list[Piece] = []
    bottom: list[Piece] = []
    for decision in found.active:
        entry = decision.entry
        text = macro(entry.content).strip()
        if not text:
            continue
        piece = _piece(decision, text, count_tokens(text))
        where = entry.position
        if where in ("em_top", "em_bottom"):
            piece.place = "examples"
            (placed.em_top if where == "em_top" else placed.em_bottom).append(piece)
        elif where == "at_depth":
            placed.depth.append(depth_piece(piece, entry.depth, entry.role, 2))
        elif where in ("an_top", "an_bottom"):
            (top if where == "an_top" else bottom).append(piece)
        elif where == "outlet":
            piece.part.included, piece.place = False, "notice"
            piece.part.why += f"; outlet {entry.outlet or '(unnamed)'}: rolechat places outlets nowhere"
            placed.shown.append(piece)
        else:
            (placed.before if where == "before_char" else placed.after).append(piece)
    _place_note(placed, note, due, top, bottom, count_tokens, macro)
    placed.shown += [_skipped(d, count_tokens) for d in found.skipped]
    placed.shown += [Piece(PromptPart("notice", "lorebook", 0, str(n)), "notice") for n in found.notices]
    return placed


def _piece(decision: Decision, text: str, tokens: int) -> Piece:
    entry = decision.entry
    kind = "lore-constant" if entry.constant else "lore-triggered"
    where = entry.position if entry.position != "at_depth" else f"@depth {entry.depth} ({entry.role})"
    part = PromptPart(kind, f"{decision.book}: {entry.label}", tokens, text, source=decision.book)
    part.why = f"{decision.reason}; order {entry.insertion_order:g}; {where}"
    return Piece(part, "system", rank=decision.rank)


def _skipped(decision: Decision, count_tokens: Callable[[str], int]) -> Piece:
    entry = decision.entry
    why = {
        "budget": "left out: the lorebook budget was spent",
        "book budget": "left out: its book's token_budget was spent",
        "probability": "left out: its probability roll failed",
        "group": "left out",
        "cooldown": "left out: on cooldown",
        "delay": "left out: delayed (the chat is too short)",
    }.get(decision.status, decision.status)
    text = entry.content.strip()
    part = PromptPart("lore-skipped", f"{decision.book}: {entry.label}", decision.tokens or count_tokens(text), text)
    part.included, part.source = False, decision.book
    part.why = f"{why} ({decision.reason})" if decision.reason else why
    return Piece(part, "notice")


def depth_piece(piece: Piece, depth: int, role: str, group: int) -> Piece:
    """`piece` injected `depth` messages from the end in `role`; `group` orders injections sharing a depth and
    role (author's note 0, character's note 1, lore 2)."""
    piece.place = "depth"
    piece.messages = [{"role": role, "content": piece.part.text}]
    piece.payload = (depth, role, group)
    return piece


def _place_note(placed: Placed, note: AuthorsNote, due: bool, top, bottom, count_tokens, macro) -> None:
    """The author's note with the entries placed around it, where the note goes; nothing when it is not due."""
    text = macro(note.text).strip()
    parts = [*top]
    if text:
        where = f"{note.position}, depth {note.depth}, {note.role}" if note.position == "in_chat" else note.position
        label = f"author's note ({where})"
        parts.append(Piece(PromptPart("authors-note", label, count_tokens(text), text), "system"))
    parts += bottom
    if not due:
        for piece in parts:
            piece.part.included, piece.place = False, "notice"
            piece.part.why += "; the author's note is not due this turn (its interval)"
        placed.shown += parts
        return
    if note.position == "in_chat":
        placed.depth += [depth_piece(p, note.depth, note.role, 0) for p in parts]
    else:
        (placed.note_after if note.position == "after_story" else placed.note_before).extend(parts)


def turn_lore(
    card: Any,
    persona: str | None,
    setting: Any,
    lines: Sequence[tuple[str, str]],
    count_tokens: Callable[[str], int],
    cfg: Any,
    *,
    budget: int,
    user: Any,
    macro: Callable[[str], str],
    rng: random.Random,
    user_messages: int,
) -> tuple[Placed, WorldInfo]:
    """The lore of one turn: the setting's books, the character's, the global ones (`cfg.global_lorebooks`)
    scanned over `lines` within SillyTavern's budget (`cfg.lore_budget_percent` of `budget`, at most
    `cfg.lore_tokens`), then placed with the setting's author's note."""
    from rolechat.conversation.books import load_book

    limit = cfg.card_max_bytes
    chat = [
        (b, b.name or "chat") if not isinstance(b, str) else _named(load_book(b, limit), b) for b in setting.lorebooks
    ]
    own = getattr(card, "character_book", None) if card is not None else None
    books = LoreBooks(
        chat=chat,
        character=(own, own.name or card.display_name) if own is not None else None,
        common=[_named(load_book(name, limit), name) for name in cfg.global_lorebooks],
    )
    found = run_scan(
        books,
        lines,
        count_tokens,
        ScanSettings.of(cfg),
        budget=budget_of(cfg.lore_budget_percent, cfg.lore_tokens, budget),
        state=setting.lore_state,
        chat_length=len(lines),
        rng=rng,
        substitute=macro,
        extra=_extra_texts(card, user, macro),
        accept=_character_filter(card, persona),
    )
    return place(found, count_tokens, macro, setting.authors_note, user_messages), found


def _named(book: Lorebook, name: str) -> tuple[Lorebook, str]:
    return book, book.name or name


def _extra_texts(card: Any, user: Any, macro: Callable[[str], str]) -> dict[str, str]:
    """The texts an entry may ask to be matched against besides the chat (its match_* settings)."""
    texts = {"persona": user.description}
    if card is not None:
        note = card.depth_prompt
        texts.update(
            description=card.description,
            personality=card.personality,
            scenario=card.scenario,
            creator_notes=card.creator_notes,
            depth_prompt=note[0] if note else "",
        )
    return {k: macro(v) for k, v in texts.items() if v}


def _character_filter(card: Any, persona: str | None) -> Callable[[Any], bool] | None:
    """SillyTavern's per-entry character filter (`extensions.character_filter`: names, tags, isExclude): the
    names are matched against the persona's name and the card's (with or without SillyTavern's `.png`)."""
    who = {n for n in (persona, getattr(card, "name", None)) if n}
    who |= {f"{n}.png" for n in who}
    tags = set(getattr(card, "tags", []) or [])

    def accept(entry: Any) -> bool:
        rule = entry.extensions.get("character_filter")
        if not isinstance(rule, Mapping):
            return True
        exclude = bool(rule.get("isExclude"))
        names = [n for n in rule.get("names") or [] if isinstance(n, str)]
        if names and (exclude == bool(who & set(names))):
            return False
        wanted = [t for t in rule.get("tags") or [] if isinstance(t, str)]
        return not (wanted and exclude == bool(tags & set(wanted)))

    return accept
