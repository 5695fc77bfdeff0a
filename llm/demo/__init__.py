"""The built-in demo model: a tiny Qwen2 the project trains on Chinese text it wrote itself.

It lets the app, `rolechat chat` and the API run end to end on a machine with no model weights.
The built model ships in `llm/demo/model/`; if that folder is missing or damaged,
`demo_model_path()` rebuilds it once into the cache (with the current recipe in build.py: tens of minutes on
CPU, with a progress bar).
Importing this package is cheap: torch and transformers are imported only when building.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from rolechat.llm.demo.layout import (
    DEMO_HINT,
    DEMO_MODEL_ID,
    MARKER_FILE,
    SAMPLE_PERSONAS_DIR,
    SHIPPED_MODEL_DIR,
)

__all__ = ["DEMO_MODEL_ID", "DEMO_HINT", "SAMPLE_PERSONAS_DIR", "SHIPPED_MODEL_DIR", "demo_model_path", "is_demo_path"]

log = logging.getLogger(__name__)

_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", MARKER_FILE)


def _read_marker(path: Path) -> dict | None:
    try:
        data = json.loads((path / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_complete(path: Path) -> bool:
    if not all((path / name).is_file() and (path / name).stat().st_size > 0 for name in _REQUIRED):
        return False
    marker = _read_marker(path)
    return bool(marker) and marker.get("model_id") == DEMO_MODEL_ID


def is_demo_path(path: str | os.PathLike | None) -> bool:
    """True if `path` is a folder holding the demo model (the shipped one or a rebuilt copy)."""
    if path is None:
        return False
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return False
    marker = _read_marker(folder)
    return bool(marker) and marker.get("model_id") == DEMO_MODEL_ID


def demo_model_path() -> Path:
    """The folder of a usable demo model: the shipped one, else a copy built once into the cache."""
    if _is_complete(SHIPPED_MODEL_DIR):
        return SHIPPED_MODEL_DIR
    from rolechat.settings import cache_dir

    cached = cache_dir() / "demo-model"
    if _is_complete(cached):
        return cached
    log.warning(
        "shipped demo model missing or incomplete at %s; building it into %s (tens of minutes)",
        SHIPPED_MODEL_DIR,
        cached,
    )
    from rolechat.llm.demo.build import build

    build(cached)
    return cached
