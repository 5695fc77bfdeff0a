"""Characters as persona folders: a card imported into `$ROLECHAT_HOME/personas/NAME`, read back, exported.

    folder, char = import_card("凛.png")    # personas/凛/persona.json (+ avatar.png); or import_card(bytes, "凛.png")
    char = load_character(manifest)          # the Character in a persona manifest, or None (adapter only)
    attach_lorebook("凛", read_lorebook("world.json"))
    export_character("凛", "凛.png")          # a card other tools import (PNG: both chunks; JSON: V2 or V3)

The manifest keeps the whole card (`card`), its rendered system prompt (`system_prompt`, with the default
user name) and its name (`display_name`); `avatar.png` beside it holds the picture. A folder written here
holds no adapter: it is a prompt-only character on the base model until `rolechat train` adds one (training
keeps the card). Every write goes to a temporary folder first, so a failure leaves nothing half-imported.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from rolechat import settings
from rolechat.conversation.card import Character, system_prompt
from rolechat.conversation.cardfile import read_avatar, read_card, read_lorebook, write_card
from rolechat.conversation.lorebook import CardError, Lorebook
from rolechat.conversation.regexscripts import card_scripts
from rolechat.llm.personas import AVATAR, BASE_PERSONA, MANIFEST, PersonaEntry, PersonaManifest, check_name, discover

__all__ = [
    "add_regex_scripts",
    "attach_lorebook",
    "import_card",
    "import_lorebook",
    "character_roots",
    "export_character",
    "find_character",
    "load_character",
    "persona_name",
    "read_upload",
    "save_character",
]


def persona_name(character: Character) -> str:
    """A persona (folder) name for a character: its name with spaces and punctuation made '_'."""
    name = re.sub(r"[^\w-]+", "_", character.name.strip()).strip("_-")[:64]
    if not name or name == BASE_PERSONA:
        name = f"character_{name}".strip("_")[:64]
    return name


def load_character(manifest: PersonaManifest | None) -> Character | None:
    """The character a persona manifest carries, or None for a persona without a card."""
    if manifest is None or not manifest.card:
        return None
    try:
        return Character.from_dict(manifest.card)
    except CardError as exc:
        raise CardError(f"{manifest.name}/{MANIFEST}: card.{exc}") from None


def _card_version(character: Character) -> str:
    return "v3" if character.spec == "chara_card_v3" else "v2"


def _summary(character: Character) -> str:
    notes = character.creator_notes.strip().splitlines()
    return notes[0][:120] if notes else ""


def _write_folder(folder: Path, manifest: PersonaManifest, avatar: bytes | None) -> None:
    """Write manifest (+ avatar): a new folder appears whole (built beside it, then renamed); in an existing
    one each file is replaced atomically, the manifest last, and other files (an adapter) stay untouched."""
    if folder.exists():
        if avatar is not None:
            tmp = folder / f"{AVATAR}.tmp"
            tmp.write_bytes(avatar)
            tmp.replace(folder / AVATAR)
        manifest.save(folder)
        return
    staging = folder.with_name(f".{folder.name}.importing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if avatar is not None:
            (staging / AVATAR).write_bytes(avatar)
        manifest.save(staging)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def save_character(
    character: Character,
    name: str | None = None,
    *,
    root: str | Path | None = None,
    avatar: bytes | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `character` as persona folder `root/name` (root: $ROLECHAT_HOME/personas; name: from the card).

    An existing folder is replaced only with `overwrite`. If it holds a trained adapter, the adapter and its
    trained system prompt stay: only the card, display name and avatar change.
    """
    name = check_name(name or persona_name(character))
    folder = Path(root).expanduser() if root else settings.personas_dir()
    folder = folder / name
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} already exists; pass --overwrite to replace its card")
    previous = None
    if (folder / MANIFEST).is_file():
        try:
            previous = PersonaManifest.load(folder)
        except ValueError:
            previous = None
    has_adapter = (folder / "adapter_config.json").is_file()
    if has_adapter and previous is not None:
        manifest = previous
        manifest.card = character.to_card(_card_version(character))
        manifest.display_name = character.display_name
    else:
        manifest = PersonaManifest(
            name=name,
            display_name=character.display_name,
            system_prompt=system_prompt(character),
            description=_summary(character),
            card=character.to_card(_card_version(character)),
        )
    _write_folder(folder, manifest, avatar)
    return folder


