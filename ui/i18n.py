"""Every user-visible string of the app, in Chinese (the default) and English.

`t("key", **fields)` returns the string in the session's language (`st.session_state["lang"]`, set by
the switch in the sidebar), formatted with `fields`. A key missing from the table is a bug and raises.
The table itself is data, `ui/strings.toml` beside this file: `key = [Chinese, English]`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import streamlit as st

__all__ = ["LANGUAGES", "STRINGS", "lang", "t"]

LANGUAGES = {"zh": "中文", "en": "English"}
TABLE = Path(__file__).with_name("strings.toml")


def _load(path: Path) -> dict[str, tuple[str, str]]:
    """The table as {key: (Chinese, English)}; a malformed entry is an error naming its key."""
    table = tomllib.loads(path.read_text(encoding="utf-8"))
    for key, value in table.items():
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
            raise ValueError(f"{path}: {key} must be [Chinese, English], got {value!r}")
    return {key: (zh, en) for key, (zh, en) in table.items()}


STRINGS = _load(TABLE)


def lang() -> str:
    """The session's language code ("zh" unless the user switched)."""
    code = st.session_state.get("lang", "zh")
    return code if code in LANGUAGES else "zh"


def t(key: str, **fields: object) -> str:
    """The string `key` in the session's language, formatted with `fields`."""
    zh, en = STRINGS[key]
    text = en if lang() == "en" else zh
    return text.format(**fields) if fields else text
