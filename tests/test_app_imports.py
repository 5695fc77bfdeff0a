"""The app's import rules: app.py and ui/ sit on top (llm, rag, rolechat.config), never import finetune
(training is a child process), and nothing below imports them."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_app_and_ui_import_only_the_layers_below_and_never_finetune():
    offenders = []
    for path in [ROOT / "app.py", *sorted((ROOT / "ui").rglob("*.py"))]:
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top == "finetune" or (top == "rolechat" and not name.startswith("rolechat.config")):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_nothing_below_the_app_imports_it():
    offenders = [f"{path.relative_to(ROOT)} imports {name}"
                 for package in ("llm", "rag", "finetune", "rolechat")
                 for path in sorted((ROOT / package).rglob("*.py"))
                 for name in imported_modules(path) if name.split(".")[0] in ("ui", "app")]
    assert offenders == []
