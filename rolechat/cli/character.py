"""`rolechat character ...`: import character cards as personas, export them, attach lorebooks, list them.

rolechat character import 凛.png [--name rin] [--overwrite]
rolechat character export rin --out rin.png            (or .json: the card's own version unless --version v2|v3)
rolechat character import-lorebook world.json --name rin [--replace]
rolechat character import-memory lines.txt --name rin [--replace]   (角色：「台词」 script, or JSONL of query/reply)
rolechat character list [--json]
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from rolechat.cli.common import build, console, err_console, fail

character_app = typer.Typer(
    help="Character cards (SillyTavern V1/V2/V3, JSON or PNG) as personas: import, export, lorebooks.",
    no_args_is_help=True,
)


def _persona_dirs() -> list[str]:
    return list(build("llm").persona_dirs)


@character_app.command("import")
def import_card(
    file: Path = typer.Argument(..., help="Card file: .png (chara/ccv3 text chunk), .json (V1, V2 or V3) or .charx."),
    name: str | None = typer.Option(None, "--name", "-n", help="Persona name (default: from the card's name)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the card of an existing persona."),
) -> None:
    """Import a character card as a persona folder under $ROLECHAT_HOME/personas (prompt-only until trained)."""
    from rolechat.conversation.characters import import_card
    from rolechat.conversation.lorebook import CardError

    try:
        folder, character = import_card(file, name=name, overwrite=overwrite, max_bytes=build("chat").card_max_bytes)
    except (CardError, FileExistsError, ValueError) as exc:
        fail(str(exc))
    book = character.character_book
    lore = f", lorebook of {len(book.entries)} entries" if book else ""
    greetings = 1 + len(character.alternate_greetings) if character.first_mes else len(character.alternate_greetings)
    console.print(
        f"imported {escape(character.name)} as persona [bold]{escape(folder.name)}[/] "
        f"({greetings} greetings{lore}) -> {escape(str(folder))}",
        highlight=False,
        soft_wrap=True,
    )
    warn_risky(book)


def warn_risky(book) -> None:
    """Warn about lorebook key patterns that can take exponential time to match (they run time-limited)."""
    for label, key in book.risky_keys() if book is not None else []:
        err_console.print(
            f"[yellow]warning:[/] lorebook entry “{escape(label)}”: key {escape(key[:60])} nests "
            "quantifiers, which can take exponential time to match; each match gets chat.lore_regex_timeout "
            "seconds, and an entry whose key takes longer is turned off",
            highlight=False,
            soft_wrap=True,
        )


@character_app.command("export")
def export_card(
    name: str = typer.Argument(..., help="Persona name of the character."),
    out: Path = typer.Option(..., "--out", "-o", help="Card file to write: .png (both chunks) or .json."),
    version: str | None = typer.Option(
        None, "--version", help="JSON card version: v2 or v3 (default: the card's own; PNG holds both)."
    ),
) -> None:
    """Export a character as a card other tools import (SillyTavern and others)."""
    from rolechat.conversation.characters import character_roots, export_character
    from rolechat.conversation.lorebook import CardError

    if version not in (None, "v2", "v3"):
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
    from rolechat.conversation.characters import import_lorebook
    from rolechat.conversation.lorebook import CardError

    try:
        folder, book = import_lorebook(name, file, replace=replace, max_bytes=build("chat").card_max_bytes)
    except (CardError, FileExistsError, ValueError) as exc:
        fail(str(exc))
    console.print(
        f"attached lorebook {escape(book.name or file.stem)} ({len(book.entries)} entries) to {escape(name)} "
        f"-> {escape(str(folder))}",
        highlight=False,
        soft_wrap=True,
    )
    warn_risky(book)


@character_app.command("import-memory")
def import_memory(
    file: Path = typer.Argument(
        ...,
        help='Lines to remember: a script of `角色：「台词」` lines (also `角色:"台词"`, `角色：台词`; other '
        "speakers' lines become what was said to the character) or JSONL of {query, reply}.",
    ),
    name: str = typer.Option(..., "--name", "-n", help="The character (persona name) whose memory it is."),
    replace: bool = typer.Option(False, "--replace", help="Replace the character's memory instead of adding to it."),
) -> None:
    """Give a character a memory of its lines (memory.jsonl): each turn the most relevant ones join the prompt."""
    from rolechat import settings
    from rolechat.conversation.characters import load_character
    from rolechat.conversation.memory import import_memory
    from rolechat.llm.personas import discover

    roots = [settings.personas_dir(), *(Path(p).expanduser() for p in _persona_dirs())]
    entry = next((e for e in discover(roots) if e.name == name), None)
    if entry is None or entry.manifest is None:
        why = f" ({entry.error})" if entry is not None else ""
        fail(f"no persona {name!r} under {', '.join(str(r) for r in roots)}{why}")
    manifest = entry.manifest
    try:
        card = load_character(manifest)
    except ValueError as exc:
        fail(str(exc))
    speaker = card.name if card is not None else manifest.display_name or name
    try:
        path, added = import_memory(entry.path, file, speaker, [manifest.display_name, name], replace=replace)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    console.print(
        f"{'replaced' if replace else 'added'} {added} memory entries of {escape(name)} -> {escape(str(path))}",
        highlight=False,
        soft_wrap=True,
    )


def _memory_size(folder: Path) -> int:
    """Entries in the folder's memory.jsonl (0 without one); a bad file is an error naming its line."""
    from rolechat.llm.memoryfile import MEMORY_FILE, read_memory

    path = folder / MEMORY_FILE
    if not path.is_file():
        return 0
    try:
        return len(read_memory(path))
    except ValueError as exc:
        fail(str(exc))


