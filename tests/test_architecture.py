"""The import rules of the house, checked by walking the source with ast."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "rag": {"llm", "finetune", "app"},
    "llm": {"rag", "finetune", "app"},
    "finetune": {"rag", "app"},
}
ALLOWED_FROM_ROLECHAT = {"rolechat", "rolechat.config"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_forbidden_import_edges_are_absent(package):
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imports_of(path):
            top = name.split(".")[0]
            if top in FORBIDDEN[package]:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
            if top == "rolechat" and name not in ALLOWED_FROM_ROLECHAT and not name.startswith("rolechat.config"):
                offenders.append(f"{path.relative_to(ROOT)} imports {name} (only rolechat.config is below {package})")
    assert offenders == []


@pytest.mark.parametrize("package", ["llm", "rag", "finetune"])
def test_public_surface_is_declared_and_importable(package):
    module = importlib.import_module(package)
    assert module.__all__, f"{package}.__all__ is empty"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


def test_cli_help_does_not_import_heavy_libraries():
    import subprocess
    import sys

    code = ("import sys; import rolechat.cli; heavy = [m for m in ('torch', 'transformers', 'peft', 'chromadb', "
            "'sentence_transformers', 'langchain_chroma') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == ""
