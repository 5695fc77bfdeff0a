"""Where the demo's parts live, and how a built demo model is recognised: the names every module of the demo
(and the runtime) agree on. Imports nothing, so the package, the builder and the corpus writers all depend on
it and never on each other."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CORPUS_DIR", "DEMO_HINT", "DEMO_MODEL_ID", "MARKER_FILE", "SAMPLE_PERSONAS_DIR", "SHIPPED_MODEL_DIR"]

_HERE = Path(__file__).resolve().parent

DEMO_MODEL_ID = "rolechat-demo"
DEMO_HINT = (
    "演示模型：设置 ROLECHAT_LLM_MODEL=/path/to/Qwen3-1.7B 或在 rolechat.toml 的 [llm] model 使用真实模型 "
    "(demo model: point ROLECHAT_LLM_MODEL or [llm] model at a real one)"
)
MARKER_FILE = "rolechat_demo.json"  # written into a built model folder: {"model_id": DEMO_MODEL_ID, the recipe, ...}
SHIPPED_MODEL_DIR = _HERE / "model"
# Persona adapters trained on the shipped model (with `rolechat train`), offered whenever the demo model runs.
SAMPLE_PERSONAS_DIR = _HERE / "personas"
CORPUS_DIR = _HERE / "corpus"  # the text the demo model is trained on (written by dialogues.py and scripts/)
