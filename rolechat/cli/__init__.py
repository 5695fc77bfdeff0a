"""The `rolechat` command line. Each command group lives in its own module and registers itself here.

Heavy libraries (torch, transformers, chromadb, sentence-transformers) are imported inside the
command functions, so `rolechat --help` stays instant.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from rolechat import settings
from rolechat.cli import common

__all__ = ["app", "main"]

app = typer.Typer(
    name="rolechat",
    help="Chinese role-play and knowledge chat on local models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    config_path: Path | None = typer.Option(
        None, "--config", help="Config file (default: $ROLECHAT_HOME/rolechat.toml)."
    ),
) -> None:
    common.set_config_path(config_path)


def _register() -> None:
    from rolechat.cli import character, chat, export, kb, lorebook, scene, serve, train

    for module in (chat, kb, train, serve, character, lorebook, scene, export):
        module.register(app)
    from rolechat.cli import classify

    classify.register(app)


_register()


def main() -> None:
    settings.set_process_env()
    try:
        app()
    except settings.ConfigError as exc:
        common.err_console.print(f"[bold red]config error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
