"""Adapter manifests: the JSON file beside an adapter that says what it is (persona.json, classifier.json).

Persona adapters (`llm.personas.PersonaManifest`) and classifier adapters (`finetune.classifier.
ClassifierManifest`) keep their own fields and checks in their own dataclass; reading, validating and
writing the file is this module's, the same for both. A manifest dataclass subclasses `Manifest` and names
its file, its error class and what to say when the file is missing:

    @dataclass
    class PersonaManifest(Manifest):
        FILE, ERROR, MISSING = "persona.json", PersonaError, "every persona folder needs a persona.json"
        name: str
        ...

    manifest.save(folder)                     # written whole or not at all
    PersonaManifest.load(folder)              # ERROR naming the file and the field when unusable

Fields a newer version wrote and this one does not know are ignored, so older code reads newer manifests.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from rolechat.limits import InputError, load_json

__all__ = ["Entry", "Manifest", "is_folder_name", "read_object", "write_manifest"]

M = TypeVar("M", bound="Manifest")

_NAME = re.compile(r"^[\w][\w-]{0,63}$")


def is_folder_name(name: Any) -> bool:
    """Adapter names are folder names (and peft adapter names): letters of any script, digits, '_' and '-',
    at most 64, not starting with '-'."""
    return isinstance(name, str) and bool(_NAME.match(name))


def write_manifest(path: Path, data: dict[str, Any]) -> Path:
    """Write a manifest whole or not at all: a temp file, then a rename (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


class Manifest:
    """Base of a manifest dataclass: `save(folder)` and `load(folder)`. A subclass sets FILE (the file name),
    ERROR (a ValueError subclass raised with the file and field named), MISSING (the hint after "missing")
    and REQUIRED (the fields a file must have)."""

    FILE: str = ""
    ERROR: type[ValueError] = ValueError
    MISSING: str = ""
    REQUIRED: tuple[str, ...] = ("name",)

    def save(self, folder: str | Path) -> Path:
        return write_manifest(Path(folder) / self.FILE, asdict(self))  # type: ignore[call-overload]

    @classmethod
    def load(cls: type[M], folder: str | Path) -> M:
        path = Path(folder) / cls.FILE
        raw = read_object(path, cls.ERROR, cls.MISSING)
        for key in cls.REQUIRED:
            if key not in raw:
                raise cls.ERROR(f"{path}: missing field {key!r}")
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(raw) - known)
        try:
            return cls(**{k: v for k, v in raw.items() if k in known})
        except (cls.ERROR, TypeError) as exc:
            raise cls.ERROR(f"{path}: {exc}" + (f" (unknown fields: {unknown})" if unknown else "")) from None


def read_object(path: Path, error: type[ValueError], missing: str) -> dict[str, Any]:
    """The JSON object in `path`; `error` naming the file when it is missing, not JSON, or not an object."""
    try:
        raw = load_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: missing ({missing})") from None
    except (InputError, UnicodeDecodeError) as exc:  # bad JSON, or nested beyond what anything can walk
        raise error(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a JSON object")
    return raw


@dataclass
class Entry:
    """One adapter folder as found on disk: usable (`manifest` set) or broken (`error` set, saying why)."""

    name: str
    path: Path
    manifest: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
