"""`rolechat scene ...` and `rolechat chat --scene NAME` (in-process, CliRunner): a saved scene's own lorebook and
scenario override reach every speaker's prompt, the orders pick the speakers."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from rolechat.cli import app


def run(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def card(name: str, **data) -> dict:
    fields = {"name": name, "description": f"{name}是茶客。", "first_mes": f"我是{name}。", "scenario": "白天的集市"}
    return {"spec": "chara_card_v3", "spec_version": "3.0", "data": {**fields, **data}}


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_a_saved_scene_brings_its_lorebook_and_scenario_to_every_speaker(tiny_qwen2, tmp_path):
    run("character", "import", str(write(tmp_path / "a.json", card("阿青", group_only_greetings=["（阿青挥手）"]))))
    run("character", "import", str(write(tmp_path / "b.json", card("白露"))))
    book = {
        "spec": "lorebook_v3",
        "data": {
            "name": "群聊",
            "entries": [
                {
                    "keys": ["茶"],
                    "content": "这家茶馆只卖龙井。",
                    "insertion_order": 10,
                    "enabled": True,
                    "extensions": {},
                }
            ],
        },
    }
    assert run("lorebook", "import", str(write(tmp_path / "book.json", book))).exit_code == 0
    made = run(
        "scene",
        "create",
        "茶会",
        "--characters",
        "阿青,白露",
        "--lorebook",
        "群聊",
        "--scenario",
        "雨夜的茶馆",
        "--order",
        "list",
    )
    assert made.exit_code == 0, made.output
    assert json.loads(run("scene", "list", "--json").output)[0]["lorebooks"] == ["群聊"]
    prompt = tmp_path / "scene.json"
    flags = ["--model", str(tiny_qwen2), "--max-new-tokens", "4", "--temperature", "0", "--quiet"]
    out = run("chat", *flags, "--scene", "茶会", "-m", "来壶茶", "--prompt-file", str(prompt))
    assert out.exit_code == 0, out.output
    assert [line.split(":")[0] for line in out.output.splitlines()] == ["阿青", "白露"]  # list order
    turns = json.loads(prompt.read_text(encoding="utf-8"))["turns"]
    assert [t["speaker"] for t in turns] == ["阿青", "白露"]
    for t in turns:
        system = t["messages"][0]["content"]
        assert "场景：雨夜的茶馆" in system and "白天的集市" not in system and "这家茶馆只卖龙井。" in system
        assert [p["source"] for p in t["parts"] if p["kind"] == "lore-triggered"] == ["群聊"]
    seen = [m["content"] for m in turns[1]["messages"][1:]]
    assert seen[:2] == ["阿青：（阿青挥手）", "我是白露。"]  # the scene opened with each one's group greeting
    manual = run("chat", *flags, "--scene", "茶会", "--order", "manual", "-m", "来壶茶")
    assert manual.exit_code == 0 and "nobody speaks in manual order" in manual.output  # unless one is picked
    picked = run("chat", *flags, "--scene", "茶会", "--order", "manual", "--speaker", "白露", "-m", "来壶茶")
    assert [line.split(":")[0] for line in picked.output.splitlines()] == ["白露"]
    assert run("scene", "delete", "茶会").exit_code == 0
    gone = run("chat", *flags, "--scene", "茶会", "-m", "hi")
    assert gone.exit_code == 1 and "no scene '茶会'" in gone.output
