"""What the pages share: the config file, the model runtime (loaded once per process), persona syncing,
and the session keys that must survive page switches.

The runtime is a `st.cache_resource` keyed by everything that decides which model loads (the home
folder, the `[llm]` section, the `ROLECHAT_LLM_*` variables), with one entry at most: a changed
setting replaces the model instead of keeping two in memory.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import weakref
from pathlib import Path
from typing import Any

import streamlit as st

from rolechat import settings as rc_config
from ui.config import REPO_ROOT, AppConfig, app_flags

__all__ = [
    "AppConfig",
    "app_config",
    "file_data",
    "runtime",
    "sync_personas",
    "persona_signature",
    "keep_widget_state",
    "KEPT_KEYS",
    "REPO_ROOT",
    "app_dir",
]

log = logging.getLogger(__name__)

# Widget keys whose values must survive visiting another page (Streamlit drops the state of widgets
# that were not drawn in a run unless it is re-assigned).
KEPT_KEYS = (
    "lang",
    "persona",
    "user_name",
    "user_description",
    "greeting",
    "tone_clf",
    "scene",
    "next_speaker",
    "chat_books",
    "chat_scenario",
    "chat_note",
    "chat_note_depth",
    "kb_on",
    "kb_name",
    "k",
    "mode",
    "condense",
    "temperature",
    "top_p",
    "max_new_tokens",
)


def app_config() -> AppConfig:
    """The `[app]` settings in force (config file < ROLECHAT_APP_* variables < flags after `--`)."""
    return rc_config.build(AppConfig, "app", file_data(), app_flags(script_args()))


def script_args() -> list[str]:
    """The flags after `streamlit run app.py --` (Streamlit hands them to the script as sys.argv[1:]);
    none when the app runs some other way (tests drive it with pytest's own argv)."""
    launched = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    return sys.argv[1:] if launched == (REPO_ROOT / "app.py").resolve() else []


def app_dir() -> Path:
    """The app's own files under the home folder: uploads, training logs, first-run markers."""
    path = rc_config.home() / "app"
    path.mkdir(parents=True, exist_ok=True)
    return path


def keep_widget_state() -> None:
    """Re-assign kept widget values so a page that doesn't draw them doesn't reset them."""
    for key in KEPT_KEYS:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def file_data() -> dict[str, Any]:
    """The parsed config file in force ({} when there is none); raises ConfigError when it is invalid."""
    return rc_config.load_file(rc_config.config_file())


def _runtime_key() -> str:
    env = sorted((k, v) for k, v in os.environ.items() if k.startswith("ROLECHAT_LLM_"))
    return json.dumps([str(rc_config.home()), file_data().get("llm", {}), env], sort_keys=True, default=str)


@st.cache_resource(max_entries=1, show_spinner=False)
def _load_runtime(key: str):
    from rolechat.llm import LLMConfig, load_runtime

    log.info("loading the model runtime for %s", key)
    return load_runtime(rc_config.build(LLMConfig, "llm", file_data()))


_synced: weakref.WeakKeyDictionary[Any, tuple] = weakref.WeakKeyDictionary()


def persona_signature(roots: list[Path]) -> tuple:
    """What a persona rescan depends on: every persona folder's manifest and adapter files with mtimes."""
    sig = []
    for root in roots:
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            for name in ("persona.json", "adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
                path = folder / name
                try:
                    sig.append((str(path), path.stat().st_mtime_ns))
                except OSError:
                    sig.append((str(path), None))
    return tuple(sig)


def sync_personas(rt, force: bool = False) -> None:
    """Rescan persona folders when they changed on disk (a training run finished, a folder was removed)."""
    sig = persona_signature(rt.persona_roots())
    if force or _synced.get(rt) != sig:
        rt.reload_personas()
        _synced[rt] = sig


def runtime():
    """The loaded runtime, with its persona list up to date. Raises LoadError/ConfigError/ValueError."""
    rt = _load_runtime(_runtime_key())
    sync_personas(rt)
    return rt
