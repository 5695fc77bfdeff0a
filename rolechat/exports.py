"""Package namespaces whose public names are imported on first use.

A package's `__init__` that imported its submodules eagerly would make every start-up path pay for all of
them: `from rolechat.rag.config import RAGConfig` (the CLI builds a flag per config field) would pull in
LangChain and Chroma. Instead the package lists the names each submodule exports, as the imports it replaces
would:

    _EXPORTS = {"config": ["RAGConfig"], "knowledge_base": ["KnowledgeBase", "list_kbs"]}
    __all__, __getattr__, __dir__ = lazy(__name__, _EXPORTS)

The ground layer: imports nothing of the project.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from importlib import import_module
from typing import Any

__all__ = ["lazy"]


def lazy(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """The `__all__`, `__getattr__` and `__dir__` of `package`, which exports the names `exports[sub]` of each
    submodule `sub`; a name is imported once, then found on the package like any other attribute."""
    home = {name: sub for sub, names in exports.items() for name in names}

    def attribute(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{home[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def names() -> list[str]:
        return sorted({*vars(sys.modules[package]), *home})

    return list(home), attribute, names
