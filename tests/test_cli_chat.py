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


# -- characters, the user persona and --show-prompt (in-process, typer's CliRunner) ---------------------------


def _character() -> None:
    from rolechat.conversation import Character
    from rolechat.conversation.characters import save_character

    save_character(
        Character(
            name="林夕",
            description="{{char}}是长安城的说书人。",
            first_mes="{{user}}，请坐。",
            alternate_greetings=["又见面了，{{user}}。"],
        ),
        "linxi",
    )


def invoke(*args: str):
    from typer.testing import CliRunner

    from rolechat.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def part_kinds(stderr: str) -> list[str]:
    """The kinds of the parts --show-prompt printed: each part opens with `kind | label | N tokens | sent`."""
    import re

    return [m.group(1) for m in re.finditer(r"^(\S+) \| .*? \| \d+ tokens \| ", stderr, flags=re.M)]


def test_show_prompt_lists_every_part_with_its_tokens_on_stderr(tiny_qwen2):
    _character()
    out = invoke(
        "chat", "--model", str(tiny_qwen2), "-p", "linxi", "-m", "你好", "--max-new-tokens", "4",
        "--user-name", "小明", "--user-description", "爱喝茶", "--show-prompt", "--quiet",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "what the model saw" in out.stderr and "what the model saw" not in out.stdout
    kinds = part_kinds(out.stderr)
    assert kinds[:3] == ["system", "card", "user-persona"] and "history" in kinds and "message" in kinds
    assert "小明，请坐。" in out.stderr  # the greeting is the first turn of the history
    assert "关于小明：爱喝茶" in out.stderr
    assert "prompt:" in out.stderr and "tokens of" in out.stderr


def test_an_interactive_chat_opens_with_the_chosen_greeting(tiny_qwen2):
    _character()
    out = invoke("chat", "--model", str(tiny_qwen2), "-p", "linxi", "--user-name", "小明", "--max-new-tokens", "2")
    assert out.exit_code == 0 and out.stdout.splitlines()[0] == "小明，请坐。"
    out = invoke(
        "chat", "--model", str(tiny_qwen2), "-p", "linxi", "--user-name", "小明", "--greeting", "1",
        "--max-new-tokens", "2",
    )  # fmt: skip
    assert out.stdout.splitlines()[0] == "又见面了，小明。"
    out = invoke("chat", "--model", str(tiny_qwen2), "-p", "linxi", "--greeting", "5", "-m", "hi")
    assert out.exit_code == 1 and "greeting 5 out of range" in out.stderr


def test_a_budget_flag_reaches_the_engine(tiny_qwen2):
    out = invoke(
        "chat", "--model", str(tiny_qwen2), "-m", "你好", "--max-new-tokens", "4", "--lore-tokens", "-1", "--quiet",
    )  # fmt: skip
    assert out.exit_code == 1 and "chat.lore_tokens must be >= 0" in out.stderr


def test_ask_shows_the_answer_prompt_and_its_passages(tiny_qwen2, tmp_path):
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from rolechat.rag import KnowledgeBase, RAGConfig
    from tests.app_support import write_docs

    kb = KnowledgeBase("城市", RAGConfig(), embeddings=DeterministicFakeEmbedding(size=64))
    kb.index([write_docs(tmp_path / "docs")])
    kb.close()
    out = invoke(
        "ask", "北京是哪个国家的首都？", "--kb", "城市", "--mode", "bm25", "--model", str(tiny_qwen2),
        "--max-new-tokens", "4", "--show-prompt",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    kinds = part_kinds(out.stderr)
    assert kinds[0] == "knowledge" and kinds[-1] == "message"
    assert "beijing.md" in out.stderr and "sources" in out.stdout and "beijing.md" in out.stdout


def test_ask_on_the_demo_model_prints_its_hint_as_plain_text(tmp_path):
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from rolechat.llm.demo import SHIPPED_MODEL_DIR
    from rolechat.rag import KnowledgeBase, RAGConfig
    from tests.app_support import write_docs

    kb = KnowledgeBase("城市", RAGConfig(), embeddings=DeterministicFakeEmbedding(size=64))
    kb.index([write_docs(tmp_path / "docs")])
    kb.close()
    out = invoke(
        "ask", "北京是哪个国家的首都？", "--kb", "城市", "--mode", "bm25", "--model", str(SHIPPED_MODEL_DIR),
        "--max-new-tokens", "4",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "[llm] model" in out.stderr  # not eaten as a markup tag


def test_scene_one_round_each_character_replies_once_with_its_own_adapter(tiny_qwen2, tmp_path):
    from rolechat.conversation import Engine
    from rolechat.conversation.scene import clean_reply
    from rolechat.llm import LLMConfig, Runtime
    from tests.test_llm_runtime import install, make_adapter

    install(make_adapter(tiny_qwen2, tmp_path / "alpha", 1), make_adapter(tiny_qwen2, tmp_path / "beta", 2))
    engine = Engine(Runtime.load(LLMConfig(model=str(tiny_qwen2), temperature=0, max_new_tokens=6)))
    history: list[dict] = []
    expected = []
    for speaker, said in (("alpha", "BETA，你好"), ("beta", "")):  # list order: everyone, in the scene's order
        turn = engine.prepare_scene(said, characters=["alpha", "beta"], speaker=speaker, history=history)
        reply = clean_reply(engine.stream(turn).join(), speaker.upper())
        history += [
            *([{"role": "user", "content": said}] if said else []),
            {"role": "assistant", "content": reply, "name": speaker},
        ]
        expected.append(f"{speaker.upper()}: {reply}")
    flags = ("--model", str(tiny_qwen2), "--temperature", "0", "--max-new-tokens", "6", "--scene", "alpha,beta")
    out = rolechat("chat", *flags, "--order", "list", "-m", "BETA，你好", "--quiet")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "\n".join(expected) + "\n"
    for seed in ("1", "2", "3"):  # natural order: the named one first, then whoever is talkative enough
        out = rolechat("chat", *flags, "--seed", seed, "-m", "BETA，你好", "--quiet")
        assert out.stdout.splitlines()[0].startswith("BETA: ")
    out = rolechat("chat", *flags, "--order", "round-robin", "-m", "BETA，你好", "--quiet")
    assert out.stdout.splitlines()[0].startswith("ALPHA: ")
    out = rolechat("chat", "--model", str(tiny_qwen2), "--scene", "alpha,ghost", "-m", "hi")
    assert out.returncode == 1 and "persona 'ghost' is not available" in out.stderr
    out = rolechat("chat", "--model", str(tiny_qwen2), "--scene", "alpha", "-m", "hi")
    assert out.returncode == 1 and "at least two characters" in out.stderr
    out = rolechat("chat", *flags, "--order", "list", stdin="大家好\n/speak alpha\n/exit\n")
    assert out.returncode == 0 and out.stdout.count("ALPHA:") == 2 and out.stdout.count("BETA:") == 1
