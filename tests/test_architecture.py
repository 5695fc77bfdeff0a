"""The import rule of the house, stated once and checked by walking every source file with ast.

    settings (the ground: settings, the bundled encoder) <- llm, rag;  finetune -> llm;  conversation -> llm, rag;
    cli, api, ui on top;  nothing imports the ui or the cli.

Each layer may import only the layers listed for it in ALLOWED (and third-party packages). There are
no exceptions: a file that belongs to no layer, or an edge not in the table, fails the test.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ALLOWED: dict[str, set[str]] = {
    "settings": set(),
    "llm": {"settings"},
    "rag": {"settings"},
    "finetune": {"settings", "llm"},
    "conversation": {"settings", "llm", "rag"},
    "api": {"settings", "llm", "rag", "finetune", "conversation"},
    "cli": {"settings", "llm", "rag", "finetune", "conversation", "api"},
    "ui": {"settings", "llm", "rag", "finetune", "conversation"},
}
# where each layer's source lives (the rolechat.* import name -> folder mapping is pyproject's package-dir)
SOURCES: dict[str, list[str]] = {
    "settings": [
        "rolechat/__init__.py",
        "rolechat/settings.py",
        "rolechat/limits.py",
        "rolechat/encoder.py",
        "rolechat/charsmap.py",
    ],
    "llm": ["llm"],
    "rag": ["rag"],
    "finetune": ["finetune"],
    "conversation": ["rolechat/conversation"],
    "api": ["rolechat/api.py", "rolechat/api"],
    "cli": ["rolechat/cli", "rolechat/__main__.py"],
    "ui": ["ui", "app.py"],
}
PREFIXES = [
    ("rolechat.settings", "settings"),
    ("rolechat.encoder", "settings"),
    ("rolechat.charsmap", "settings"),
    ("rolechat.limits", "settings"),
    ("rolechat.llm", "llm"),
    ("rolechat.rag", "rag"),
    ("rolechat.finetune", "finetune"),
    ("rolechat.conversation", "conversation"),
    ("rolechat.api", "api"),
    ("rolechat.cli", "cli"),
    ("rolechat.__main__", "cli"),
    ("ui", "ui"),
    ("app", "ui"),
]
FEATURE_FOLDERS = ("llm", "rag", "finetune")


def layer_of_import(name: str) -> str | None:
    """The layer an imported module belongs to; None for third-party modules."""
    if name == "rolechat":
        return "settings"  # the package itself: a version string and a docstring
    for prefix, layer in PREFIXES:
        if name == prefix or name.startswith(prefix + "."):
            return layer
    return None


def files_of(layer: str) -> list[Path]:
    out: list[Path] = []
    for rel in SOURCES[layer]:
        path = ROOT / rel
        out.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else [])
    return out


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.relative_to(ROOT)}: relative import (write the absolute rolechat.* name)"
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def edges() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {layer: set() for layer in ALLOWED}
    for layer in ALLOWED:
        for path in files_of(layer):
            for name in imports_of(path):
                target = layer_of_import(name)
                if target and target != layer:
                    found[layer].add(target)
    return found


def test_every_source_module_belongs_to_exactly_one_layer():
    owners: dict[Path, list[str]] = {}
    for layer in ALLOWED:
        for path in files_of(layer):
            owners.setdefault(path, []).append(layer)
    source = [
        *(ROOT / "rolechat").rglob("*.py"),
        *(p for f in (*FEATURE_FOLDERS, "ui") for p in (ROOT / f).rglob("*.py")),
        ROOT / "app.py",
    ]
    unowned = [str(p.relative_to(ROOT)) for p in source if p not in owners]
    doubly = [str(p.relative_to(ROOT)) for p, layers in owners.items() if len(layers) > 1]
    assert unowned == [] and doubly == []


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(layer):
    offenders = [
        f"{path.relative_to(ROOT)} imports {name} ({layer_of_import(name)})"
        for path in files_of(layer)
        for name in sorted(imports_of(path))
        if layer_of_import(name) not in (None, layer) and layer_of_import(name) not in ALLOWED[layer]
    ]
    assert offenders == []


def test_nothing_imports_the_ui_or_the_cli():
    importers = sorted(
        layer for layer, targets in edges().items() if targets & {"ui", "cli"} and layer not in ("ui", "cli")
    )
    assert importers == []
    assert all("ui" not in allowed and ("cli" not in allowed) for allowed in ALLOWED.values())


def test_the_package_level_import_graph_has_no_loop():
    graph = edges()
    seen: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        if seen.get(node) == 1:
            raise AssertionError("import loop: " + " -> ".join([*trail, node]))
        if seen.get(node) == 2:
            return
        seen[node] = 1
        for nxt in sorted(graph[node]):
            visit(nxt, [*trail, node])
        seen[node] = 2

    for node in sorted(graph):
        visit(node, [])


def test_the_feature_folders_are_only_imported_under_the_rolechat_name():
    """`import llm` would load a second copy of the runtime, or PyPI's unrelated `llm` package."""
    everything = [p for p in ROOT.rglob("*.py") if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)]
    offenders = [
        f"{p.relative_to(ROOT)} imports {name}"
        for p in everything
        for name in imports_of(p)
        if name.split(".")[0] in FEATURE_FOLDERS
    ]
    assert offenders == []


def test_the_ground_imports_nothing_of_the_project_above_it():
    for path in files_of("settings"):  # the bundled encoder reads the cache folder's setting, and the charsmap
        assert {layer_of_import(n) for n in imports_of(path)} <= {None, "settings"}, path


@pytest.mark.parametrize("package", ["rolechat.llm", "rolechat.rag", "rolechat.finetune", "rolechat.conversation"])
def test_public_surface_is_declared_and_importable(package):
    module = importlib.import_module(package)
    assert module.__all__, f"{package}.__all__ is empty"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


def test_the_wheel_installs_one_top_level_import_package():
    """The distribution must never install a top-level `llm` (PyPI's `llm` owns that name)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = project["tool"]["setuptools"]["packages"]
    assert {p.split(".")[0] for p in packages} == {"rolechat"}
    mapped = project["tool"]["setuptools"]["package-dir"]
    assert {f"rolechat.{f}": f for f in FEATURE_FOLDERS}.items() <= mapped.items()
    # every folder with an __init__.py is listed, so the wheel misses none of them
    on_disk = {
        "rolechat." + ".".join(p.parent.relative_to(ROOT).parts) if p.parent.parts[-1:] != ("rolechat",) else "rolechat"
        for p in ROOT.glob("**/__init__.py")
        if p.parent.relative_to(ROOT).parts[0] in (*FEATURE_FOLDERS,)
    }
    on_disk |= {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "rolechat").rglob("__init__.py")}
    assert on_disk <= set(packages)


def test_cli_help_does_not_import_heavy_libraries():
    code = (
        "import sys; import rolechat.cli; heavy = [m for m in ('torch', 'transformers', 'peft', 'chromadb', "
        "'sentence_transformers', 'langchain_chroma') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == ""
