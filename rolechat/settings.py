"""Where rolechat keeps things and how settings are layered.

`ROLECHAT_HOME` (default `~/.rolechat`) roots every on-disk path: personas (adapters), knowledge
bases, training runs, caches. Settings come from, in increasing precedence:

1. defaults of each package's config dataclass,
2. the config file (`$ROLECHAT_HOME/rolechat.toml`, or the file named by `--config`),
3. environment variables `ROLECHAT_<SECTION>_<FIELD>` (e.g. `ROLECHAT_LLM_MODEL`),
4. CLI flags / explicit keyword overrides.

This module imports nothing heavy and nothing from the feature packages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "ConfigError",
    "home",
    "config_file",
    "load_file",
    "build",
    "personas_dir",
    "classifiers_dir",
    "kb_dir",
    "runs_dir",
    "cache_dir",
    "set_offline_env",
    "set_process_env",
    "quiet_libraries",
    "quiet_loading",
    "Flag",
    "flags",
    "to_args",
]

T = TypeVar("T")

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}

# Idle OpenMP threads sleep instead of spinning. A batched decode step is hundreds of small parallel operations;
# with spinning threads each one can cost a whole time slice when another process holds a core (measured on the
# project's busy 2-core machine: a lone reply 8x and a batch of 32 30x slower with 2 threads; docs/benchmarks.md).
PROCESS_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


class ConfigError(ValueError):
    """A setting is invalid; the message names the source (file, variable or flag) and the key."""


def set_offline_env() -> None:
    """Keep every library off the network unless the user already decided otherwise."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def set_process_env() -> None:
    """The environment of a rolechat process (the CLI, the app): offline, and OpenMP threads that wait without
    spinning (`PROCESS_ENV`), unless the user already set them, and no third-party noise (`quiet_libraries`).
    Call it before torch is imported."""
    set_offline_env()
    for key, value in PROCESS_ENV.items():
        os.environ.setdefault(key, value)
    quiet_libraries()


# Loggers of libraries whose warnings a rolechat user cannot act on: bitsandbytes' "Failed to load CPU
# gemm_4bit_forward from kernels-community" on every model load (4-bit is never used on a CPU here),
# transformers' "Token indices sequence length is longer than ..." (rolechat fits every prompt to the
# context itself), jieba's "Building prefix dict" lines.
QUIET_LOGGERS = ("bitsandbytes", "transformers", "jieba", "httpx", "chromadb.telemetry")
# Deprecation and future warnings raised inside these libraries are for their callers' authors, not for users.
QUIET_MODULES = r"(transformers|peft|torch|accelerate|bitsandbytes|langchain\w*|chromadb|jieba|onnxruntime)(\.|$)"


def quiet_libraries() -> None:
    """Silence third-party warnings a user cannot act on (`QUIET_LOGGERS`, `QUIET_MODULES`); errors still
    show, and so does everything rolechat logs (a TRANSFORMERS_VERBOSITY set by the user wins)."""
    import logging
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers configures its logger
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=QUIET_MODULES)
    warnings.filterwarnings("ignore", message=".*sunset.*", category=Warning)  # langchain-community's notice


@contextlib.contextmanager
def quiet_loading():
    """Load a transformers model without its "Loading weights" bar (it would land in the middle of rolechat's own
    progress output) or its load report (a head-less checkpoint's unused pooler, a new head: on purpose)."""
    from transformers.utils import logging as hf_logging

    level, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()


def home() -> Path:
    """The root of every on-disk path (created on first use)."""
    root = Path(os.environ.get("ROLECHAT_HOME") or Path.home() / ".rolechat").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _sub(name: str) -> Path:
    path = home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def personas_dir() -> Path:
    """Trained persona adapters, one folder each."""
    return _sub("personas")


def classifiers_dir() -> Path:
    """Text-classifier adapters, one folder each (kept apart so they are never taken for personas)."""
    return _sub("classifiers")


def kb_dir() -> Path:
    """Knowledge bases, one folder each."""
    return _sub("kb")


def runs_dir() -> Path:
    """Training runs: checkpoints, logs, progress files."""
    return _sub("runs")


def cache_dir() -> Path:
    """Caches that can be rebuilt (exported embedders, jieba dictionaries, the demo model)."""
    return _sub("cache")


