"""rolechat: local Chinese role-play and knowledge chat on your own models.

Everything rolechat installs lives under this one import package, so it never clashes with another
distribution's top-level modules (PyPI's `llm` package, for one, owns the import name `llm`):

    rolechat.settings       the ground: home folders, layered settings, ConfigError (imports nothing of ours)
    rolechat.llm            the model runtime                    (source folder llm/)
    rolechat.rag            knowledge bases                      (source folder rag/)
    rolechat.finetune       persona and classifier training      (source folder finetune/)
    rolechat.cli, rolechat.api   entry points on top

The design keeps llm/, rag/ and finetune/ as top-level folders of the source tree; the wheel maps them
into this package (pyproject's `package-dir`), and in a source checkout the line below lets Python find
them beside this folder. This module imports nothing else of the project.
"""

from pathlib import Path as _Path

__version__ = "0.1.0"
__all__ = ["__version__"]

_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "llm" / "__init__.py").is_file():
    __path__.append(str(_checkout))
