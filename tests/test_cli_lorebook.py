"""`rolechat lorebook`, `rolechat regex` and `rolechat chat --lorebook ... --prompt-file` (in-process, CliRunner),
with a card and a book in SillyTavern's field layout."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from rolechat.cli import app
from rolechat.conversation.characters import find_character

CARD = {
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "data": {
        "name": "林夕",
        "description": "{{char}}是说书人。",
        "first_mes": "客官请坐。",
        "system_prompt": "{{original}}说话带古风。",
        "post_history_instructions": "{{original}}保持口吻。",
        "extensions": {"depth_prompt": {"prompt": "记得提到茶。", "depth": 2, "role": "system"}},
        "character_book": {
            "name": "长安",
            "entries": [
                {
                    "id": 0,
                    "keys": ["长安"],
                    "content": "长安是都城。",
                    "insertion_order": 100,
                    "enabled": True,
                    "use_regex": True,
                    "position": "before_char",
                    "extensions": {"position": 0},
                },
                {
                    "id": 1,
                    "keys": ["Mr. Li?"],
                    "content": "李先生是掌柜。",
                    "insertion_order": 90,
                    "enabled": True,
                    "use_regex": True,
                    "position": "after_char",
                    "extensions": {"position": 4, "depth": 1, "role": 1},
                },
            ],
        },
    },
}
WORLD = {
    "name": "天气",
    "entries": {
        "0": {"uid": 0, "key": ["雨"], "content": "外面下着大雨。", "order": 50, "position": 4, "depth": 0, "role": 0}
    },
}


def run(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_the_lorebook_library_commands(tmp_path):
    assert run("lorebook", "import", str(write(tmp_path / "w.json", WORLD))).exit_code == 0
    listed = json.loads(run("lorebook", "list", "--json").output)
    assert listed == [{"name": "天气", "entries": 1, "error": ""}]
    shown = json.loads(run("lorebook", "show", "天气", "--json").output)
    assert shown["entries"][0]["position"] == "@depth 0 (system)" and shown["entries"][0]["keys"] == ["雨"]
    again = run("lorebook", "import", str(tmp_path / "w.json"))
    assert again.exit_code == 1 and "--replace" in again.output
    assert (
        run("lorebook", "delete", "天气").exit_code == 0 and json.loads(run("lorebook", "list", "--json").output) == []
    )
    missing = run("lorebook", "show", "天气")
    assert missing.exit_code == 1 and "no lorebook '天气'" in missing.output


def test_regex_scripts_for_every_chat_or_one_character(tmp_path):
    script = {"scriptName": "星号", "findRegex": "/\\*/g", "replaceString": "", "placement": [2]}
    assert run("regex", "import", str(write(tmp_path / "s.json", script))).exit_code == 0
    assert json.loads(run("regex", "list", "--json").output)[0]["name"] == "星号"
    run("character", "import", str(write(tmp_path / "card.json", CARD)))
    assert run("regex", "import", str(tmp_path / "s.json"), "--character", "林夕").exit_code == 0
    _, char = find_character("林夕")
    assert char.extensions["regex_scripts"][0]["scriptName"] == "星号"
    shown = json.loads(run("character", "show", "林夕", "--json").output)
    assert shown["regex_scripts"][0]["where"] == "AI output; kept text"
    bad = run("regex", "import", str(write(tmp_path / "bad.json", {"scriptName": "x", "placement": "2"})))
    assert bad.exit_code == 1 and "bad.json: bad.json.placement" in bad.output
    assert run("regex", "delete", "s").exit_code == 0 and run("regex", "delete", "s").exit_code == 1


def test_character_show_lists_the_post_history_instructions_and_the_characters_note(tmp_path):
    run("character", "import", str(write(tmp_path / "card.json", CARD)))
    info = json.loads(run("character", "show", "林夕", "--json").output)
    assert info["post_history_instructions"] == "{{original}}保持口吻。"
    assert info["characters_note"] == {"text": "记得提到茶。", "depth": 2, "role": "system"}
    assert info["lorebook"][1]["position"] == "@depth 1 (user)"
    text = run("character", "show", "林夕").output
    assert "post-history instructions" in text and "character's note (depth 2, system)" in text


def test_chat_with_a_second_lorebook_writes_the_prompt_view(tiny_qwen2, tmp_path):
    run("character", "import", str(write(tmp_path / "card.json", CARD)))
    world = write(tmp_path / "weather.json", WORLD)
    prompt = tmp_path / "prompt.json"
    flags = ["--model", str(tiny_qwen2), "--max-new-tokens", "4", "--temperature", "0", "-p", "林夕", "--quiet"]
    out = run(
        "chat",
        *flags,
        "-m",
        "长安下雨了，Mr. Li? 在吗",
        "--lorebook",
        str(world),
        "--prompt-file",
        str(prompt),
        "--scenario",
        "暴雨夜",
        "--authors-note",
        "保持紧张。",
        "--note-depth",
        "1",
    )
    assert out.exit_code == 0, out.output
    record = json.loads(prompt.read_text(encoding="utf-8"))["turns"][0]
    lore = {p["text"]: (p["source"], p["why"]) for p in record["parts"] if p["kind"].startswith("lore")}
    assert lore == {
        "长安是都城。": ("长安", "key 长安; order 100; before_char"),
        "李先生是掌柜。": ("长安", "key Mr. Li?; order 90; @depth 1 (user)"),
        "外面下着大雨。": ("天气", "key 雨; order 50; @depth 0 (system)"),
    }
    messages = record["messages"]
    # depth 1: the user-role lore, then the system-role note (SillyTavern's order: assistant, user, system)
    assert messages[-3:-1] == [{"role": "user", "content": "李先生是掌柜。"}, {"role": "user", "content": "保持紧张。"}]
    assert messages[-1]["content"] == "长安下雨了，Mr. Li? 在吗\n\n外面下着大雨。\n\n保持口吻。"
    assert "场景：暴雨夜" in messages[0]["content"] and "{{original}}" not in json.dumps(messages, ensure_ascii=False)
    text_file = tmp_path / "prompt.txt"
    run("chat", *flags, "-m", "下雨", "--lorebook", str(world), "--prompt-file", str(text_file))
    assert "| book 天气 | key 雨; order 50; @depth 0 (system)" in text_file.read_text(encoding="utf-8")
    bad = run("chat", *flags, "-m", "hi", "--lorebook", "没有这本")
    assert bad.exit_code == 1 and "--lorebook 没有这本: no lorebook" in bad.output


def test_prompt_file_holds_the_full_text_of_a_triggered_lore_entry(tiny_qwen2, tmp_path):
    long_entry = "影牙兽是北境森林的古老守护者，" * 12 + "它只在月圆之夜现身。"  # far beyond any preview length
    book = {"name": "北境", "entries": {"0": {"uid": 0, "key": ["影牙兽"], "content": long_entry, "order": 10}}}
    run("character", "import", str(write(tmp_path / "card.json", CARD)))
    prompt = tmp_path / "prompt.txt"
    flags = ["--model", str(tiny_qwen2), "--max-new-tokens", "4", "--temperature", "0", "-p", "林夕", "--quiet"]
    args = ["-m", "你见过影牙兽吗？", "--lorebook", str(write(tmp_path / "north.json", book))]
    out = run("chat", *flags, *args, "--prompt-file", str(prompt))
    assert out.exit_code == 0, out.output
    rendered = prompt.read_text(encoding="utf-8")  # the exact text the tokenizer receives
    assert long_entry in rendered and "<|im_start|>" in rendered
    parts = json.loads(prompt.with_suffix(".json").read_text(encoding="utf-8"))["turns"][0]["parts"]
    assert any(p["kind"].startswith("lore") and p["text"] == long_entry for p in parts)
