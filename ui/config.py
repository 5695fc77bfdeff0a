"""Settings of the Streamlit app: config section `[app]`, environment `ROLECHAT_APP_<FIELD>`.

Kept free of Streamlit imports so the README's config table can list it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rolechat.settings import ConfigError

__all__ = ["AppConfig", "REPO_ROOT"]

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