def import_card(
    source: str | Path | bytes,
    filename: str = "",
    *,
    name: str | None = None,
    root: str | Path | None = None,
    overwrite: bool = False,
    max_bytes: int | None = None,
) -> tuple[Path, Character]:
    """Import a card file (a path, or the bytes of an upload named `filename`) as a persona folder.

    Errors (CardError, FileExistsError, PersonaError) name the file; nothing is written unless all of it reads.
    `max_bytes`: the largest card read (`chat.card_max_mb`; None: its default).
    """
    read = lambda p: (read_card(p, max_bytes), read_avatar(p))
    character, avatar = read_upload(source, filename or "card.png", read)
    try:
        card_scripts(character)  # a card whose regex scripts cannot be read is refused, naming the field
    except CardError as exc:
        raise CardError(f"{Path(filename or str(source)).name}: {exc}") from None
    folder = save_character(character, name, root=root, avatar=avatar, overwrite=overwrite)
    return folder, character


def import_lorebook(
    name: str,
    source: str | Path | bytes,
    filename: str = "",
    *,
    replace: bool = False,
    root: str | Path | None = None,
    max_bytes: int | None = None,
) -> tuple[Path, Lorebook]:
    """Attach the lorebook in a file (a path, or the bytes of an upload named `filename`) to character `name`."""
    book = read_upload(source, filename or "lorebook.json", lambda p: read_lorebook(p, max_bytes))
    return attach_lorebook(name, book, replace=replace, root=root), book


def read_upload(source: str | Path | bytes, filename: str, read):
    """`read(path)` of a file, or of uploaded bytes written to a temporary file under their own name (in
    $ROLECHAT_HOME's cache: an upload never writes outside ROLECHAT_HOME, even for a moment)."""
    if not isinstance(source, bytes):
        return read(Path(source))
    import tempfile

    with tempfile.TemporaryDirectory(prefix="upload-", dir=settings.cache_dir()) as tmp:
        path = Path(tmp) / Path(filename).name
        path.write_bytes(source)
        return read(path)


def character_roots(persona_dirs: Iterable[str | Path] = ()) -> list[Path]:
    """Where characters are looked for by name: $ROLECHAT_HOME/personas, `persona_dirs`, the shipped samples."""
    from rolechat.llm.demo import SAMPLE_PERSONAS_DIR

    return [settings.personas_dir(), *(Path(p).expanduser() for p in persona_dirs), SAMPLE_PERSONAS_DIR]


def find_character(name: str, roots: Iterable[str | Path] | None = None) -> tuple[PersonaEntry, Character]:
    """The persona folder `name` and its character; ValueError naming the characters there are."""
    entries = discover(roots if roots is not None else character_roots())
    for entry in entries:
        if entry.name == name:
            if entry.manifest is None:
                raise ValueError(f"persona {name!r} is broken: {entry.error}")
            character = load_character(entry.manifest)
            if character is None:
                raise ValueError(f"persona {name!r} has no character card (it is an adapter only)")
            return entry, character
    known = [e.name for e in entries if e.manifest is not None and e.manifest.card]
    raise ValueError(f"no character {name!r}; characters: {', '.join(known) or 'none'}")


def attach_lorebook(name: str, book: Lorebook, *, replace: bool = False, root: str | Path | None = None) -> Path:
    """Give character `name` (a folder under `root`, default $ROLECHAT_HOME/personas) the lorebook `book`."""
    folder = (Path(root).expanduser() if root else settings.personas_dir()) / name
    entry, character = find_character(name, [folder.parent])
    if character.character_book is not None and character.character_book.entries and not replace:
        raise FileExistsError(
            f"character {name!r} already has a lorebook ({len(character.character_book.entries)} entries); "
            "pass --replace to replace it"
        )
    character.character_book = book
    manifest = entry.manifest
    assert manifest is not None
    manifest.card = character.to_card(_card_version(character))
    _write_folder(entry.path, manifest, None)
    return entry.path


def export_character(
    name: str, out: str | Path, *, version: str | None = None, roots: Iterable[str | Path] | None = None
) -> Path:
    """Write character `name` as a card file (`.png` with its avatar, or `.json` as `version`: by default the
    spec it was imported as)."""
    entry, character = find_character(name, roots)
    return write_card(character, out, version=version, avatar=entry.avatar)


def add_regex_scripts(name: str, scripts: list, *, root: str | Path | None = None) -> Path:
    """Add regex scripts (`regexscripts.RegexScript`) to character `name`'s card (`extensions.regex_scripts`),
    as SillyTavern's "import as scoped script" does; they export with the card."""
    folder = (Path(root).expanduser() if root else settings.personas_dir()) / name
    entry, character = find_character(name, [folder.parent])
    own = character.extensions.get("regex_scripts")
    character.extensions["regex_scripts"] = [*(own if isinstance(own, list) else []), *(s.to_dict() for s in scripts)]
    manifest = entry.manifest
    assert manifest is not None
    manifest.card = character.to_card(_card_version(character))
    _write_folder(entry.path, manifest, None)
    return entry.path
