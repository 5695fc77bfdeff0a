"""Regex scripts in SillyTavern's format: find/replace rules a card carries (`extensions.regex_scripts`) or the
user keeps for every chat (`$ROLECHAT_HOME/regex/*.json`), applied where SillyTavern applies them.

    script = RegexScript.from_dict({"scriptName": "no asterisks", "findRegex": "/\\\\*/g", "replaceString": "",
                                    "placement": [2], "markdownOnly": False, "promptOnly": False})
    scripts = ScriptSet([*global_scripts(), *card_scripts(card)], macro)
    scripts.user_input("…")          # what a chat keeps of the user's message (user-input scripts)
    scripts.ai_output("…")           # what it keeps of a reply (AI-output scripts)
    scripts.prompt_history(history)  # the history as the prompt sends it (prompt-only scripts too, by depth)
    scripts.lore("…")                # a lorebook entry's content (world-info scripts)
    scripts.display("…", "assistant", depth=0)   # what the app and the CLI show (display-only scripts)

As SillyTavern's regex engine (public/scripts/extensions/regex/engine.js): a script applies where its
`placement` says (1 user input, 2 AI output, 5 world info; 3, slash commands, never runs here). "Display only"
(`markdownOnly`) scripts change only what is shown; "prompt only" (`promptOnly`) ones only what the model is
sent; scripts with neither change the text the chat keeps (and run again on the prompt). `minDepth` /
`maxDepth` bound the messages (0 = the newest) a script touches. The find pattern is a JavaScript regex
(`/pattern/flags`; without `g` only the first match is replaced); the replacement's `$1`, `$0` and `{{match}}`
are its groups (with `trimStrings` cut out of them), then macros. Patterns run time-bounded like lorebook keys;
one that times out is skipped for that text (and logged).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rolechat.conversation.lorebook import CardError
from rolechat.conversation.patterns import PatternTimeout, Scan, ScanLimits, ScanStopped, TimedPattern

__all__ = ["PLACEMENTS", "RegexScript", "ScriptSet", "card_scripts", "global_scripts", "regex_dir", "read_scripts"]

log = logging.getLogger(__name__)

PLACEMENTS = {1: "user input", 2: "AI output", 3: "slash command", 5: "world info"}
USER_INPUT, AI_OUTPUT, WORLD_INFO = 1, 2, 5
_KNOWN = (
    "id",
    "scriptName",
    "findRegex",
    "replaceString",
    "trimStrings",
    "placement",
    "disabled",
    "markdownOnly",
    "promptOnly",
    "runOnEdit",
    "substituteRegex",
    "minDepth",
    "maxDepth",
)
# SillyTavern's regexFromString (public/scripts/utils.js): an optional slash pair around the pattern
_FIND = re.compile(r"(/?)(.+)\1([a-z]*)", re.IGNORECASE)
_FLAGS = re.compile(r"^(?!.*?(.).*?\1)[gmixXsuUAJ]+$")
_GROUP = re.compile(r"\$(\d+)")


@dataclass
class RegexScript:
    """One SillyTavern regex script (its field names in `from_dict` / `to_dict`)."""

    name: str
    find: str
    replace: str = ""
    trim: list[str] = field(default_factory=list)
    placement: list[int] = field(default_factory=list)
    disabled: bool = False
    display_only: bool = False  # markdownOnly
    prompt_only: bool = False  # promptOnly
    substitute: bool | int = False  # substituteRegex: macros in the find pattern first (2: their values escaped)
    min_depth: int | None = None
    max_depth: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # other fields (id, runOnEdit, ...), written back

    @classmethod
    def from_dict(cls, d: Any, where: str = "script") -> RegexScript:
        """From SillyTavern's script object; CardError naming the field for a bad one."""
        if not isinstance(d, Mapping):
            raise CardError(f"{where}: expected an object")
        find = d.get("findRegex") or ""
        if not isinstance(find, str):
            raise CardError(f"{where}.findRegex: expected a string")
        replace = d.get("replaceString") or ""
        if not isinstance(replace, str):
            raise CardError(f"{where}.replaceString: expected a string")
        trim = d.get("trimStrings") or []
        if not isinstance(trim, list) or not all(isinstance(t, str) for t in trim):
            raise CardError(f"{where}.trimStrings: expected a list of strings")
        placement = d.get("placement") or []
        if not isinstance(placement, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) for p in placement
        ):
            raise CardError(f"{where}.placement: expected a list of numbers (1 user input, 2 AI output, 5 world info)")
        name = d.get("scriptName") or ""
        return cls(
            name=name if isinstance(name, str) else str(name),
            find=find,
            replace=replace,
            trim=list(trim),
            placement=list(placement),
            disabled=bool(d.get("disabled")),
            display_only=bool(d.get("markdownOnly")),
            prompt_only=bool(d.get("promptOnly")),
            substitute=d["substituteRegex"] if d.get("substituteRegex") in (True, 1, 2) else False,
            min_depth=_depth(d.get("minDepth")),
            max_depth=_depth(d.get("maxDepth")),
            extra={k: copy.deepcopy(v) for k, v in d.items() if k not in _KNOWN or k in ("id", "runOnEdit")},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "scriptName": self.name,
            "findRegex": self.find,
            "replaceString": self.replace,
            "trimStrings": list(self.trim),
            "placement": list(self.placement),
            "disabled": self.disabled,
            "markdownOnly": self.display_only,
            "promptOnly": self.prompt_only,
            "substituteRegex": self.substitute,
            "minDepth": self.min_depth,
            "maxDepth": self.max_depth,
            **copy.deepcopy(self.extra),
        }

    @property
    def where(self) -> str:
        """Where it applies, for listings: placements and mode."""
        places = ", ".join(PLACEMENTS.get(p, str(p)) for p in self.placement) or "nowhere"
        mode = "display only" if self.display_only else "prompt only" if self.prompt_only else "kept text"
        return f"{places}; {mode}"


