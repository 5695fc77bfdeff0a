"""Saved chats: atomic files under ROLECHAT_HOME, listed and resumed, swipes, exports, bad files named."""

from __future__ import annotations

import json

import pytest

from rolechat.conversation.chats import (
    ChatFileError,
    add_swipe,
    chats_dir,
    delete_chat,
    list_chats,
    load_chat,
    new_chat,
    save_chat,
    select_swipe,
    to_json,
    to_markdown,
)


def scene_log():
    log = new_chat(["alpha", "beta"], user_name="小明")
    log.messages = [
        {"role": "user", "content": "大家好，今天去哪里？"},
        {"role": "assistant", "content": "去茶馆。", "name": "alpha"},
        {"role": "assistant", "content": "我也去。", "name": "beta", "stats": {"tokens": 3}},
    ]
    return log


def test_a_saved_chat_loads_back_and_lists_newest_first(tmp_path):
    first = scene_log()
    path = save_chat(first)
    assert path.parent == chats_dir() and path.name == f"{first.id}.json"
    assert str(path).startswith(str(tmp_path))  # under the test's ROLECHAT_HOME
    second = new_chat(["alpha"])
    second.messages = [{"role": "user", "content": "hi"}]
    save_chat(second)
    back = load_chat(first.id)
    assert back.messages == first.messages and back.characters == ["alpha", "beta"] and back.user_name == "小明"
    assert back.scene and back.display_title() == "大家好，今天去哪里？"
    chats, errors = list_chats()
    assert [c.id for c in chats] == [second.id, first.id] and errors == []
    delete_chat(second.id)
    assert [c.id for c in list_chats()[0]] == [first.id]


def test_saving_is_atomic_and_leaves_no_temporary_files():
    log = scene_log()
    save_chat(log)
    log.messages.append({"role": "user", "content": "x", "live": object()})  # not JSON: left out, not fatal
    save_chat(log)
    assert [p.name for p in chats_dir().iterdir()] == [f"{log.id}.json"]
    assert load_chat(log.id).messages[-1] == {"role": "user", "content": "x"}


def test_a_corrupt_chat_file_is_named_with_its_line_and_left_in_place():
    good = scene_log()
    save_chat(good)
    bad = chats_dir() / "broken.json"
    bad.write_text('{"messages": [\n  {"role": "user", "content": "hi"},\n  oops\n]}', encoding="utf-8")
    chats, errors = list_chats()
    assert [c.id for c in chats] == [good.id]
    assert len(errors) == 1 and str(bad) in errors[0] and "line 3" in errors[0]
    with pytest.raises(ChatFileError, match="broken.json: line 3, column 3"):
        load_chat("broken")
    assert bad.read_text(encoding="utf-8").endswith("oops\n]}")  # nothing lost
    (chats_dir() / "shape.json").write_text(json.dumps({"messages": [{"role": "robot"}]}), encoding="utf-8")
    with pytest.raises(ChatFileError, match=r"shape.json: messages\[0\]"):
        load_chat("shape")
    with pytest.raises(FileNotFoundError, match="no saved chat 'nope'"):
        load_chat("nope")
    with pytest.raises(ValueError, match="not a chat id"):
        load_chat("../etc")


def test_regenerating_keeps_the_alternatives_as_swipes():
    msg = {"role": "assistant", "content": "第一版"}
    add_swipe(msg, "第二版")
    add_swipe(msg, "第三版")
    assert msg["swipes"] == ["第一版", "第二版", "第三版"] and msg["swipe"] == 2 and msg["content"] == "第三版"
    select_swipe(msg, 0)
    assert msg["content"] == "第一版" and msg["swipe"] == 0
    select_swipe(msg, 9)
    assert msg["content"] == "第三版"


def test_exports():
    log = scene_log()
    log.messages[1]["swipes"] = ["去茶馆。", "去书院。"]
    data = json.loads(to_json(log))
    assert data["format"] == 1 and data["characters"] == ["alpha", "beta"] and data["messages"] == log.messages
    md = to_markdown(log, {"alpha": "阿尔法", "beta": "贝塔"})
    assert md.startswith("# 大家好，今天去哪里？\n")
    assert "**小明**: 大家好，今天去哪里？" in md
    assert "**阿尔法**: 去茶馆。" in md and "**贝塔**: 我也去。" in md
    assert md.index("阿尔法**") < md.index("贝塔**")
