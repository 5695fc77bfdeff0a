"""Personas: a folder with a manifest (`persona.json`), a peft adapter beside it, or a character card, or both.

The manifest is the only place a persona's system prompt lives. Training writes it; the runtime reads it
and applies the prompt automatically. `discover` lists every persona folder under the configured roots,
marking broken ones (missing or invalid manifest, missing adapter files) instead of failing.

A character is a persona: the manifest's `card` holds its whole character card (the Character Card V2/V3
JSON object, `{"spec", "spec_version", "data"}`), `system_prompt` the card rendered as a system prompt, and
`avatar.png` beside it the card's picture. This package stores the card as a dict and never interprets it
(`rolechat.conversation.card.Character.from_dict(manifest.card)` does). A folder with a card and no adapter
is a prompt-only character: it runs on the base model with adapters disabled. Training an adapter into the
folder later keeps the card.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rolechat.limits import InputError, load_json

__all__ = [
    "AVATAR",
    "MANIFEST",
    "BASE_PERSONA",
    "PersonaError",
    "PersonaManifest",
    "PersonaEntry",
    "discover",
    "check_name",
    "folders_stamp",
]

MANIFEST = "persona.json"
AVATAR = "avatar.png"  # a character's picture, beside the manifest
BASE_PERSONA = "base"  # the plain base model, adapters disabled
_NAME = re.compile(r"^[\w][\w-]{0,63}$")


def write_manifest(path: Path, data: dict[str, Any]) -> Path:
    """Write a manifest (persona.json, classifier.json) whole or not at all: a temp file, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


class PersonaError(ValueError):
    """A persona folder or manifest is unusable; the message names the file and field."""


def check_name(name: str) -> str:
    """Persona names are folder names: letters (any script), digits, '_' and '-' (peft adapter names); not "base"."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise PersonaError(f"invalid persona name {name!r}: use letters, digits, '_' or '-' (max 64)")
    if name == BASE_PERSONA:
        raise PersonaError(f"{BASE_PERSONA!r} is reserved for the plain base model")
    return name


@dataclass
class PersonaManifest:
    """What a persona is, saved as persona.json beside its adapter.

    >>> m = PersonaManifest(name="miaomiao", display_name="喵喵", system_prompt="你是一只猫。",
    ...                     base_model="rolechat-demo")
    >>> m.save(folder); PersonaManifest.load(folder).system_prompt
    """

    name: str
    display_name: str = ""
    system_prompt: str = ""
    base_model: str = ""
    base_fingerprint: str = ""
    template: str = "auto"
    stop: list[str] = field(default_factory=list)
    enable_thinking: bool = False
    description: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)  # the character card ({} for an adapter-only persona)
    evaluation: dict[str, Any] = field(default_factory=dict)  # the last `rolechat eval-persona` summary
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    format_version: int = 1

    def __post_init__(self) -> None:
        check_name(self.name)
        for key in ("display_name", "system_prompt", "base_model", "base_fingerprint", "template", "description"):
            if not isinstance(getattr(self, key), str):
                raise PersonaError(f"{MANIFEST}: field {key!r} must be a string")
        if not isinstance(self.stop, list) or not all(isinstance(s, str) for s in self.stop):
            raise PersonaError(f"{MANIFEST}: field 'stop' must be a list of strings")
        if not isinstance(self.card, dict):
            raise PersonaError(f"{MANIFEST}: field 'card' must be an object (a character card)")
        self.display_name = self.display_name or self.name

    def save(self, folder: str | Path) -> Path:
        return write_manifest(Path(folder) / MANIFEST, asdict(self))

    @classmethod
    def load(cls, folder: str | Path) -> PersonaManifest:
        path = Path(folder) / MANIFEST
        try:
            raw = load_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PersonaError(f"{path}: missing (every persona folder needs a {MANIFEST})") from None
        except (InputError, UnicodeDecodeError) as exc:  # bad JSON, or nested beyond what anything can walk
            raise PersonaError(f"{path}: invalid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise PersonaError(f"{path}: expected a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if "name" not in raw:
            raise PersonaError(f"{path}: missing field 'name'")
        try:
            return cls(**{k: v for k, v in raw.items() if k in known})
        except (PersonaError, TypeError) as exc:
            raise PersonaError(f"{path}: {exc}" + (f" (unknown fields: {unknown})" if unknown else "")) from None


@dataclass
class PersonaEntry:
    """One persona folder as found on disk: usable (`manifest` set) or broken (`error` set)."""

    name: str
    path: Path
    manifest: PersonaManifest | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def has_adapter(self) -> bool:
        """False for a prompt-only character (a card without adapter weights)."""
        return (self.path / "adapter_config.json").is_file()

    @property
    def avatar(self) -> Path | None:
        path = self.path / AVATAR
        return path if path.is_file() else None


def _inspect(folder: Path) -> PersonaEntry:
    try:
        manifest = PersonaManifest.load(folder)
    except PersonaError as exc:
        return PersonaEntry(folder.name, folder, error=str(exc))
    if not (folder / "adapter_config.json").is_file():
        if manifest.card:  # a prompt-only character
            return PersonaEntry(manifest.name, folder, manifest)
        return PersonaEntry(
            manifest.name, folder, manifest, f"{folder}: adapter_config.json missing (and no character card)"
        )
    if not any((folder / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
        return PersonaEntry(manifest.name, folder, manifest, f"{folder}: adapter weights missing")
    return PersonaEntry(manifest.name, folder, manifest)


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def folders_stamp(roots: Iterable[str | Path]) -> tuple:
    """What changes whenever a persona folder is added, removed or rewritten: the modification times of each
    root, each folder under it and the files `discover` reads. Stats only (nothing is read), so checking it
    costs microseconds per persona where a rescan reads every manifest (a second with large cards)."""
    stamp: list[tuple] = []
    for root in roots:
        root = Path(root).expanduser()
        stamp.append((str(root), _mtime(root)))
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            files = (MANIFEST, "adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
            stamp.append((folder.name, _mtime(folder), *(_mtime(folder / f) for f in files)))
    return tuple(stamp)


def discover(roots: Iterable[str | Path]) -> list[PersonaEntry]:
    """Every persona folder directly under each root, sorted by name; first root wins on name clashes."""
    found: dict[str, PersonaEntry] = {}
    for root in roots:
        root = Path(root).expanduser()
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if not ((folder / MANIFEST).exists() or (folder / "adapter_config.json").exists()):
                continue
            entry = _inspect(folder)
            if entry.name in found:
                continue
            found[entry.name] = entry
    return sorted(found.values(), key=lambda e: e.name)