def lore_rows(book) -> list[dict]:
    """A book's entries as rows for listings: keys, logic, order, position and SillyTavern's settings."""
    rows = []
    for e in book.entries if book else []:
        where = f"@depth {e.depth} ({e.role})" if e.position == "at_depth" else e.position
        timed = ", ".join(f"{k} {getattr(e, k)}" for k in ("sticky", "cooldown", "delay") if getattr(e, k))
        rows.append(
            {
                "label": e.label,
                "keys": e.keys,
                "secondary_keys": e.secondary_keys if e.selective else [],
                "logic": e.selective_logic if e.selective and e.secondary_keys else "",
                "constant": e.constant,
                "enabled": e.enabled,
                "order": e.insertion_order,
                "position": where,
                "probability": e.probability if e.use_probability else 100,
                "group": e.group,
                "timed": timed,
            }
        )
    return rows


def lore_table(rows: list[dict]):
    from rich.table import Table

    table = Table("entry", "keys", "order", "position", "settings", "on")
    for e in rows:
        keys = "(always)" if e["constant"] else ", ".join(e["keys"])
        if e["logic"]:
            keys += f"; {e['logic']}: {', '.join(e['secondary_keys'])}"
        more = [
            f"{e['probability']:g}%" if e["probability"] != 100 else "",
            f"group {e['group']}" if e["group"] else "",
            e["timed"],
        ]
        values = (e["label"], keys, e["order"], e["position"], "; ".join(m for m in more if m))
        table.add_row(*(escape(str(v)) for v in values), "yes" if e["enabled"] else "no")
    return table


def _show_info(entry, char, user: str) -> dict:
    from rolechat.conversation.card import example_dialogues, greetings, group_greetings, system_prompt
    from rolechat.conversation.regexscripts import card_scripts

    note = char.depth_prompt
    book = char.character_book
    return {
        "name": entry.name,
        "character": char.display_name,
        "spec": char.spec,
        "adapter": entry.has_adapter,
        "system_prompt": system_prompt(char, user),
        "greetings": greetings(char, user),
        "group_greetings": group_greetings(char, user)
        if char.group_only_greetings or "group_greetings" in char.extensions
        else [],
        "example_dialogues": example_dialogues(char, user),
        "post_history_instructions": char.post_history_instructions,
        "characters_note": {"text": note[0], "depth": note[1], "role": note[2]} if note else None,
        "talkativeness": char.talkativeness,
        "lorebook": lore_rows(book),
        "lorebook_settings": {
            "name": book.name,
            "scan_depth": book.scan_depth,
            "token_budget": book.token_budget,
            "recursive_scanning": book.recursive_scanning,
        }
        if book
        else None,
        "regex_scripts": [
            {"name": r.name, "find": r.find, "replace": r.replace, "where": r.where} for r in card_scripts(char)
        ],
        "memory_entries": _memory_size(entry.path),
        "creator_notes": char.creator_notes,
    }


@character_app.command("show")
def show_character(
    name: str = typer.Argument(..., help="Persona name of the character."),
    user: str = typer.Option("用户", "--user-name", help="Name {{user}} stands for."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Show what a character sends the model: system prompt, greetings, example dialogues, post-history
    instructions, the character's note, lorebook entries and regex scripts."""
    from rolechat.conversation.characters import character_roots, find_character
    from rolechat.conversation.lorebook import CardError

    try:
        entry, char = find_character(name, character_roots(_persona_dirs()))
        info = _show_info(entry, char, user)
    except (CardError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        console.print_json(json.dumps(info, ensure_ascii=False))
        return
    say = lambda label, text: console.print(f"[bold]{label}[/] {escape(str(text))}", highlight=False)
    console.rule(f"{escape(char.display_name)} ({escape(entry.name)})")
    say("system prompt\n", info["system_prompt"])
    for n, greeting in enumerate(info["greetings"]):
        say(f"greeting {n}", greeting)
    for n, greeting in enumerate(info["group_greetings"]):
        say(f"group greeting {n}", greeting)
    for n, block in enumerate(info["example_dialogues"], 1):
        say(f"example {n}", " / ".join(f"{t['role']}: {t['content']}" for t in block))
    if char.post_history_instructions.strip():
        say("post-history instructions", char.post_history_instructions.strip())
    if info["characters_note"]:
        note = info["characters_note"]
        say(f"character's note (depth {note['depth']}, {note['role']})", note["text"])
    if info["lorebook"]:
        console.print(lore_table(info["lorebook"]))
    for script in info["regex_scripts"]:
        say(f"regex script {script['name']}", f"{script['find']} -> {script['replace']} ({script['where']})")
    if info["memory_entries"]:
        say("memory", f"{info['memory_entries']} remembered exchanges (memory.jsonl)")
    if char.creator_notes.strip():
        console.print(f"[dim]creator notes (never sent): {escape(char.creator_notes.strip())}[/]", highlight=False)


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
