"""The import rule of the house, stated once and checked by walking every source file with ast.

    settings (the ground: settings, the bundled encoder) <- llm, rag;  finetune -> llm;  conversation -> llm, rag;
    cli, api, ui on top;  nothing imports the ui or the cli.

Each layer may import only the layers listed for it in ALLOWED (and third-party packages). There are
no exceptions: a file that belongs to no layer, or an edge not in the table, fails the test. Within and across
layers, no two modules import each other (lazy imports count), and no module imports another's `_private` name.
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
        "rolechat/exports.py",
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
    ("rolechat.exports", "settings"),
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


def module_of(path: Path) -> str:
    """The import name of a source file: llm/runtime.py is rolechat.llm.runtime, ui/chat.py is ui.chat."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if parts[0] in FEATURE_FOLDERS:
        parts.insert(0, "rolechat")
    return ".".join(parts)


def product_files() -> list[Path]:
    return [path for layer in ALLOWED for path in files_of(layer)]


def modules_imported(path: Path, modules: set[str]) -> set[str]:
    """The project modules `path` imports, anywhere in the file (inside functions and under TYPE_CHECKING too: a
    lazy import still makes a circle of design). `from pkg import sub` names the submodule alone: a package's
    __init__ runs before any of its submodules whoever imports them."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            named = {f"{node.module}.{alias.name}" for alias in node.names}
            found |= named if named <= modules else {*named, node.module}
    return found & modules


def module_graph() -> dict[str, set[str]]:
    """Module -> the other project modules it imports."""
    paths = {module_of(path): path for path in product_files()}
    return {name: modules_imported(path, set(paths)) - {name} for name, path in paths.items()}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """The nodes one or more edges away from `start`."""
    found: set[str] = set()
    todo = list(graph.get(start, ()))
    while todo:
        node = todo.pop()
        if node not in found:
            found.add(node)
            todo.extend(graph.get(node, ()))
    return found


def shortest_circle(graph: dict[str, set[str]], start: str) -> list[str]:
    """The shortest path start -> ... -> start (breadth first), or [] when `start` is on no circle."""
    parent: dict[str, str] = {}
    layer = [start]
    while layer:
        following = []
        for node in layer:
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if nxt not in parent:
                    parent[nxt] = node
                    following.append(nxt)
        layer = following
    return []


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per group of modules that import each other (a strongly connected component), each written
    as a path from its first module back to it."""
    reach = {node: reachable(graph, node) for node in graph}
    circles: list[list[str]] = []
    placed: set[str] = set()
    for node in sorted(graph):
        if node in placed or node not in reach[node]:
            continue
        placed |= {other for other in reach[node] if node in reach[other]}
        circles.append(shortest_circle(graph, node))
    return circles


def test_circles_are_found_in_a_made_up_graph():
    graph = {"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": set(), "e": {"e2"}, "e2": {"e"}, "f": {"a"}}
    assert import_circles(graph) == [["a", "b", "c", "a"], ["e", "e2", "e"]]
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert shortest_circle({"a": {"b", "c"}, "b": {"c"}, "c": {"a"}}, "a") == ["a", "c", "a"]


def test_no_two_modules_of_the_project_import_each_other_even_lazily():
    circles = import_circles(module_graph())
    assert [" -> ".join(circle) for circle in circles] == []


def private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__")


def private_imports(path: Path) -> list[str]:
    """`_name`s `path` imports from project modules (a module's private helper is its own business)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and layer_of_import(node.module or ""):
            found += [f"{node.module}.{a.name}" for a in node.names if private(a.name)]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if layer_of_import(a.name) and any(map(private, a.name.split(".")))]
    return found


def test_private_names_are_found_in_a_made_up_module(tmp_path):
    source = tmp_path / "made_up.py"
    source.write_text(
        "from rolechat import __version__\n"
        "from rolechat.llm.generation import GenerationStats, _DONE\n"
        "import rolechat.rag._hidden\n"
        "from json import _default_decoder\n"
        "def later():\n"
        "    from rolechat.conversation.lorebook import _level\n",
        encoding="utf-8",
    )
    assert private_imports(source) == [
        "rolechat.llm.generation._DONE",
        "rolechat.rag._hidden",
        "rolechat.conversation.lorebook._level",
    ]


def test_no_module_imports_a_private_name_of_another():
    offenders = [f"{path.relative_to(ROOT)} imports {m}" for path in product_files() for m in private_imports(path)]
    assert offenders == []


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
