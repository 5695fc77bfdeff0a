"""`rolechat lorebook ...` (the lorebook library) and `rolechat regex ...` (regex scripts) on the command line.

rolechat lorebook import FILE [--name NAME] [--replace]     SillyTavern world info, lorebook_v3, a card's book
rolechat lorebook list [--json]
rolechat lorebook show NAME [--json]
rolechat lorebook delete NAME
rolechat regex import FILE [--character NAME] [--name NAME]   SillyTavern regex script JSON (one or a list)
rolechat regex list [--json]
rolechat regex delete NAME

Library books are what `rolechat chat --lorebook NAME`, scenes and `chat.global_lorebooks` name. A regex
script imported without --character applies to every chat; with it, it joins that character's card.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from rolechat.cli.common import build, console, done_or_fail, fail, listed

lorebook_app = typer.Typer(
    help="The lorebook library: books chats, scenes and the global world info use.", no_args_is_help=True
)
regex_app = typer.Typer(
    help="Regex scripts (SillyTavern's format) for every chat or one character.", no_args_is_help=True
)


@lorebook_app.command("import")
def import_book(
    file: Path = typer.Argument(..., help="SillyTavern world info JSON, a lorebook_v3 file, or a card (its book)."),
    name: str | None = typer.Option(None, "--name", "-n", help="Library name (default: the book's name or file stem)."),
    replace: bool = typer.Option(False, "--replace", help="Replace a book of that name."),
) -> None:
    """Add a lorebook to the library (`$ROLECHAT_HOME/lorebooks`)."""
    from rolechat.cli.character import warn_risky
    from rolechat.conversation.books import add_book
    from rolechat.conversation.lorebook import CardError

    try:
        saved, book = add_book(file, name, replace=replace, max_bytes=build("chat").card_max_bytes)
    except (CardError, FileExistsError) as exc:
        fail(str(exc))
    console.print(f"added lorebook {escape(saved)} ({len(book.entries)} entries)", highlight=False)
    warn_risky(book)


@lorebook_app.command("list")
def list_books(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """The library's books (a broken file with its error)."""
    from rolechat.conversation.books import list_books as books

    rows = [{"name": n, "entries": e, "error": err} for n, e, err in books()]
    if listed(rows, as_json, "no lorebooks yet — add one with `rolechat lorebook import FILE`"):
        return
    for r in rows:
        status = f"[red]broken[/]: {escape(r['error'])}" if r["error"] else f"{r['entries']} entries"
        console.print(f"{escape(r['name'])}: {status}", highlight=False)


@lorebook_app.command("show")
def show_book(
    name: str = typer.Argument(..., help="A library name or a lorebook file."),
    as_json: bool = typer.Option(False, "--json", help="Print the entries as JSON."),
) -> None:
    """A book's settings and entries, with SillyTavern's activation settings of each."""
    from rolechat.cli.character import lore_rows, lore_table
    from rolechat.conversation.books import load_book
    from rolechat.conversation.lorebook import CardError

    try:
        book = load_book(name)
    except CardError as exc:
        fail(str(exc))
    rows = lore_rows(book)
    if as_json:
        info = {
            "name": book.name,
            "description": book.description,
            "scan_depth": book.scan_depth,
            "token_budget": book.token_budget,
            "recursive_scanning": book.recursive_scanning,
            "entries": rows,
        }
        console.print_json(json.dumps(info, ensure_ascii=False))
        return
    console.rule(escape(book.name or name))
    if book.description:
        console.print(escape(book.description), highlight=False)
    console.print(lore_table(rows))


@lorebook_app.command("delete")
def delete_book(name: str = typer.Argument(..., help="The library name.")) -> None:
    """Remove a book from the library (chats that name it then say it is missing)."""
    from rolechat.conversation.books import delete_book as delete
    from rolechat.conversation.lorebook import CardError

    done_or_fail(lambda: delete(name), (CardError,), f"deleted lorebook {name}")


@regex_app.command("import")
def import_regex(
    file: Path = typer.Argument(..., help="A SillyTavern regex script (JSON object) or a list of them."),
    character: str | None = typer.Option(None, "--character", "-c", help="Add to this character's card instead."),
    name: str | None = typer.Option(None, "--name", "-n", help="File name for a global script (default: the file's)."),
) -> None:
    """Import regex scripts: for every chat, or into one character's card (`extensions.regex_scripts`)."""
    from rolechat.conversation.lorebook import CardError
    from rolechat.conversation.regexscripts import read_scripts, save_scripts
    from rolechat.limits import InputError, load_json

    try:
        scripts = read_scripts(load_json(file.read_bytes()), file.name)
    except FileNotFoundError:
        fail(f"{file}: file not found")
    except (InputError, CardError) as exc:
        fail(f"{file.name}: {exc}")
    if character is not None:
        from rolechat.conversation.characters import add_regex_scripts

        try:
            folder = add_regex_scripts(character, scripts)
        except (CardError, ValueError) as exc:
            fail(str(exc))
        console.print(
            f"added {len(scripts)} regex scripts to {escape(character)} -> {escape(str(folder))}", highlight=False
        )
        return
    path = save_scripts(scripts, (name or file.stem).replace("/", "_"))
    console.print(f"added {len(scripts)} regex scripts for every chat -> {escape(str(path))}", highlight=False)


@regex_app.command("list")
def list_regex(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """The regex scripts every chat runs (a character's own are in `rolechat character show`)."""
    from rolechat.conversation.regexscripts import global_scripts

    rows = [
        {"name": s.name, "find": s.find, "replace": s.replace, "where": s.where, "disabled": s.disabled}
        for s in global_scripts()
    ]
    if listed(rows, as_json, "no regex scripts — import one with `rolechat regex import FILE`"):
        return
    for r in rows:
        off = " (disabled)" if r["disabled"] else ""
        console.print(
            f"{escape(r['name'])}{off}: {escape(r['find'])} -> {escape(r['replace'])} · {r['where']}", highlight=False
        )


@regex_app.command("delete")
def delete_regex(
    name: str = typer.Argument(..., help="The file name (without .json) in $ROLECHAT_HOME/regex."),
) -> None:
    """Delete a file of global regex scripts."""
    from rolechat.conversation.regexscripts import regex_dir

    path = regex_dir() / f"{name}.json"
    if "/" in name or not path.is_file():
        known = ", ".join(p.stem for p in sorted(regex_dir().glob("*.json"))) or "none"
        fail(f"no regex scripts {name!r} in {regex_dir()} (files: {known})")
    path.unlink()
    console.print(f"deleted regex scripts {escape(name)}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(lorebook_app, name="lorebook")
    app.add_typer(regex_app, name="regex")
