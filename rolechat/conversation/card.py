"""Characters: the Character Card V2/V3 `data` object as a dataclass, its macros, greetings and example dialogues.

Interface (stable; the engine and the CLI are written against it):

    char = Character.from_dict(card)     # a V1 flat card, a V2/V3 card ({"spec", "data"}) or a bare `data`
    char.to_dict()                       # the V2/V3 `data` object (unknown fields and extensions kept)
    char.to_card("v3")                   # the whole card: {"spec": "chara_card_v3", "spec_version": "3.0", "data"}
    apply_macros("{{char}}对{{user}}说", char, "小明")     # {{char}}/<BOT>/<CHAR> and {{user}}/<USER>
    replace_original("{{original}}，再加一句", "默认提示")   # SillyTavern's {{original}}: once, case-insensitive
    greetings(char, "小明")              # [first_mes, *alternate_greetings], macros applied
    group_greetings(char, "小明")        # the greetings a scene opens with (group-only ones when it has any)
    example_dialogues(char, "小明")      # mes_example's <START> blocks as [[{"role", "content"}, ...], ...]
    example_text(blocks, "小明", "林夕")  # blocks as the prompt shows them: `名字：台词` lines
    system_prompt(char, "小明", before=[...lore...], after=[...lore...])   # the character definition

What reaches a prompt: system_prompt, description, personality, scenario, first_mes / alternate_greetings,
mes_example, post_history_instructions and the lorebook. Never creator_notes, tags, creator or
character_version (the specs forbid it).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from rolechat.conversation.fields import CardError, as_dict, as_number, as_str, as_str_list
from rolechat.conversation.lorebook import Lorebook

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "DEFAULT_USER",
    "CardError",
    "Character",
    "apply_macros",
    "example_dialogues",
    "example_text",
    "greetings",
    "group_greetings",
    "replace_original",
    "system_prompt",
]

DEFAULT_USER = "用户"
# Used when a card has no system_prompt of its own (and as {{original}} inside one that has).
DEFAULT_SYSTEM_PROMPT = "你正在扮演{{char}}，与{{user}}对话。始终以{{char}}的身份和语气回复，不要跳出角色。"

_V1_FIELDS = ("name", "description", "personality", "scenario", "first_mes", "mes_example")
_STRING_FIELDS = (
    *_V1_FIELDS,
    "creator_notes",
    "system_prompt",
    "post_history_instructions",
    "creator",
    "character_version",
)
_V3_OPTIONAL = ("nickname", "assets", "creator_notes_multilingual", "source", "creation_date", "modification_date")
SPECS = {"v2": ("chara_card_v2", "2.0"), "v3": ("chara_card_v3", "3.0")}


@dataclass
class Character:
    """A character card's `data`.

    >>> char = Character(name="林夕", description="{{char}}是长安城的说书人。", first_mes="客官，请坐。")
    >>> Character.from_dict(char.to_card("v2")) == char
    True
    """

    name: str
    description: str = ""
    personality: str = ""
    scenario: str = ""
    first_mes: str = ""
    mes_example: str = ""
    creator_notes: str = ""  # shown to users, never sent to the model
    system_prompt: str = ""
    post_history_instructions: str = ""
    alternate_greetings: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    creator: str = ""
    character_version: str = ""
    extensions: dict[str, Any] = field(default_factory=dict)
    character_book: Lorebook | None = None
    # V3 additions (None: absent from the card, and left out when writing it)
    nickname: str | None = None  # replaces the name in {{char}}
    group_only_greetings: list[str] | None = None  # None: absent (an empty list, as SillyTavern writes, is kept)
    assets: list[dict[str, Any]] | None = None
    creator_notes_multilingual: dict[str, str] | None = None
    source: list[str] | None = None
    creation_date: int | float | None = None
    modification_date: int | float | None = None
    spec: str = "chara_card_v2"  # the spec the card was read from: chara_card_v1, _v2 or _v3
    extra: dict[str, Any] = field(default_factory=dict)  # unknown `data` fields, written back unchanged
    card_extra: dict[str, Any] = field(default_factory=dict)  # unknown fields beside `data` (e.g. SillyTavern's)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise CardError("data.name: a character needs a name")

    @property
    def display_name(self) -> str:
        """The name {{char}} becomes: the V3 nickname when set, else the name."""
        return self.nickname or self.name

    @property
    def depth_prompt(self) -> tuple[str, int, str] | None:
        """SillyTavern's character's note (`extensions.depth_prompt`): (text, depth, role), or None.

        The text goes into the chat `depth` messages from the end (0: after the last one) as a `role`
        ("system", "user" or "assistant") message. Raw text: apply_macros before sending it."""
        note = self.extensions.get("depth_prompt")
        if not isinstance(note, dict) or not isinstance(note.get("prompt"), str) or not note["prompt"].strip():
            return None
        depth = note.get("depth", 4)
        depth = int(depth) if isinstance(depth, (int, float)) and not isinstance(depth, bool) and depth >= 0 else 4
        role = note.get("role", "system")
        return note["prompt"], depth, role if role in ("system", "user", "assistant") else "system"

    @property
    def talkativeness(self) -> float:
        """How readily the character speaks up in a scene (SillyTavern's `extensions.talkativeness`, 0-1;
        0.5 when absent or unreadable)."""
        value = self.extensions.get("talkativeness")
        try:
            number = float(value)
        except (TypeError, ValueError):
            return 0.5
        return min(max(number, 0.0), 1.0) if number == number else 0.5

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Character:
        """From a V1 flat card, a V2/V3 card (`spec` + `data`) or a bare `data` object.

        Raises CardError naming the field, e.g. `data.character_book.entries[3].keys: expected a list of strings`.
        """
        if not isinstance(d, Mapping):
            raise CardError("expected a JSON object")
        spec = d.get("spec")
        if spec is not None or isinstance(d.get("data"), Mapping):
            spec = spec or "chara_card_v2"  # a `data` object without `spec`: written by a lax tool
            if spec not in ("chara_card_v2", "chara_card_v3"):
                raise CardError(f"spec: expected 'chara_card_v2' or 'chara_card_v3', got {spec!r}")
            if not isinstance(d.get("data"), Mapping):
                raise CardError("data: expected an object")
            data, where = dict(d["data"]), "data"
            # V2 writers repeat the V1 fields beside `data`; those are copies, not extra information. A lax
            # writer that left `data` without them still has them there: take them (same checks apply).
            card_extra = {k: copy.deepcopy(v) for k, v in d.items() if k not in ("spec", "spec_version", "data")}
            for key in _V1_FIELDS:
                top = card_extra.pop(key, None)
                if data.get(key) in (None, "") and isinstance(top, str) and top:
                    data[key] = top
        else:
            data, where, spec, card_extra = _v1(d), "", "chara_card_v1", {}
        prefix = f"{where}." if where else ""
        values: dict[str, Any] = {k: as_str(data.get(k), prefix + k) for k in _STRING_FIELDS}
        if not values["name"].strip():
            raise CardError(f"{prefix}name: a character needs a name")
        values["alternate_greetings"] = as_str_list(data.get("alternate_greetings"), prefix + "alternate_greetings")
        if data.get("group_only_greetings") is not None:
            values["group_only_greetings"] = as_str_list(data["group_only_greetings"], prefix + "group_only_greetings")
        values["tags"] = as_str_list(data.get("tags"), prefix + "tags", split_commas=True)
        values["extensions"] = as_dict(data.get("extensions"), prefix + "extensions")
        book = data.get("character_book")
        values["character_book"] = Lorebook.from_dict(book, prefix + "character_book") if book else None
        if data.get("nickname") is not None:
            values["nickname"] = as_str(data["nickname"], prefix + "nickname")
        if data.get("assets") is not None:
            assets = data["assets"]
            if not isinstance(assets, list) or not all(isinstance(a, dict) for a in assets):
                raise CardError(f"{prefix}assets: expected a list of objects")
            values["assets"] = copy.deepcopy(assets)
        if data.get("creator_notes_multilingual") is not None:
            values["creator_notes_multilingual"] = as_dict(
                data["creator_notes_multilingual"], prefix + "creator_notes_multilingual"
            )
        if data.get("source") is not None:
            values["source"] = as_str_list(data["source"], prefix + "source")
        for key in ("creation_date", "modification_date"):
            values[key] = as_number(data.get(key), prefix + key)
        extra = {k: copy.deepcopy(v) for k, v in data.items() if k not in _DATA_FIELDS}
        return cls(**values, spec=spec, extra=extra, card_extra=card_extra)

    def to_dict(self) -> dict[str, Any]:
        """The V2/V3 `data` object (V3 fields only when the card has them)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in _V1_FIELDS}
        out.update(
            creator_notes=self.creator_notes,
            system_prompt=self.system_prompt,
            post_history_instructions=self.post_history_instructions,
            alternate_greetings=list(self.alternate_greetings),
            tags=list(self.tags),
            creator=self.creator,
            character_version=self.character_version,
            extensions=copy.deepcopy(self.extensions),
        )
        if self.character_book is not None:
            out["character_book"] = self.character_book.to_dict()
        if self.group_only_greetings is not None:
            out["group_only_greetings"] = list(self.group_only_greetings)
        for key in _V3_OPTIONAL:
            if getattr(self, key) is not None:
                out[key] = copy.deepcopy(getattr(self, key))
        out.update(copy.deepcopy(self.extra))
        return out

    def to_card(self, version: str = "v2") -> dict[str, Any]:
        """The whole card, "v2" or "v3", with the V1 fields repeated at the top for V1-only readers."""
        if version not in SPECS:
            raise ValueError(f"card version must be one of {', '.join(SPECS)}, got {version!r}")
        spec, spec_version = SPECS[version]
        data = self.to_dict()
        if version == "v3":
            data.setdefault("group_only_greetings", [])
        card: dict[str, Any] = {"spec": spec, "spec_version": spec_version, "data": data}
        for key in _V1_FIELDS:
            card[key] = data[key]
        for key, value in self.card_extra.items():
            card.setdefault(key, copy.deepcopy(value))
        return card


