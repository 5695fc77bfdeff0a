"""`rolechat chat` (terminal chat with a persona, a character or a scene, one-shot or interactive) and
`rolechat personas`.

A chat may bind lorebooks (`--lorebook NAME_OR_FILE`, repeatable: library books or files), override the
character's scenario (`--scenario`) and add an author's note (`--authors-note` and its `--note-*` flags), as a
SillyTavern chat does; `--prompt-file FILE` writes every turn's prompt view (each part, why it is there or not,
and the exact messages) to FILE (JSON when it ends in .json). Scenes (`--scene`) are run by `rolechat.cli.scene`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from rolechat.cli.common import attempt, build, console, err_console, fail, or_fail, print_parts, typed_lines
from rolechat.cli.options import Overrides, config_flags

HELP = """commands: /persona NAME (switch), /personas (list), /reset (clear history), /help, /exit"""

USER_NAME_OPTION = typer.Option("", "--user-name", help="Your name in the conversation ({{user}} in cards).")
USER_DESCRIPTION_OPTION = typer.Option(
    "", "--user-description", help="Who you are, told to the character (goes in the system part)."
)
SHOW_PROMPT_OPTION = typer.Option(
    False, "--show-prompt", help="Print what the model saw (every part with its token count) to stderr."
)


def load_runtime_or_fail(llm_overrides: dict[str, Any] | None = None):
    """Load the runtime (config file < environment < the command's --llm flags) with a status line; config
    and load errors end the command cleanly."""
    from rolechat.llm import LoadError, load_runtime

    cfg = build("llm", llm_overrides)
    try:
        with err_console.status("loading model…"):
            return load_runtime(cfg)
    except LoadError as exc:
        fail(str(exc))


def engine_or_fail(rt, rag_cfg=None, chat_overrides: dict[str, Any] | None = None):
    """The conversation engine over `rt`: the [rag] settings (or `rag_cfg`, already built with the command's
    flags) and the [chat] budgets (config file < environment < the command's --chat flags)."""
    from rolechat.conversation import Engine

    return Engine(rt, rag_cfg or build("rag"), chat_cfg=build("chat", chat_overrides))


def user_persona(name: str, description: str):
    from rolechat.conversation import UserPersona

    return UserPersona(name, description)


def demo_hint(info) -> None:
    """On the demo model, say how to use a real one (plain text: the hint names `[llm]`, not a markup tag)."""
    if info.is_demo:
        err_console.print(info.hint, style="yellow", markup=False, highlight=False)


def banner(rt) -> None:
    info = rt.info
    err_console.print(
        f"[bold]model[/] {escape(info.model_id)} · {info.device} · {info.dtype} · personas: "
        f"{', '.join(rt.persona_names())}",
        highlight=False,
    )
    demo_hint(info)
    for entry in rt.personas():
        if entry.error:
            err_console.print(
                f"persona {entry.name} unavailable: {entry.error}", style="red", markup=False, highlight=False
            )


@dataclass
class Talk:
    """One `rolechat chat` run: its conversation (a `Session`: the character or scene, the user, the sampling
    parameters, the chat's setting, the history) and how turns are shown (the prompt view and where it goes)."""

    session: Any
    show_prompt: bool = False
    prompt_file: Path | None = None
    quiet: bool = False
    turns: list[Any] = field(default_factory=list)
    told_dropped: bool = False

    @property
    def engine(self) -> Any:
        return self.session.engine

    def prepared(self, turn: Any) -> Any:
        """Show and record a prepared turn (the prompt view); the first time the context cannot hold every part,
        say once what was left out."""
        if self.show_prompt:
            print_parts(turn)
        full = next((p for p in turn.parts if p.kind == "notice" and p.label == "context full"), None)
        if full is not None and not self.told_dropped and not self.show_prompt:
            err_console.print(f"note: {full.text}", style="yellow", markup=False, highlight=False, soft_wrap=True)
            self.told_dropped = True
        if self.prompt_file is not None:
            from rolechat.conversation.report import report

            self.turns.append(turn)
            as_json = self.prompt_file.suffix.lower() == ".json"
            files = {self.prompt_file: report(self.turns, as_json=as_json, render=self.engine.rendered)}
            if not as_json:  # the parts as JSON beside the text
                files[self.prompt_file.with_suffix(".json")] = report(
                    self.turns, as_json=True, render=self.engine.rendered
                )
            try:
                for path, text in files.items():
                    path.write_text(text, encoding="utf-8")
            except OSError as exc:
                fail(f"--prompt-file {self.prompt_file}: {exc}")
        return turn

    def answer(self, pick: str | None = None, rng: Any = None) -> int:
        """The session's answer to the chat so far (a scene: a round, or `pick` alone), each reply printed as it
        streams; a long chat's dropped turns summarised. How many replies there were."""
        count = 0
        for reply in self.session.replies(pick, rng):
            self.prepared(reply.turn)
            self.say(reply, reply.name)
            count += 1
            job = self.session.summary_job(reply)
            if job is not None:
                self.session.summary = job.run() or self.session.summary
        return count

    def say(self, reply: Any, name: str | None = None) -> str:
        """Print `reply` (under `name` in a scene) and record it; the text the chat keeps."""
        turn, stream = reply.turn, reply.stream
        shows = turn.scripts is not None and turn.scripts.shows("assistant")
        if self.quiet or shows:
            kept = reply.finish(stream.join())["content"]
            shown = turn.scripts.display(kept, "assistant", 0) if shows else kept
            if self.quiet:
                typer.echo(f"{name}: {shown}" if name else shown)
            else:
                console.print(f"{name}: {shown}" if name else shown, markup=False, highlight=False, soft_wrap=True)
            return kept
        if name:
            console.print(f"[bold magenta]{escape(name)}:[/] ", end="", highlight=False)
        return reply.finish(_stream_reply(stream))["content"]


def _stream_reply(stream) -> str:
    for piece in stream:
        console.print(piece, end="", markup=False, highlight=False, soft_wrap=True)
    console.print()
    s = stream.stats
    err_console.print(
        f"[dim]{s.completion_tokens} tokens · {s.tokens_per_second:.1f} tok/s · "
        f"first token {s.time_to_first_token or 0:.2f}s[/]",
        highlight=False,
    )
    return stream.text


def chat_setting(lorebooks: list[str] | None, scenario: str, note: dict[str, Any], max_bytes: int):
    """The ChatSetting of the command's flags: every lorebook read now (a bad one ends the command naming it)."""
    from rolechat.conversation.books import load_book
    from rolechat.conversation.lorebook import CardError
    from rolechat.conversation.setting import AuthorsNote, ChatSetting

    books = list(lorebooks or [])
    for name in books:
        try:
            load_book(name, max_bytes)
        except CardError as exc:
            fail(f"--lorebook {name}: {exc}")
    try:
        authors_note = AuthorsNote(**note) if note.get("text") else None
    except ValueError as exc:
        fail(str(exc))
    return ChatSetting(lorebooks=books, scenario=scenario or "", authors_note=authors_note)


def _restart(talk: Talk, greeting: int) -> list[dict[str, Any]]:
    """Start the session's chat over: no history, summary or lore state; the greeting number `greeting` opens it."""
    from rolechat.conversation.session import Summary

    session = talk.session
    session.history.clear()
    session.summary = Summary()
    session.setting.lore_state = {}
    try:
        return session.start(greeting)
    except IndexError as exc:
        fail(str(exc))


def _turn(talk: Talk, line: str) -> None:
    """One exchange: the user's line recorded, the reply printed and recorded."""
    talk.session.say(line)
    talk.answer()


def _solo(talk: Talk, rt, message: str | None, greeting: int) -> None:
    """A chat with one persona or character: one message (`message`) or an interactive loop."""
    from rolechat.llm import PersonaError

    try:
        rt.manifest(talk.session.persona)
    except PersonaError as exc:
        fail(str(exc))
    history = _restart(talk, greeting)
    if message is not None:
        or_fail(lambda: _turn(talk, message))
        return
    err_console.print(f"[dim]{HELP}[/]")
    for opening in history:
        console.print(opening["content"], markup=False, highlight=False, soft_wrap=True)
    for line in typed_lines(lambda: f"[bold cyan]{talk.session.persona or 'base'}>[/] "):
        if not line.startswith("/"):
            attempt(lambda line=line: _turn(talk, line))
        elif _command(talk, rt, line, greeting):
            return


def _command(talk: Talk, rt, line: str, greeting: int) -> bool:
    """An interactive command; whether to exit."""
    from rolechat.llm import PersonaError

    cmd, _, arg = line.partition(" ")
    if cmd in ("/exit", "/quit"):
        return True
    if cmd == "/reset":
        _restart(talk, greeting)
        err_console.print("[dim]history cleared[/]")
    elif cmd == "/personas":
        rt.reload_personas()
        err_console.print(", ".join(rt.persona_names()))
    elif cmd == "/persona":
        rt.reload_personas()
        try:
            rt.manifest(arg.strip() or None)
        except PersonaError as exc:
            err_console.print(str(exc), style="red", markup=False, highlight=False)
            return False
        talk.session.persona = arg.strip() or None
        err_console.print(f"[dim]persona: {talk.session.persona or 'base'} (history cleared)[/]")
        for opening in _restart(talk, 0):
            console.print(opening["content"], markup=False, highlight=False, soft_wrap=True)
    else:
        err_console.print(f"[dim]{HELP}[/]")
    return False


LOREBOOK_OPTION = typer.Option(
    None,
    "--lorebook",
    "-l",
    help="A lorebook this chat scans besides the character's: a name in $ROLECHAT_HOME/lorebooks or a file "
    "(SillyTavern world info, lorebook_v3, a card's book); repeatable.",
)
SCENARIO_OPTION = typer.Option(
    "", "--scenario", help="This chat's scenario, instead of the card's (SillyTavern's override)."
)
PROMPT_FILE_OPTION = typer.Option(
    None,
    "--prompt-file",
    help="Write each turn's prompt view to FILE: every part with its book and why it is in (or out), and the "
    "exact messages sent (JSON when FILE ends in .json).",
)


def _note_options(text: str, depth: int, role: str, position: str, interval: int) -> dict[str, Any]:
    return {"text": text, "depth": depth, "role": role, "position": position, "interval": interval}


@config_flags("llm", "chat")
def chat(
    persona: str | None = typer.Option(None, "--persona", "-p", help="Persona name (default: base model)."),
    message: str | None = typer.Option(None, "--message", "-m", help="One-shot: print the reply and exit."),
    seed: int | None = typer.Option(None, help="Seed for reproducible sampling (and lore and scene rolls)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="One-shot: print only the reply."),
    user_name: str = USER_NAME_OPTION,
    user_description: str = USER_DESCRIPTION_OPTION,
    greeting: int = typer.Option(0, "--greeting", help="Which greeting opens the chat (0 = the first message)."),
    show_prompt: bool = SHOW_PROMPT_OPTION,
    prompt_file: Path | None = PROMPT_FILE_OPTION,
    lorebook: list[str] | None = LOREBOOK_OPTION,
    scenario: str = SCENARIO_OPTION,
    authors_note: str = typer.Option("", "--authors-note", help="The author's note: text added every turn."),
    note_depth: int = typer.Option(4, "--note-depth", help="Author's note: messages from the end (in_chat)."),
    note_role: str = typer.Option("system", "--note-role", help="Author's note role: system, user or assistant."),
    note_position: str = typer.Option(
        "in_chat", "--note-position", help="Author's note: in_chat (at its depth), after_story or before_story."
    ),
    note_interval: int = typer.Option(1, "--note-interval", help="Author's note every N user messages; 0 = off."),
    scene: str | None = typer.Option(
        None, "--scene", help="A scene: a saved scene's name (`rolechat scene create`) or persona names A,B."
    ),
    order: str | None = typer.Option(
        None, "--order", help="Scene speaker order: natural, list, manual or round-robin (default: the scene's)."
    ),
    speaker: str | None = typer.Option(None, "--speaker", help="Scene: who replies (the manual order's pick)."),
    config: Overrides | None = None,
) -> None:
    """Chat with the base model, a persona or a character in the terminal (streaming).

    A chat with a character opens with its greeting, as the first turn the model sees. With --scene, every
    message gets a round of replies in the scene's speaker order, each with its speaker's card and adapter."""
    rt = load_runtime_or_fail(config["llm"])
    if not quiet:
        banner(rt)
    from rolechat.conversation.session import Session

    engine = engine_or_fail(rt, chat_overrides=config["chat"])
    note = _note_options(authors_note, note_depth, note_role, note_position, note_interval)
    setting = chat_setting(lorebook, scenario, note, engine.chat_cfg.card_max_bytes)
    user = user_persona(user_name, user_description)
    params = {"seed": seed}  # temperature, top_p, max_new_tokens...: the --llm flags set the runtime's defaults
    session = Session(engine, persona=persona, user=user, setting=setting, params=params)
    talk = Talk(session, show_prompt, prompt_file, quiet)
    if scene is not None:
        from rolechat.cli.scene import run_scene

        run_scene(talk, scene, order, speaker, message, seed)
        return
    _solo(talk, rt, message, greeting)


@config_flags("llm")
def personas(
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
    config: Overrides | None = None,
) -> None:
    """List personas (adapters and characters) under $ROLECHAT_HOME/personas (and llm.persona_dirs), broken
    ones included."""
    from rolechat import settings
    from rolechat.llm import LoadError, describe, discover, resolve_model
    from rolechat.llm.runtime import persona_roots

    cfg = build("llm", config["llm"])
    try:
        is_demo = resolve_model(cfg.model, cfg.default_hub_model).is_demo
    except LoadError:
        is_demo = False
    rows = describe(discover(persona_roots(cfg, is_demo)))
    if as_json:
        console.print_json(json.dumps(rows, ensure_ascii=False))
        return
    if not rows:
        console.print(f"no personas yet in {settings.personas_dir()} — train one with `rolechat train`")
        return
    from rich.table import Table

    table = Table("name", "display name", "kind", "base model", "system prompt", "status")
    for r in rows:
        kind = ("adapter + card" if r["adapter"] else "prompt-only card") if r["kind"] == "character" else "adapter"
        table.add_row(
            *(
                escape(v)
                for v in (
                    r["name"],
                    r["display_name"],
                    kind,
                    r["base_model"],
                    r["system_prompt"][:40].replace("\n", " "),
                )
            ),
            "ok" if r["ok"] else f"[red]broken[/]: {escape(r['error'])}",
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(chat)
    app.command()(personas)
