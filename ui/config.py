"""Settings of the Streamlit app: config section `[app]`, environment `ROLECHAT_APP_<FIELD>`.

Kept free of Streamlit imports so the README's config table can list it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rolechat import settings
from rolechat.settings import ConfigError
from ui.password import parse_hash

__all__ = ["AppConfig", "REPO_ROOT", "app_flags"]

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class AppConfig:
    """What the app does on its own (the first-run sample knowledge base) and who may use it for what."""

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

    password_hash: str = field(
        default="",
        metadata={
            "help": (
                "Salted hash of the app's password, printed by `python -m ui.password` (scrypt$... or "
                "pbkdf2_sha256$...), never the password itself. When set, every page asks for the password; "
                "required when server.address is not loopback."
            )
        },
    )
    path_roots: list[str] = field(
        default_factory=list,
        metadata={
            "help": (
                "Folders that paths typed into the app (knowledge-base folders, training datasets) must lie in, "
                "after resolving symlinks and `..`. Empty: any path while the app is only on loopback without a "
                "password, none once it is served to others. Uploads are always allowed. Variable: comma-separated."
            )
        },
    )

    def __post_init__(self) -> None:
        if not str(self.sample_kb_name).strip():
            raise ConfigError("app.sample_kb_name must not be empty")
        if self.password_hash:
            try:
                parse_hash(self.password_hash)
            except ValueError as exc:
                raise ConfigError(f"app.password_hash: {exc}") from None
        if isinstance(self.path_roots, str) or not isinstance(self.path_roots, (list, tuple)):
            raise ConfigError(f'app.path_roots must be a list of folders, e.g. ["/data/docs"], got {self.path_roots!r}')
        for root in self.path_roots:
            if not isinstance(root, str) or not root.strip():
                raise ConfigError(f"app.path_roots: every entry must be a folder path, got {root!r}")
            if not Path(root.strip()).expanduser().is_absolute():
                raise ConfigError(f"app.path_roots: {root!r} is not an absolute path (start it with / or ~)")
        self.path_roots = [root.strip() for root in self.path_roots]

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
