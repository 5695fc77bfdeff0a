"""Print (or --write into README.md) the one table of every config key, from the config dataclasses.

.venv/bin/python scripts/config_table.py --write
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"


def sections():
    """Every config section: the CLI's (rolechat.cli.options.SECTIONS, each field a generated flag) and the
    app's own `[app]` (flags after `streamlit run app.py --`)."""
    from rolechat.cli.options import SECTIONS, section_class
    from ui.config import AppConfig

    return [*((name, section_class(name)) for name in SECTIONS), ("app", AppConfig)]


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return ""
    text = repr(value) if not isinstance(value, bool) else str(value).lower()
    return f"`{text}`" if text not in ("''", "[]") else "(empty)"


def table() -> str:
    rows = ["| key | environment variable | default | meaning |", "|---|---|---|---|"]
    for section, cls in sections():
        for f in dataclasses.fields(cls):
            if f.name.startswith("_"):
                continue
            meaning = str(f.metadata.get("help", "")).replace("|", "\\|").replace("\n", " ")
            rows.append(
                f"| `{section}.{f.name}` | `ROLECHAT_{section.upper()}_{f.name.upper()}` | {_default(f)} | {meaning} |"
            )
    return "\n".join(rows)


def main() -> None:
    text = table()
    if "--write" not in sys.argv:
        print(text)
        return
    readme = ROOT / "README.md"
    body = readme.read_text(encoding="utf-8")
    head, rest = body.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{text}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()
