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

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rolechat.llm.manifest import Entry, Manifest, is_folder_name

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


class PersonaError(ValueError):
    """A persona folder or manifest is unusable; the message names the file and field."""


def check_name(name: str) -> str:
    """Persona names are folder names: letters (any script), digits, '_' and '-' (peft adapter names); not "base"."""
    if not is_folder_name(name):
        raise PersonaError(f"invalid persona name {name!r}: use letters, digits, '_' or '-' (max 64)")
    if name == BASE_PERSONA:
        raise PersonaError(f"{BASE_PERSONA!r} is reserved for the plain base model")
    return name


@dataclass
class PersonaManifest(Manifest):
    """What a persona is, saved as persona.json beside its adapter.

    >>> m = PersonaManifest(name="miaomiao", display_name="喵喵", system_prompt="你是一只猫。",
    ...                     base_model="rolechat-demo")
    >>> m.save(folder); PersonaManifest.load(folder).system_prompt

    Reading and writing are `llm.manifest`'s, shared with classifier manifests.
    """

    FILE, ERROR, MISSING = MANIFEST, PersonaError, f"every persona folder needs a {MANIFEST}"

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


@dataclass
class PersonaEntry(Entry):
    """One persona folder as found on disk: usable (`manifest` set) or broken (`error` set)."""

    manifest: PersonaManifest | None = None

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