# The `data` fields of the specs, as Character holds them; any other field of a card's `data` goes to `extra`.
_DATA_FIELDS = frozenset(f.name for f in fields(Character)) - {"spec", "extra", "card_extra"}

# Pygmalion / text-generation-webui character JSON: SillyTavern's import maps these names (importFromJson).
_PYGMALION = {
    "char_name": "name",
    "char_persona": "description",
    "char_greeting": "first_mes",
    "example_dialogue": "mes_example",
    "world_scenario": "scenario",
}


def _v1(d: Mapping[str, Any]) -> Mapping[str, Any]:
    """The fields of a flat (V1 or Pygmalion) card; CardError for a JSON object that is no card at all.

    SillyTavern takes any object with a `name` as a V1 card; rolechat also wants one of its other fields, so a
    stray JSON file (a package.json, a settings file) is refused instead of becoming an empty character."""
    if "char_name" in d and "name" not in d:
        d = {
            **{k: v for k, v in d.items() if k not in _PYGMALION},
            **{_PYGMALION[k]: d[k] for k in _PYGMALION if k in d},
        }
    if "name" not in d or not any(k in d for k in _V1_FIELDS[1:]):
        keys = ", ".join(list(d)[:6]) or "none"
        raise CardError(
            "not a character card: expected `spec` and `data` (a V2/V3 card), or `name` with `description`, "
            f"`personality`, `scenario`, `first_mes` or `mes_example` (a V1 card); this JSON has keys: {keys}"
        )
    return d


