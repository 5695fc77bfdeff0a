"""docs/quickstart.md's command-line steps, end to end on the demo model, each in a process of its own as a user
types them: index a folder, ask (JSON), import a card and chat, train a tiny persona, serve it to `openai`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def env(home: Path) -> dict[str, str]:
    return {**os.environ, "ROLECHAT_HOME": str(home), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def rolechat(home: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "rolechat", *args], capture_output=True, text=True, env=env(home), cwd=ROOT, timeout=900
    )
    assert done.returncode == 0, f"rolechat {' '.join(args)}:\n{done.stderr}"
    return done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_quickstart_runs_end_to_end_on_the_demo_model(_isolated_home, tmp_path):
    home = _isolated_home
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "报销制度.md").write_text("# 报销制度\n\n报销单要在费用发生后三十天内提交给财务部。\n", encoding="utf-8")
    rolechat(home, "index", str(notes), "--kb", "笔记")
    out = json.loads(rolechat(home, "ask", "报销要在几天内提交？", "--kb", "笔记", "--json").stdout)
    assert out["grounded"] and "三十天内" in out["answer"] and out["sources"][0]["file"] == "报销制度.md"

    rolechat(home, "character", "import", "examples/characters/suwan.json", "--name", "suwan")
    chat = rolechat(home, "chat", "--persona", "suwan", "--message", "你好", "--quiet")
    assert chat.stdout.strip()

    rolechat(
        home,
        *("train", "--data", "examples/personas/cat.json", "--persona", "kitty", "--max-steps", "2"),
        *("--system", "你是一只名叫喵喵的小猫。"),
    )
    assert rolechat(home, "chat", "--persona", "kitty", "--message", "你好", "--quiet").stdout.strip()

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "rolechat", "serve", "--port", str(port)],
        env=env(home),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import httpx
        from openai import OpenAI

        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        reply = client.chat.completions.create(model="kitty", messages=[{"role": "user", "content": "你好"}])
        assert reply.choices[0].message.content.strip()
        answer = client.chat.completions.create(
            model="base",
            messages=[{"role": "user", "content": "报销要在几天内提交？"}],
            extra_body={"knowledge_base": "笔记"},
        )
        assert "三十天内" in answer.choices[0].message.content
        assert answer.model_extra["answer_mode"] == "extract" and answer.model_extra["grounded"] is True
    finally:
        server.terminate()
        server.wait(timeout=30)