def config_file(explicit: str | os.PathLike | None = None) -> Path | None:
    """The config file in force: `explicit` if given (must exist), else `$ROLECHAT_HOME/rolechat.toml` if present."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    path = home() / "rolechat.toml"
    return path if path.is_file() else None


def load_file(path: Path | None) -> dict[str, Any]:
    """Parse the TOML config file into {section: {key: value}} (plus "__file__": its path); {} when there is none."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            return {**tomllib.load(fh), "__file__": str(path)}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def _coerce(raw: str, kind: Any, where: str) -> Any:
    """Turn an environment string into the field's type."""
    origin = typing.get_origin(kind)
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and args:
        if raw.strip().lower() in ("", "none", "null"):
            return None
        return _coerce(raw, args[0], where)
    if kind is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true/false, got {raw!r}")
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise ConfigError(f"{where}: expected {kind.__name__}, got {raw!r}") from None
    if origin in (list, tuple) or kind in (list, tuple):
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def build(
    cls: type[T],
    section: str,
    file_data: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    source: str | None = None,
) -> T:
    """Instantiate dataclass `cls` from defaults < file section < environment < overrides.

    `overrides` entries whose value is None are ignored (an unset CLI flag).
    Unknown keys in the file section are an error naming the key, so typos don't pass silently.
    """
    source = source or str((file_data or {}).get("__file__", "config file"))
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in dict((file_data or {}).get(section, {})).items():
        if key not in fields:
            raise ConfigError(f"{source}: [{section}] has unknown key {key!r}; known: {', '.join(sorted(fields))}")
        values[key] = value
    prefix = f"ROLECHAT_{section.upper()}_"
    for name in fields:
        env_name = prefix + name.upper()
        if env_name in os.environ:
            values[name] = _coerce(os.environ[env_name], hints.get(name, str), env_name)
    for key, value in dict(overrides or {}).items():
        if value is None:
            continue
        if key not in fields:
            raise ConfigError(f"unknown {section} setting {key!r}")
        values[key] = value
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source} [{section}] (or ROLECHAT_{section.upper()}_*): {exc}") from exc


# -- command-line flags, generated from the config dataclasses -------------------------------------------


@dataclasses.dataclass(frozen=True)
class Flag:
    """The command-line flag of one config field: `--learning-rate` for `train.learning_rate`.

    The CLI (rolechat.cli.options), the app's flags after `--` and the training page's command builder all
    derive their flags from these, so a field can never lack a flag or have two spellings.
    """

    section: str
    field: str
    kind: type  # bool, int, float, str or list (of str)
    help: str
    default: Any

    @property
    def name(self) -> str:
        return "--" + self.field.replace("_", "-")

    def parse(self, raw: Any) -> Any:
        """A flag's value as the field wants it (a comma-separated string becomes a list)."""
        if raw is None:
            return None
        if self.kind is list and isinstance(raw, str):
            return [part.strip() for part in raw.split(",") if part.strip()]
        return raw

    def args(self, value: Any) -> list[str]:
        """The command-line arguments that set this field to `value` ([] for None)."""
        if value is None:
            return []
        if self.kind is bool:
            return [self.name if value else "--no-" + self.name[2:]]
        if self.kind is list:
            return [self.name, ",".join(str(v) for v in value)]
        return [self.name, str(value)]


def _kind(hint: Any) -> type:
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and args:
        return _kind(args[0])
    if hint in (list, tuple) or origin in (list, tuple):
        return list
    if hint in (bool, int, float, str):
        return hint
    raise TypeError(f"config field type {hint!r} has no command-line form")


def setting(default: Any = dataclasses.MISSING, help: str = "", *, factory: Callable[[], Any] | None = None) -> Any:
    """A config dataclass field: its default (`factory` makes a mutable one per instance) and the help text that
    the command-line flags and the README's settings table show (`flags`)."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def flags(cls: type, section: str) -> list[Flag]:
    """One Flag per public field of config dataclass `cls`, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        out.append(Flag(section, f.name, _kind(hints[f.name]), str(f.metadata.get("help", "")), default))
    return out


def to_args(cls: type, section: str, values: Mapping[str, Any]) -> list[str]:
    """Command-line arguments for the given field values of `cls` (None values are left out).

    Unknown field names are an error, so a caller can't build a flag the command would reject.
    """
    by_field = {f.field: f for f in flags(cls, section)}
    unknown = sorted(set(values) - set(by_field))
    if unknown:
        raise ConfigError(f"unknown {section} setting(s): {', '.join(unknown)}")
    out: list[str] = []
    for name, value in values.items():
        out += by_field[name].args(value)
    return out