# -- macros ---------------------------------------------------------------------------------------------

_MACRO = re.compile(
    r"(?P<char>\{\{\s*char\s*\}\}|<bot>|<char>)"
    r"|(?P<user>\{\{\s*user\s*\}\}|<user>)"
    r"|(?P<newline>\{\{\s*newline\s*\}\})"
    # a comment ends at its `}}`, and cannot span another `{{`: so an unclosed `{{//` costs one look ahead to
    # the next macro, not to the end of the text (which, repeated, took seconds on a 64 KB card text)
    r"|(?P<drop>\{\{\s*(?://|comment\s*:|hidden_key\s*:)(?:(?!\{\{).)*?\}\}|\{\{\s*noop\s*\}\})",
    re.IGNORECASE | re.DOTALL,
)


def apply_macros(text: str, char: Character | str, user: str = DEFAULT_USER) -> str:
    """Replace `{{char}}` (and legacy `<BOT>`, `<CHAR>`) and `{{user}}` (`<USER>`), any letter case, in one pass
    (a name that looks like a macro stays as written). Also `{{newline}}`, and the V3 comments `{{// ...}}`,
    `{{comment: ...}}`, `{{hidden_key: ...}}` and `{{noop}}`, which become nothing."""
    if not text:
        return text or ""
    name = char.display_name if isinstance(char, Character) else char

    def replace(match: re.Match[str]) -> str:
        if match.group("char"):
            return name
        if match.group("user"):
            return user
        return "\n" if match.group("newline") else ""

    return _MACRO.sub(replace, text)


_ORIGINAL = re.compile(r"\{\{original\}\}", re.IGNORECASE)


def replace_original(text: str, original: str) -> str:
    """SillyTavern's `{{original}}` in a card's system prompt or post-history instructions: the prompt the card
    overrides, the first time it appears (any letter case); later ones become nothing (script.js,
    substituteParams)."""
    used = []

    def replace(_: re.Match[str]) -> str:
        used.append(True)
        return original if len(used) == 1 else ""

    return _ORIGINAL.sub(replace, text)