def _depth(value: Any) -> int | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


@functools.lru_cache(maxsize=1024)
def _compile(find: str) -> tuple[TimedPattern, bool] | None:
    """The find pattern (and whether it replaces every match), as regexFromString reads it; None when it does not
    compile (SillyTavern then leaves the text alone)."""
    found = _FIND.match(find)
    if not found:
        return None
    source, flags = found.group(2), found.group(3)
    if flags and not _FLAGS.match(flags):
        source, flags = find, ""
    if any(f not in "gimsuy" for f in flags):  # PCRE-only flags: JavaScript refuses the pattern
        return None
    pattern = TimedPattern.js(source, flags.replace("g", ""))
    return (pattern, "g" in flags) if pattern is not None else None


class ScriptSet:
    """The scripts one turn applies (global first, then the character's), with `macro` for `{{char}}` and
    `{{user}}` in replacements and trim strings."""

    def __init__(
        self,
        scripts: Sequence[RegexScript] = (),
        macro: Callable[[str], str] | None = None,
        limits: ScanLimits | None = None,
    ) -> None:
        self.scripts = [s for s in scripts if not s.disabled and s.find]
        self.macro = macro or (lambda text: text)
        self.limits = limits
        self.applied: list[str] = []  # "script name: where", once each, for the prompt view

    def __bool__(self) -> bool:
        return bool(self.scripts)

    def rewrites(self, role: str) -> bool:
        """Whether a reply (role "assistant") or a user message keeps a text scripts may have changed."""
        placement = USER_INPUT if role == "user" else AI_OUTPUT
        return any(placement in s.placement and not (s.display_only or s.prompt_only) for s in self.scripts)

    def shows(self, role: str) -> bool:
        """Whether display-only scripts change how messages of `role` are shown."""
        placement = USER_INPUT if role == "user" else AI_OUTPUT
        return any(placement in s.placement and s.display_only for s in self.scripts)

    def _run(self, text: str, placement: int, *, prompt: bool = False, display: bool = False, depth: int | None = None):
        for script in self.scripts:
            plain = not script.display_only and not script.prompt_only
            if not ((script.display_only and display) or (script.prompt_only and prompt) or (plain and not display)):
                continue
            if placement not in script.placement or not _in_depth(script, depth):
                continue
            text = self._one(script, text)
        return text

    def _one(self, script: RegexScript, text: str) -> str:
        if not text:
            return text
        compiled = _compile(self._find(script))
        if compiled is None:
            return text
        pattern, every = compiled
        replacement = re.sub(r"\{\{match\}\}", "$0", script.replace, flags=re.IGNORECASE)

        def replace(match: Any) -> str:
            def group(found: re.Match[str]) -> str:
                n = int(found.group(1))
                value = match.group(n) if n <= len(match.groups()) else None
                for cut in script.trim:
                    value = value.replace(self.macro(cut), "") if value else value
                return value or ""

            return self.macro(_GROUP.sub(group, replacement))

        try:
            new = pattern.sub(replace, text, 0 if every else 1, Scan(self.limits or _default_limits()))
        except (PatternTimeout, ScanStopped) as exc:
            log.warning("regex script %r skipped: %s", script.name, exc)
            return text
        if new != text:
            self.applied.append(f"{script.name or '(unnamed)'}: {script.where}")
        return new

    def _find(self, script: RegexScript) -> str:
        """The find pattern, with macros replaced first when the script asks (newer SillyTavern's 2: escaped)."""
        if script.substitute == 2:
            return re.sub(r"\{\{[^{}]*\}\}", lambda m: re.escape(self.macro(m.group())), script.find)
        return self.macro(script.find) if script.substitute else script.find

    def user_input(self, text: str) -> str:
        return self._run(text, USER_INPUT)

    def ai_output(self, text: str) -> str:
        return self._run(text, AI_OUTPUT)

    def lore(self, text: str) -> str:
        return self._run(text, WORLD_INFO, prompt=True)

    def display(self, text: str, role: str, depth: int | None = None) -> str:
        return self._run(text, USER_INPUT if role == "user" else AI_OUTPUT, display=True, depth=depth)

    def prompt(self, text: str, role: str, depth: int) -> str:
        return self._run(text, USER_INPUT if role == "user" else AI_OUTPUT, prompt=True, depth=depth)

    def prompt_history(self, past: list[dict[str, str]]) -> list[dict[str, str]]:
        """`past` as the prompt sends it: each message through its role's scripts at its depth (the new message,
        after `past`, is depth 0)."""
        if not self.scripts:
            return past
        n = len(past)
        return [{**m, "content": self.prompt(m["content"], m["role"], n - i)} for i, m in enumerate(past)]


