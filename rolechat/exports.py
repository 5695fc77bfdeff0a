"""Package namespaces whose public names are imported on first use.

A package's `__init__` that imported its submodules eagerly would make every start-up path pay for all of
them: `from rolechat.rag.config import RAGConfig` (the CLI builds a flag per config field) would pull in
LangChain and Chroma. Instead the package maps each public name to the submodule defining it:

    _EXPORTS = {"RAGConfig": "config", "KnowledgeBase": "knowledge_base"}
    __all__ = list(_EXPORTS)
    __getattr__, __dir__ = lazy(__name__, _EXPORTS)

The ground layer: imports nothing of the project.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy"]


def lazy(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level `__getattr__` and `__dir__` of `package`, whose name `n` lives in submodule
    `exports[n]`; a name is imported once, then found on the package like any other attribute."""

    def attribute(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{exports[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def names() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return attribute, names
