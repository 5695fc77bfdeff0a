"""`rolechat chat` and `rolechat personas`, run as a user runs them (a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rolechat(*args: str, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rolechat", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        input=stdin,
        timeout=300,
    )


def test_one_shot_message_prints_the_reply(tiny_qwen2):
    from rolechat.llm import LLMConfig, Runtime

    expected = Runtime.load(LLMConfig(model=str(tiny_qwen2))).chat(
        [{"role": "user", "content": "你好"}], params={"temperature": 0, "max_new_tokens": 8}
    )
    out = rolechat(
        "chat", "--model", str(tiny_qwen2), "-m", "你好", "--temperature", "0", "--max-new-tokens", "8", "--quiet"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == expected + "\n"


def test_interactive_commands(tiny_qwen2):
    out = rolechat(
        "chat",
        "--model",
        str(tiny_qwen2),
        "--max-new-tokens",
        "4",
        stdin="你好\n/persona nobody\n/personas\n/reset\n/exit\n",
    )
    assert out.returncode == 0, out.stderr
    assert "persona 'nobody' is not available" in out.stderr
    assert "history cleared" in out.stderr


def test_unknown_persona_and_missing_model_fail_cleanly(tiny_qwen2):
    out = rolechat("chat", "--model", str(tiny_qwen2), "--persona", "ghost", "-m", "hi")
    assert out.returncode == 1 and "persona 'ghost' is not available" in out.stderr
    assert "Traceback" not in out.stderr
    out = rolechat("chat", "--model", "/no/such/model", "-m", "hi")
    assert out.returncode == 1 and "model folder not found: /no/such/model" in out.stderr


def test_bad_config_file_is_reported_with_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[llm]\ntemperature = 'hot'\n", encoding="utf-8")
    out = rolechat("--config", str(bad), "personas")
    assert out.returncode != 0 and "Traceback" not in out.stderr


def test_personas_lists_broken_folders_as_json(_isolated_home):
    folder = _isolated_home / "personas" / "broken"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}", encoding="utf-8")
    out = rolechat("personas", "--json", env={"ROLECHAT_HOME": str(_isolated_home)})
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert rows[0]["name"] == "broken" and not rows[0]["ok"] and "persona.json" in rows[0]["error"]
