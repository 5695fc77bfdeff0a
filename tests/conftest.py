"""Test-wide setup: offline environment, an isolated ROLECHAT_HOME, and session-scoped tiny models."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from rolechat.settings import set_offline_env  # noqa: E402

set_offline_env()
os.environ.setdefault("ROLECHAT_HOME", str(Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / "rolechat-test-home"))

from tests.tiny import ARCHS, build_tiny  # noqa: E402

# Rebuildable model caches shared by every test of the session (each test's ROLECHAT_HOME links to them): the
# transformers copy of the bundled e5 model and the ONNX exports cost ~45 s to build, once; character memories are
# embedded once (their cache is keyed by the memory file's path and a digest of its entries and embedder).
MODEL_CACHES = ("encoders", "embedders", "memory")


@pytest.fixture(scope="session")
def _model_caches(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model-caches")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch, _model_caches):
    """Every test gets its own empty ROLECHAT_HOME (but for the shared model caches)."""
    home = tmp_path / "home"
    monkeypatch.setenv("ROLECHAT_HOME", str(home))
    (home / "cache").mkdir(parents=True)
    for name in MODEL_CACHES:
        (_model_caches / name).mkdir(exist_ok=True)
        (home / "cache" / name).symlink_to(_model_caches / name, target_is_directory=True)
    return home


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """{"qwen2": path, "qwen3": path, "glm4": path}: tiny saved models, built once per session."""
    root = tmp_path_factory.mktemp("tiny")
    return {arch: build_tiny(root / arch, arch) for arch in ARCHS}


@pytest.fixture(scope="session")
def tiny_qwen2(tiny_models) -> Path:
    return tiny_models["qwen2"]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
