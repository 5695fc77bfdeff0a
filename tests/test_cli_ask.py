"""`rolechat ask` as a new user runs it, in a process of its own on the built-in demo model and the sample
knowledge base: one JSON object with --json (answer, mode, grounded, sources), an extractive answer that quotes
the document, and a terminal free of third-party warnings a user cannot act on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What must never reach a user's terminal (issue 27): bitsandbytes' kernels line, transformers' token-length
# warning, deprecation and future-warning notes of the libraries.
NOISE = (
    "kernels-community",
    "gemm_4bit_forward",
    "Token indices sequence length",
    "DeprecationWarning",
    "FutureWarning",
    "UserWarning",
    "is deprecated",
    "sunset",
    "Building prefix dict",
)


def rolechat(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONWARNINGS", "TRANSFORMERS_VERBOSITY"))}
    env.update(ROLECHAT_HOME=str(home), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "rolechat", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )


@pytest.mark.slow
def test_ask_on_the_demo_model_answers_from_the_document_as_json_on_a_clean_terminal(_isolated_home):
    indexed = rolechat("index", str(ROOT / "knowledge"), "--kb", "示例", home=_isolated_home)
    assert indexed.returncode == 0, indexed.stderr
    asked = rolechat("ask", "从汽车站坐公交到茶园要多长时间？", "--kb", "示例", "--json", home=_isolated_home)
    assert asked.returncode == 0, asked.stderr
    out = json.loads(asked.stdout)
    assert out["mode"] == "extract" and out["grounded"] is True
    assert "车程约四十分钟" in out["answer"] and "[1]" in out["answer"]
    first = out["sources"][0]
    assert first["file"] == "云雾山茶园-参观须知.txt" and first["location"] and isinstance(first["score"], float)
    absent = rolechat("ask", "rolechat 的作者是谁？", "--kb", "示例", "--json", home=_isolated_home)
    assert json.loads(absent.stdout)["grounded"] is False
    for run in (indexed, asked, absent):
        for noise in NOISE:
            assert noise not in run.stderr, f"{noise!r} on stderr:\n{run.stderr}"
    plain = rolechat("ask", "茶园冬天在茶树之间种什么？", "--kb", "示例", home=_isolated_home)
    assert "油菜" in plain.stdout and "answer mode: extract" in plain.stderr
    assert not [n for n in NOISE if n in plain.stderr]
