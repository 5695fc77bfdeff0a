"""Command-line options generated from the config dataclasses: one flag per field, never written by hand.

    @app.command()
    @config_flags("train", "llm", aliases={"train.learning_rate": ["--lr"], "llm.model": ["--base"]})
    def train(data: Path = typer.Option(...), config: Overrides = None): ...

The decorated command gets one `--field-name` option per field of each named section's dataclass (a bool
field gets `--x/--no-x`, a list field a comma-separated value), and receives the flags the user gave as
`config = {"train": {"learning_rate": 0.001}, "llm": {...}}`, ready for `settings.build(..., overrides)`:
config file < environment < these flags. When two sections (or a hand-written option) would claim the same
flag, the generated one is prefixed with its section (`--rag-batch-size`).

The dataclasses are imported when the CLI is built, so their modules must stay free of heavy imports.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

import typer

from rolechat import settings

__all__ = ["SECTIONS", "Overrides", "config_flags", "flag_table", "section_class"]

Overrides = dict[str, dict[str, Any]]

# config section -> "module:Class". The README's config table lists these plus the app's own section.
SECTIONS: dict[str, str] = {
    "llm": "rolechat.llm.config:LLMConfig",
    "rag": "rolechat.rag.config:RAGConfig",
    "chat": "rolechat.conversation.config:ConversationConfig",
    "train": "rolechat.finetune.config:TrainConfig",
    "classify": "rolechat.finetune.classify_config:ClassifyConfig",
    "server": "rolechat.api.config:ServerConfig",
}


def section_class(section: str) -> type:
    module, _, name = SECTIONS[section].partition(":")
    return getattr(importlib.import_module(module), name)


def _declared_flags(param: inspect.Parameter) -> set[str]:
    info = param.default
    decls = getattr(info, "param_decls", None) or ()
    names = {d for decl in decls for d in decl.split("/") if d.startswith("-")}
    return names or {"--" + param.name.replace("_", "-")}


def flag_table(sections: Sequence[str], taken: set[str] = frozenset(), aliases: Mapping[str, Sequence[str]] = ()):
    """[(param_name, Flag, option declarations)] for the fields of `sections`, clashes prefixed."""
    specs = [spec for section in sections for spec in settings.flags(section_class(section), section)]
    counts: dict[str, int] = {}
    for spec in specs:
        counts[spec.name] = counts.get(spec.name, 0) + 1
    aliases = dict(aliases or {})
    rows = []
    for spec in specs:
        name = spec.name
        short = "-" + spec.field.replace("_", "-")
        if counts[name] > 1 or name in taken or short in taken:
            name = f"--{spec.section}-{spec.field.replace('_', '-')}"
        extra = list(aliases.get(f"{spec.section}.{spec.field}", []))
        if spec.kind is bool:
            negative = "--no-" + name[2:]
            decls = [f"{name}/{negative}", *extra]
        else:
            decls = [name, *extra]
        rows.append((f"{spec.section}__{spec.field}", spec, decls))
    return rows


def _annotation(spec: settings.Flag) -> Any:
    return Optional[str] if spec.kind is list else Optional[spec.kind]  # noqa: UP045 (typer reads the annotation)


def _help(spec: settings.Flag) -> str:
    default = ",".join(spec.default) if isinstance(spec.default, list) else spec.default
    shown = "" if default in ("", None, []) else f" [config: {spec.section}.{spec.field}, default {default}]"
    return f"{spec.help}{shown or f' [config: {spec.section}.{spec.field}]'}"


def config_flags(*sections: str, aliases: Mapping[str, Sequence[str]] | None = None) -> Callable:
    """Decorate a typer command with one option per config field of `sections` (see the module docstring)."""

    def wrap(func: Callable) -> Callable:
        sig = inspect.signature(func, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "config"]
        taken = {flag for p in own for flag in _declared_flags(p)}
        rows = flag_table(sections, taken, aliases or {})
        generated = [
            inspect.Parameter(
                param,
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(
                    None, *decls, help=_help(spec), show_default=False, rich_help_panel=f"[{spec.section}] settings"
                ),
                annotation=_annotation(spec),
            )
            for param, spec, decls in rows
        ]
        by_param = {param: spec for param, spec, _ in rows}

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            overrides: Overrides = {section: {} for section in sections}
            for param, spec in by_param.items():
                value = spec.parse(kwargs.pop(param, None))
                if value is not None:
                    overrides[spec.section][spec.field] = value
            return func(**kwargs, config=overrides)

        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + generated
        wrapper.__signature__ = sig.replace(parameters=params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        wrapper.config_sections = tuple(sections)
        return wrapper

    return wrap
