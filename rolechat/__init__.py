"""rolechat: local Chinese role-play and knowledge chat on your own models.

The `rolechat` package holds what sits below and above the three feature packages:
`rolechat.config` (the on-disk home, the config file, the offline environment) is the one
module `llm`, `rag` and `finetune` may import; `rolechat.cli` and `rolechat.api` sit on top.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
