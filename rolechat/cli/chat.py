"""`rolechat chat` (terminal chat, one-shot or interactive) and `rolechat personas`."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.markup import escape

from rolechat.cli.common import build, console, err_console, fail, print_parts
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


def _stream_reply(engine, turn) -> str:
    stream = engine.stream(turn)
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


def _opening(engine, persona: str | None, user, index: int) -> list[dict[str, str]]:
    """The chat's opening: the character's greeting number `index` as the first assistant turn (or nothing)."""
    try:
        greeting = engine.greeting(persona, user, index)
    except IndexError as exc:
        fail(str(exc))
    return [{"role": "assistant", "content": greeting}] if greeting else []


def _scene(engine, characters: list[str], order: str, message: str | None, user, params, show_prompt, quiet) -> None:
    """`chat --scene A,B`: each message from the user gets one round, every character replying once in the
    scene's speaker order, each with its own card and adapter; lines print as `名字: reply`."""
    from rolechat.conversation.scene import clean_reply, speaking_order

    try:
        names = engine.scene_names(characters)
        speaking_order(characters, [], order, names)  # checks the scene and the order
    except ValueError as exc:
        fail(str(exc))
    history: list[dict[str, str]] = []

    def round_of(line: str) -> None:
        said = line
        for speaker in speaking_order(characters, [*history, {"role": "user", "content": line}], order, names):
            turn = engine.prepare_scene(
                said, characters=characters, speaker=speaker, history=history, user=user, params=params
            )
            if show_prompt:
                print_parts(turn)
            if said:
                history.append({"role": "user", "content": said})
                said = ""
            if quiet:
                reply = clean_reply(engine.stream(turn).join(), names[speaker])
                typer.echo(f"{names[speaker]}: {reply}")
            else:
                console.print(f"[bold magenta]{escape(names[speaker])}:[/] ", end="", highlight=False)
                reply = clean_reply(_stream_reply(engine, turn), names[speaker])
            history.append({"role": "assistant", "content": reply, "name": speaker})

    if message is not None:
        try:
            round_of(message)
        except ValueError as exc:
            fail(str(exc))
        return
    err_console.print(f"[dim]scene: {', '.join(names.values())} · order: {order} · /reset, /exit[/]", highlight=False)
    while True:
        try:
            line = console.input("[bold cyan]scene>[/] ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if not line:
            continue
        if line in ("/exit", "/quit"):
            return
        if line == "/reset":
            history = []
            err_console.print("[dim]history cleared[/]")
            continue
        try:
            round_of(line)
        except ValueError as exc:
            err_console.print(str(exc), style="red", markup=False, highlight=False)
        except KeyboardInterrupt:
            console.print("\n[dim](stopped)[/]")


def register(app: typer.Typer) -> None:
    @app.command()
    @config_flags("llm", "chat")
    def chat(
        persona: str | None = typer.Option(None, "--persona", "-p", help="Persona name (default: base model)."),
        message: str | None = typer.Option(None, "--message", "-m", help="One-shot: print the reply and exit."),
        seed: int | None = typer.Option(None, help="Seed for reproducible sampling."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="One-shot: print only the reply."),
        user_name: str = USER_NAME_OPTION,
        user_description: str = USER_DESCRIPTION_OPTION,
        greeting: int = typer.Option(0, "--greeting", help="Which greeting opens the chat (0 = the first message)."),
        show_prompt: bool = SHOW_PROMPT_OPTION,
        scene: str | None = typer.Option(
            None, "--scene", help="A scene with several characters, comma-separated persona names (e.g. A,B)."
        ),
        order: str = typer.Option(
            "natural", "--order", help="Scene speaker order: natural (who is named speaks first) or round-robin."
        ),
        config: Overrides | None = None,
    ) -> None:
        """Chat with the base model, a persona or a character in the terminal (streaming).

        A chat with a character opens with its greeting, as the first turn the model sees. With --scene, every
        message gets one round: each character replies once, with its own card and adapter."""
        from rolechat.llm import PersonaError

        rt = load_runtime_or_fail(config["llm"])
        if not quiet:
            banner(rt)
        engine = engine_or_fail(rt, chat_overrides=config["chat"])
        user = user_persona(user_name, user_description)
        params = {"seed": seed}  # temperature, top_p, max_new_tokens...: the --llm flags set the runtime's defaults
        if scene is not None:
            characters = [c.strip() for c in scene.split(",") if c.strip()]
            _scene(engine, characters, order, message, user, params, show_prompt, quiet)
            return
        try:
            rt.manifest(persona)
        except PersonaError as exc:
            fail(str(exc))
        history = _opening(engine, persona, user, greeting)

        def prepare(line: str):
            turn = engine.prepare(line, character=persona, history=history, user=user, params=params)
            if show_prompt:
                print_parts(turn)
            return turn

        if message is not None:
            try:
                turn = prepare(message)
            except ValueError as exc:
                fail(str(exc))
            if quiet:
                typer.echo(engine.stream(turn).join())
            else:
                _stream_reply(engine, turn)
            return
        err_console.print(f"[dim]{HELP}[/]")
        for opening in history:
            console.print(opening["content"], markup=False, highlight=False, soft_wrap=True)
        while True:
            try:
                line = console.input(f"[bold cyan]{persona or 'base'}>[/] ").strip()
            except (EOFError, KeyboardInterrupt):
                console.print()
                return
            if not line:
                continue
            if line.startswith("/"):
                cmd, _, arg = line.partition(" ")
                if cmd in ("/exit", "/quit"):
                    return
                if cmd == "/reset":
                    history = _opening(engine, persona, user, greeting)
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
                        continue
                    persona = arg.strip() or None
                    history = _opening(engine, persona, user, 0)
                    err_console.print(f"[dim]persona: {persona or 'base'} (history cleared)[/]")
                    for opening in history:
                        console.print(opening["content"], markup=False, highlight=False, soft_wrap=True)
                else:
                    err_console.print(f"[dim]{HELP}[/]")
                continue
            try:
                turn = prepare(line)
            except ValueError as exc:
                err_console.print(str(exc), style="red", markup=False, highlight=False)
                continue
            try:
                reply = _stream_reply(engine, turn)
            except KeyboardInterrupt:
                console.print("\n[dim](stopped)[/]")
                continue
            history += [{"role": "user", "content": line}, {"role": "assistant", "content": reply}]

    @app.command()
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