def _in_depth(script: RegexScript, depth: int | None) -> bool:
    if depth is None or depth < 0:
        return True
    if script.min_depth is not None and depth < script.min_depth:
        return False
    return not (script.max_depth is not None and depth > script.max_depth)


def _default_limits() -> ScanLimits:
    from rolechat.conversation.config import ConversationConfig

    return ScanLimits.of(ConversationConfig())


# -- where scripts come from ---------------------------------------------------------------------------


def read_scripts(data: Any, where: str) -> list[RegexScript]:
    """Scripts from one parsed JSON value: a script object or a list of them; CardError naming the field."""
    items = data if isinstance(data, list) else [data]
    return [RegexScript.from_dict(d, f"{where}[{n}]" if isinstance(data, list) else where) for n, d in enumerate(items)]


def card_scripts(card: Any) -> list[RegexScript]:
    """A card's own scripts (`data.extensions.regex_scripts`); CardError naming the field for a bad one."""
    data = getattr(card, "extensions", {}).get("regex_scripts") if card is not None else None
    if data in (None, []):
        return []
    if not isinstance(data, list):
        raise CardError("data.extensions.regex_scripts: expected a list of scripts")
    return read_scripts(data, "data.extensions.regex_scripts")


def regex_dir() -> Path:
    from rolechat import settings

    path = settings.home() / "regex"
    path.mkdir(parents=True, exist_ok=True)
    return path


def global_scripts() -> list[RegexScript]:
    """The scripts in `$ROLECHAT_HOME/regex/` (one JSON file each, by name); a bad file is logged and skipped."""
    from rolechat.limits import InputError, load_json

    found = []
    for path in sorted(regex_dir().glob("*.json")):
        try:
            found += read_scripts(load_json(path.read_text(encoding="utf-8")), path.name)
        except (OSError, UnicodeDecodeError, InputError, CardError) as exc:
            log.warning("regex script %s skipped: %s", path, exc)
    return found


def save_scripts(scripts: Sequence[RegexScript], name: str) -> Path:
    """Write `scripts` as `$ROLECHAT_HOME/regex/NAME.json` (a list), atomically."""
    path = regex_dir() / f"{name}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps([s.to_dict() for s in scripts], ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