def greetings(character: Character, user: str = DEFAULT_USER) -> list[str]:
    """The greetings a chat can open with: first_mes, then each alternate greeting (blank ones left out)."""
    found = [character.first_mes, *character.alternate_greetings]
    return [apply_macros(g, character, user).strip() for g in found if g and g.strip()]


def group_greetings(character: Character, user: str = DEFAULT_USER) -> list[str]:
    """The greetings a scene can open with: the V3 `group_only_greetings` (or the `group_greetings` of
    SillyTavern's group-greetings extension) when the card has any, else its ordinary greetings."""
    extension = character.extensions.get("group_greetings")
    own = character.group_only_greetings or (
        [g for g in extension if isinstance(g, str)] if isinstance(extension, list) else []
    )
    found = [apply_macros(g, character, user).strip() for g in own if g and g.strip()]
    return found or greetings(character, user)


_START = re.compile(r"<start>", re.IGNORECASE)


def _speaker_pattern(names: Sequence[str], macros: Sequence[str]) -> str:
    options = [*macros, *(re.escape(n) for n in names if n)]
    return rf"^\s*(?:{'|'.join(options)})\s*[:：]\s?"


def example_dialogues(
    character: Character, user: str = DEFAULT_USER, text: str | None = None
) -> list[list[dict[str, str]]]:
    """`mes_example` (or `text`, e.g. a lore entry placed with the examples) as example conversations: one list
    of {"role", "content"} turns per `<START>` block.

    A line opening with `{{user}}:` (or `<USER>:`, or the user's name) starts a user turn; `{{char}}:` (or
    `<BOT>:`, `<CHAR>:`, the character's name) an assistant turn; other lines continue the turn before them.
    Full-width colons count. Macros are applied to the contents.
    """
    text = (character.mes_example if text is None else text) or ""
    if not text.strip():
        return []
    user_line = re.compile(_speaker_pattern([user], [r"\{\{\s*user\s*\}\}", r"<user>"]), re.IGNORECASE)
    char_line = re.compile(
        _speaker_pattern([character.name, character.display_name], [r"\{\{\s*char\s*\}\}", r"<bot>", r"<char>"]),
        re.IGNORECASE,
    )
    blocks = []
    for block in _START.split(text):
        turns: list[dict[str, str]] = []
        for line in block.splitlines():
            role = None
            for pattern, name in ((user_line, "user"), (char_line, "assistant")):
                matched = pattern.match(line)
                if matched:
                    role, line = name, line[matched.end() :]
                    break
            if role is not None:
                turns.append({"role": role, "content": line})
            elif turns:
                turns[-1]["content"] += "\n" + line
            elif line.strip():  # narration before anyone speaks: the character's voice
                turns.append({"role": "assistant", "content": line})
        cleaned = [{"role": t["role"], "content": apply_macros(t["content"], character, user).strip()} for t in turns]
        cleaned = [t for t in cleaned if t["content"]]
        if cleaned:
            blocks.append(cleaned)
    return blocks


def example_text(blocks: Sequence[Sequence[Mapping[str, str]]], user: str, char: str) -> list[str]:
    """Example-dialogue blocks as the prompt shows them: one text per block, a `名字：台词` line per turn."""
    names = {"user": user, "assistant": char}
    return ["\n".join(f"{names.get(t['role'], char)}：{t['content']}" for t in block) for block in blocks if block]


def system_prompt(
    character: Character,
    user: str = DEFAULT_USER,
    *,
    original: str = DEFAULT_SYSTEM_PROMPT,
    before: Sequence[str] = (),
    after: Sequence[str] = (),
    user_description: str = "",
) -> str:
    """The character definition as one system text, macros applied.

    The card's own system_prompt (with `{{original}}` replaced by `original`), or `original` when it has
    none; then lore placed `before` the character, the description, personality and scenario, lore placed
    `after`, and the user's own description. SillyTavern's default story string in the same order.
    """
    head = replace_original(character.system_prompt, original) if character.system_prompt.strip() else original
    parts = [head.strip(), *(b.strip() for b in before)]
    if character.description.strip():
        parts.append(character.description.strip())
    if character.personality.strip():
        parts.append(f"{{{{char}}}}的性格：{character.personality.strip()}")
    if character.scenario.strip():
        parts.append(f"场景：{character.scenario.strip()}")
    parts.extend(a.strip() for a in after)
    if user_description.strip():
        parts.append(f"关于{{{{user}}}}：{user_description.strip()}")
    return apply_macros("\n\n".join(p for p in parts if p), character, user)
