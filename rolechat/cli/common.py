"""Shared pieces of the command line: the --config file, the console, error exits."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from rolechat import settings

console = Console()
err_console = Console(stderr=True)

_state: dict[str, Any] = {"config": None}


def set_config_path(path: Path | None) -> None:
    _state["config"] = path


def file_data() -> dict[str, Any]:
    """The parsed config file in force ({} when there is none)."""
    return settings.load_file(settings.config_file(_state["config"]))


def build(section: str, overrides: dict[str, Any] | None = None) -> Any:
    """The `section` config from file < environment < `overrides` (the command's flags); bad values end the
    command with the error naming the setting."""
    from rolechat.cli.options import section_class

    try:
        return settings.build(section_class(section), section, file_data(), overrides)
    except ValueError as exc:  # ConfigError included: it names the file, variable or flag
        fail(f"invalid [{section}] setting: {exc}")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a clear error (no traceback) and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)  # paths stay whole
    raise typer.Exit(code)


def listed(rows: list, as_json: bool, empty: str) -> bool:
    """`rows` as JSON with --json, or `empty` when there are none: True when that was all there is to print."""
    if as_json:
        console.print_json(json.dumps(rows, ensure_ascii=False))
        return True
    if not rows:
        console.print(empty)
    return not rows


def done_or_fail(action, errors: tuple[type[Exception], ...], done: str) -> None:
    """Run `action()`; an error of `errors` ends the command with its message, else `done` is printed."""
    try:
        action()
    except errors as exc:
        fail(str(exc))
    console.print(escape(done), highlight=False)


def print_parts(turn) -> None:
    """--show-prompt: every part of the prompt in full, with its token count and why it is there (dropped and
    left-out ones marked), to stderr (`--prompt-file` also writes the exact rendered text, `conversation.report`)."""
    from rolechat.conversation.assembly import NOT_SENT

    err_console.rule("what the model saw", align="left")
    for part in turn.parts:
        sent = "not sent" if part.kind in NOT_SENT else "sent" if part.included else "[yellow]dropped[/]"
        head = f"[bold]{escape(part.kind)}[/] | {escape(part.label)} | {part.tokens} tokens | {sent}"
        if part.source:
            head += f" | book {escape(part.source)}"
        if part.why:
            head += f" | {escape(part.why)}"
        err_console.print(head, highlight=False, soft_wrap=True)
        err_console.print(part.text, markup=False, highlight=False, soft_wrap=True)
    if turn.fixed_reply is None:
        err_console.print(
            f"prompt: {turn.prompt_tokens} tokens of {turn.budget} the context leaves (persona: "
            f"{turn.persona or 'base'})",
            highlight=False,
        )


def or_fail(step: Callable[[], object]) -> None:
    """Run a one-shot step (`chat -m`): a ValueError ends the command with its message."""
    try:
        step()
    except ValueError as exc:
        fail(str(exc))


def typed_lines(prompt: Callable[[], str]) -> Iterator[str]:
    """The lines the user types at `prompt()` (markup), stripped, blank ones skipped, until end of input or Ctrl-C."""
    while True:
        try:
            line = console.input(prompt()).strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if line:
            yield line


def attempt(step: Callable[[], object]) -> None:
    """One step of an interactive chat: a ValueError is said in red and the chat goes on; Ctrl-C stops the
    step only."""
    try:
        step()
    except ValueError as exc:
        err_console.print(str(exc), style="red", markup=False, highlight=False)
    except KeyboardInterrupt:
        console.print("\n[dim](stopped)[/]")
