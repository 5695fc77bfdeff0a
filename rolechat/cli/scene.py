"""Scenes on the command line: `rolechat chat --scene ...` (a round of replies per message) and the saved scenes.

rolechat scene create NAME --characters a,b [--order natural|list|manual|round-robin] [--lorebook BOOK]...
                      [--scenario TEXT] [--mute a] [--self-responses] [--replace]
rolechat scene list [--json]
rolechat scene show NAME
rolechat scene delete NAME

A scene chat opens with each character's group greeting; every message from the user gets one round, the
speakers picked by the scene's order (`scene.speaking_order`), each replying with its own card and adapter.
Interactive commands: /speak NAME (that character replies now), /reset, /exit.
"""

from __future__ import annotations

import json
import random

import typer
from rich.markup import escape

from rolechat.cli.common import attempt, console, done_or_fail, err_console, fail, listed, or_fail, typed_lines

scene_app = typer.Typer(
    help="Scenes (SillyTavern's group chats): characters, turn order, lorebooks.", no_args_is_help=True
)


def _resolve(session, spec: str, order: str | None) -> None:
    """Make `session` the scene of `--scene`: a saved scene's name, or names A,B (the chat's own books and
    scenario then join a saved scene's)."""
    from rolechat.conversation.scene import load_scene

    if "," in spec:
        session.characters = [c.strip() for c in spec.split(",") if c.strip()]
        session.order = order or "natural"
        return
    try:
        scene = load_scene(spec.strip())
    except ValueError as exc:
        fail(f"{exc}; a scene of personas names at least two characters, comma-separated (A,B)")
    chat = session.setting
    merged = scene.setting(chat.lorebooks, chat.scenario)
    chat.lorebooks, chat.scenario = merged.lorebooks, merged.scenario
    session.characters, session.order = list(scene.characters), order or scene.order
    session.allow_self, session.muted = scene.allow_self_responses, list(scene.muted)


def run_scene(talk, spec: str, order: str | None, speaker: str | None, message: str | None, seed: int | None) -> None:
    """`chat --scene`: a round per message (or the `--speaker` alone), printed as `名字: reply`."""
    session = talk.session
    _resolve(session, spec, order)
    try:
        names = session.names()
        talk.engine.speaking_order(session.characters, [], session.order)  # checks the scene and the order
    except ValueError as exc:
        fail(str(exc))
    if speaker is not None and speaker not in session.characters:
        fail(f"--speaker {speaker!r} is not in the scene ({', '.join(session.characters)})")
    rng = random.Random(seed)
    session.start()

    def round_of(line: str, pick: str | None = None) -> None:
        if line:
            session.say(line)
        if not talk.answer(pick, rng):
            err_console.print("[dim]nobody speaks in manual order: /speak NAME (or --speaker NAME)[/]")

    if message is not None:
        or_fail(lambda: round_of(message, speaker))
        return
    _loop(talk, names, round_of)


def _loop(talk, names, round_of) -> None:
    session = talk.session
    err_console.print(
        f"[dim]scene: {', '.join(names.values())} · order: {session.order} · /speak NAME, /reset, /exit[/]",
        highlight=False,
    )
    for line in session.history:
        console.print(f"{names[line['name']]}: {line['content']}", markup=False, highlight=False, soft_wrap=True)
    for line in typed_lines(lambda: "[bold cyan]scene>[/] "):
        if line in ("/exit", "/quit"):
            return
        if line == "/reset":
            session.history.clear()
            session.setting.lore_state = {}
            session.start()
            err_console.print("[dim]history cleared[/]")
            continue
        pick = None
        if line.startswith("/speak"):
            wanted = line.partition(" ")[2].strip()
            pick = next((p for p, n in names.items() if wanted in (p, n)), None)
            if pick is None:
                err_console.print(f"no {wanted!r} in the scene ({', '.join(names)})", style="red", markup=False)
                continue
            line = ""
        attempt(lambda line=line, pick=pick: round_of(line, pick))


# -- saved scenes --------------------------------------------------------------------------------------


@scene_app.command("create")
def create(
    name: str = typer.Argument(..., help="The scene's name."),
    characters: str = typer.Option(..., "--characters", "-c", help="Persona names, comma-separated (two or more)."),
    order: str = typer.Option("natural", "--order", help="natural, list, manual or round-robin."),
    lorebook: list[str] | None = typer.Option(None, "--lorebook", "-l", help="The scene's own lorebook (repeatable)."),
    scenario: str = typer.Option("", "--scenario", help="A scenario for every character, instead of their cards'."),
    mute: list[str] | None = typer.Option(None, "--mute", help="A character who speaks only when picked (repeatable)."),
    self_responses: bool = typer.Option(False, "--self-responses", help="A character may answer its own line."),
    replace: bool = typer.Option(False, "--replace", help="Replace a scene of that name."),
) -> None:
    """Save a scene (SillyTavern's group): its characters, turn order, lorebooks and scenario override."""
    from rolechat.conversation.books import load_book
    from rolechat.conversation.lorebook import CardError
    from rolechat.conversation.scene import Scene, save_scene

    for book in lorebook or []:
        try:
            load_book(book)
        except CardError as exc:
            fail(f"--lorebook {book}: {exc}")
    members = [c.strip() for c in characters.split(",") if c.strip()]
    try:
        scene = Scene(name, members, order, self_responses, list(mute or []), list(lorebook or []), scenario)
        path = save_scene(scene, replace=replace)
    except (ValueError, FileExistsError) as exc:
        fail(str(exc))
    console.print(f"saved scene {escape(name)} ({', '.join(members)}) -> {escape(str(path))}", highlight=False)


@scene_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """The saved scenes."""
    from rolechat.conversation.scene import list_scenes

    scenes = [s.as_dict() for s in list_scenes()]
    if listed(scenes, as_json, "no scenes yet — save one with `rolechat scene create NAME --characters a,b`"):
        return
    for s in scenes:
        console.print(f"{escape(s['name'])}: {', '.join(s['characters'])} · {s['order']}", highlight=False)


@scene_app.command("show")
def show(name: str = typer.Argument(..., help="The scene's name.")) -> None:
    """A saved scene, as JSON."""
    from rolechat.conversation.scene import load_scene

    try:
        console.print_json(json.dumps(load_scene(name).as_dict(), ensure_ascii=False))
    except ValueError as exc:
        fail(str(exc))


@scene_app.command("delete")
def delete(name: str = typer.Argument(..., help="The scene's name.")) -> None:
    """Delete a saved scene (its characters and books stay)."""
    from rolechat.conversation.scene import delete_scene

    done_or_fail(lambda: delete_scene(name), (ValueError,), f"deleted scene {name}")


def register(app: typer.Typer) -> None:
    app.add_typer(scene_app, name="scene")
