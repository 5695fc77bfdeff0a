"""`rolechat character ...`: import character cards as personas, export them, attach lorebooks, list them.

rolechat character import 凛.png [--name rin] [--overwrite]
rolechat character export rin --out rin.png            (or .json, --version v2|v3)
rolechat character import-lorebook world.json --name rin [--replace]
rolechat character list [--json]
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from rolechat.cli.common import console, fail, file_data

character_app = typer.Typer(
    help="Character cards (SillyTavern V1/V2/V3, JSON or PNG) as personas: import, export, lorebooks.",
    no_args_is_help=True,
)


def _persona_dirs() -> list[str]:
    from rolechat import settings
    from rolechat.llm import LLMConfig

    return list(settings.build(LLMConfig, "llm", file_data()).persona_dirs)


@character_app.command("import")
def import_card(
    file: Path = typer.Argument(..., help="Card file: .png (chara/ccv3 text chunk) or .json (V1, V2 or V3)."),
    name: str | None = typer.Option(None, "--name", "-n", help="Persona name (default: from the card's name)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the card of an existing persona."),
) -> None:
    """Import a character card as a persona folder under $ROLECHAT_HOME/personas (prompt-only until trained)."""
    from rolechat.conversation.cardfile import read_avatar, read_card
    from rolechat.conversation.characters import persona_name, save_character
    from rolechat.conversation.lorebook import CardError

    try:
        character = read_card(file)
        avatar = read_avatar(file)
        folder = save_character(character, name, avatar=avatar, overwrite=overwrite)
    except (CardError, FileExistsError, ValueError) as exc:
        fail(str(exc))
    book = character.character_book
    lore = f", lorebook of {len(book.entries)} entries" if book else ""
    greetings = 1 + len(character.alternate_greetings) if character.first_mes else len(character.alternate_greetings)
    console.print(
        f"imported {escape(character.name)} as persona [bold]{escape(name or persona_name(character))}[/] "
        f"({greetings} greetings{lore}) -> {escape(str(folder))}",
        highlight=False,
        soft_wrap=True,
    )


@character_app.command("export")
def export_card(
    name: str = typer.Argument(..., help="Persona name of the character."),
    out: Path = typer.Option(..., "--out", "-o", help="Card file to write: .png (both chunks) or .json."),
    version: str = typer.Option("v2", "--version", help="JSON card version: v2 or v3 (PNG holds both)."),
) -> None:
    """Export a character as a card other tools import (SillyTavern and others)."""
    from rolechat.conversation.characters import character_roots, export_character
    from rolechat.conversation.lorebook import CardError

    if version not in ("v2", "v3"):
        fail(f"--version must be v2 or v3, got {version!r}")
    try:
        path = export_character(name, out, version=version, roots=character_roots(_persona_dirs()))
    except (CardError, ValueError) as exc:
        fail(str(exc))
    console.print(f"wrote {escape(str(path))}", highlight=False, soft_wrap=True)


@character_app.command("import-lorebook")
def import_lorebook(
    file: Path = typer.Argument(..., help="Lorebook: SillyTavern world info JSON, lorebook_v3, or a card's book."),
    name: str = typer.Option(..., "--name", "-n", help="The character (persona name) to attach it to."),
    replace: bool = typer.Option(False, "--replace", help="Replace the character's existing lorebook."),
) -> None:
    """Attach a standalone lorebook (world info) to an imported character; it exports with the card."""
    from rolechat.conversation.cardfile import read_lorebook
    from rolechat.conversation.characters import attach_lorebook
    from rolechat.conversation.lorebook import CardError

    try:
        book = read_lorebook(file)
        folder = attach_lorebook(name, book, replace=replace)
    except (CardError, FileExistsError, ValueError) as exc:
        fail(str(exc))
    console.print(
        f"attached lorebook {escape(book.name or file.stem)} ({len(book.entries)} entries) to {escape(name)} "
        f"-> {escape(str(folder))}",
        highlight=False,
        soft_wrap=True,
    )


@character_app.command("list")
def list_characters(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List the characters (personas with a card), the shipped samples included."""
    from rolechat.conversation.characters import character_roots, load_character
    from rolechat.conversation.lorebook import CardError
    from rolechat.llm import discover

    rows = []
    for entry in discover(character_roots(_persona_dirs())):
        if entry.manifest is None or not entry.manifest.card:
            continue
        try:
            character = load_character(entry.manifest)
        except CardError as exc:
            rows.append({"name": entry.name, "error": str(exc), "path": str(entry.path)})
            continue
        assert character is not None
        rows.append(
            {
                "name": entry.name,
                "display_name": character.display_name,
                "adapter": entry.has_adapter,
                "greetings": len([g for g in (character.first_mes, *character.alternate_greetings) if g.strip()]),
                "lore_entries": len(character.character_book.entries) if character.character_book else 0,
                "tags": character.tags,
                "creator": character.creator,
                "path": str(entry.path),
                "error": entry.error,
            }
        )
    if as_json:
        console.print_json(json.dumps(rows, ensure_ascii=False))
        return
    if not rows:
        console.print("no characters yet — import a card with `rolechat character import FILE`")
        return
    from rich.table import Table

    table = Table("name", "character", "kind", "greetings", "lore", "path")
    for r in rows:
        if "display_name" not in r:
            table.add_row(escape(r["name"]), f"[red]broken[/]: {escape(r['error'])}", "", "", "", escape(r["path"]))
            continue
        kind = "adapter + card" if r["adapter"] else "prompt only"
        table.add_row(
            escape(r["name"]),
            escape(r["display_name"]),
            kind,
            str(r["greetings"]),
            str(r["lore_entries"]),
            escape(r["path"]),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(character_app, name="character")
