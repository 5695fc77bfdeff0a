"""The README keeps its promises: two newcomer commands first, and every config key in the table."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_opens_with_the_two_newcomer_commands():
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    assert blocks[0].strip() == (
        "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && .venv/bin/streamlit run app.py"
    )
    assert blocks[1].strip() == (
        "python3 -m venv .venv && .venv/bin/pip install -r requirements-dev.txt && .venv/bin/python -m pytest"
    )
    assert README.index("```bash") < README.index("## ")  # nothing comes before them but the title
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert blocks[1].strip() in ci


def test_config_table_lists_every_key():
    sys.path.insert(0, str(ROOT / "scripts"))
    import config_table

    assert config_table.table() in README, "README config table is stale: run scripts/config_table.py --write"


def test_requirements_pin_cpu_torch_first():
    lines = [
        line
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "torch==2.13.0"
