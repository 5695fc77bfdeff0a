"""Commands of this group register themselves on the root app."""

import typer


def register(app: typer.Typer) -> None:
    pass
