"""Settings of the Streamlit app: config section `[app]`, environment `ROLECHAT_APP_<FIELD>`.

Kept free of Streamlit imports so the README's config table can list it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rolechat import settings
from rolechat.settings import ConfigError

__all__ = ["AppConfig", "REPO_ROOT", "app_flags"]

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class AppConfig:
    """What the app does on its own: the first-run sample knowledge base."""

    sample_kb: bool = field(
        default=True,
        metadata={
            "help": ("On first run, when no knowledge base exists, index the sample folder into one (once per home).")
        },
    )
    sample_kb_name: str = field(default="示例知识库", metadata={"help": "Name of the sample knowledge base."})
    sample_dir: str = field(
        default="",
        metadata={
            "help": ("Folder indexed into the sample knowledge base; empty = the knowledge/ folder next to app.py.")
        },
    )

    def __post_init__(self) -> None:
        if not str(self.sample_kb_name).strip():
            raise ConfigError("app.sample_kb_name must not be empty")

    @property
    def sample_folder(self) -> Path:
        return Path(self.sample_dir).expanduser() if self.sample_dir else REPO_ROOT / "knowledge"


def app_flags(argv: list[str]) -> dict:
    """`[app]` settings given as flags after `--` (`streamlit run app.py -- --sample-kb-name 样例`), from the
    same table as the CLI's flags; highest precedence, above the config file and ROLECHAT_APP_*."""
    import argparse

    parser = argparse.ArgumentParser(prog="streamlit run app.py --", exit_on_error=False, add_help=False)
    specs = settings.flags(AppConfig, "app")
    for spec in specs:
        if spec.kind is bool:
            parser.add_argument(spec.name, dest=spec.field, action=argparse.BooleanOptionalAction, default=None)
        else:
            parser.add_argument(spec.name, dest=spec.field, default=None, type=str if spec.kind is list else spec.kind)
    try:
        values, unknown = parser.parse_known_args(argv)
    except (argparse.ArgumentError, ValueError) as exc:
        raise ConfigError(f"app flags: {exc}") from None
    if unknown:
        raise ConfigError(f"app flags: unknown {' '.join(unknown)} (known: {', '.join(s.name for s in specs)})")
    by_field = {s.field: s for s in specs}
    return {k: by_field[k].parse(v) for k, v in vars(values).items() if v is not None}
