"""The chat page with a character (AppTest, tiny Qwen2): the greeting opens the chat, an alternate one can be
picked before the user speaks, the user persona fills {{user}}, and each reply lists what the model saw."""

from __future__ import annotations

from rolechat.conversation import Character, Lorebook, LoreEntry
from tests.app_support import app_test


def install_character() -> None:
    from rolechat.conversation.characters import save_character

    save_character(
        Character(
            name="林夕",
            description="{{char}}是长安城的说书人。",
            first_mes="{{user}}，请坐。",
            alternate_greetings=["又见面了，{{user}}。"],
            character_book=Lorebook(entries=[LoreEntry(keys=["茶园"], content="茶园在城东。", comment="茶园")]),
        ),
        "linxi",
    )


def test_a_character_chat_opens_with_its_greeting_and_shows_what_the_model_saw(monkeypatch, tiny_qwen2):
    install_character()
    at = app_test(monkeypatch, tiny_qwen2).run()
    assert not at.exception
    assert at.session_state["history"] == []  # the base model has no greeting
    at.sidebar.selectbox(key="persona").select("linxi").run()
    assert [m["content"] for m in at.session_state["history"]] == ["用户，请坐。"]
    assert at.chat_message[0].name == "assistant" and "开场白" in at.chat_message[0].caption[-1].value

    at.sidebar.text_input(key="user_name").set_value("小明").run()
    assert [m["content"] for m in at.session_state["history"]] == ["小明，请坐。"]  # {{user}} follows the sidebar
    picker = at.sidebar.selectbox(key="greeting")
    assert len(picker.options) == 2
    picker.select_index(1).run()
    assert [m["content"] for m in at.session_state["history"]] == ["又见面了，小明。"]

    at.chat_input[0].set_value("带我去茶园").run()
    assert not at.exception
    history = at.session_state["history"]
    assert [m["role"] for m in history] == ["assistant", "user", "assistant"]
    assert "greeting" not in [s.key for s in at.sidebar.selectbox]  # the chat has started: no more picking
    parts = history[-1]["prompt"]["parts"]
    assert [p["kind"] for p in parts] == ["system", "lore-triggered", "card", "history", "message"]
    assert parts[3]["text"] == "又见面了，小明。" and all(p["tokens"] > 0 for p in parts)
    seen = next(e for e in at.chat_message[2].expander if e.label.startswith("模型看到的内容"))
    lines = [m.value for m in seen.markdown]
    assert any("触发的设定" in line and "茶园" in line and "词元" in line for line in lines)
    assert "茶园在城东。" in [c.value for c in seen.text]  # each part in full (the rendered prompt holds it too)
    total = history[-1]["prompt"]["tokens"]
    assert 0 < total <= history[-1]["prompt"]["budget"] and f"（{total} / " in seen.label


def test_the_user_description_reaches_the_system_part(monkeypatch, tiny_qwen2):
    install_character()
    at = app_test(monkeypatch, tiny_qwen2).run()
    at.sidebar.selectbox(key="persona").select("linxi").run()
    at.sidebar.text_area(key="user_description").set_value("一个爱喝茶的学生").run()
    at.chat_input[0].set_value("你好").run()
    parts = at.session_state["history"][-1]["prompt"]["parts"]
    assert {"kind": "user-persona", "text": "关于用户：一个爱喝茶的学生"}.items() <= parts[2].items()


def test_a_png_card_imported_in_the_sidebar_becomes_the_selected_character(monkeypatch, tiny_qwen2, tmp_path):
    from rolechat.conversation import write_card

    card = write_card(
        Character(name="苏晚", description="{{char}}是茶园的主人。", first_mes="欢迎来到茶园，{{user}}。"),
        tmp_path / "苏晚.png",
    )
    at = app_test(monkeypatch, tiny_qwen2).run()
    at.sidebar.file_uploader(key="card_upload").set_value(("苏晚.png", card.read_bytes(), "image/png")).run()
    next(b for b in at.sidebar.button if b.key == "card_import").click().run()
    assert not at.exception
    assert at.sidebar.selectbox(key="persona").value == "苏晚"
    assert [m["content"] for m in at.session_state["history"]] == ["欢迎来到茶园，用户。"]
    assert any("已导入角色「苏晚」" in s.value for s in at.sidebar.success)

    at.sidebar.file_uploader(key="card_upload").set_value(
        ("坏.json", b'{"spec": "chara_card_v2", "data": {}}', "application/json")
    ).run()
    next(b for b in at.sidebar.button if b.key == "card_import").click().run()
    assert not at.exception
    error = at.sidebar.error[0].value
    assert "导入失败" in error and "坏.json" in error and "name" in error
    assert at.sidebar.selectbox(key="persona").value == "苏晚"  # nothing half-imported, nothing changed


def test_a_chat_attaches_a_lorebook_and_a_scenario_that_stay_with_the_saved_chat(monkeypatch, tiny_qwen2, tmp_path):
    import json

    from rolechat.conversation.books import add_book
    from rolechat.conversation.chats import load_chat

    install_character()
    world = {"name": "天气", "entries": {"0": {"uid": 0, "key": ["雨"], "content": "外面下着大雨。", "order": 5}}}
    (tmp_path / "w.json").write_text(json.dumps(world, ensure_ascii=False), encoding="utf-8")
    add_book(tmp_path / "w.json")
    at = app_test(monkeypatch, tiny_qwen2).run()
    at.sidebar.selectbox(key="persona").select("linxi").run()
    at.sidebar.multiselect(key="chat_books").select("天气").run()
    at.sidebar.text_area(key="chat_scenario").set_value("暴雨夜的茶馆").run()
    at.chat_input[0].set_value("下雨了").run()
    assert not at.exception
    parts = at.session_state["history"][-1]["prompt"]["parts"]
    assert any(p["source"] == "天气" and p["text"] == "外面下着大雨。" for p in parts)
    assert any(p["label"] == "scenario (this chat's override)" for p in parts)
    saved = load_chat(at.session_state["chat_id"])
    assert saved.setting["lorebooks"] == ["天气"] and saved.setting["scenario"] == "暴雨夜的茶馆"

    at.sidebar.multiselect(key="chat_books").unselect("天气").run()  # detached: the next turn scans it no more
    at.chat_input[0].set_value("还在下雨").run()
    parts = at.session_state["history"][-1]["prompt"]["parts"]
    assert not any(p["source"] == "天气" for p in parts)
    fresh = app_test(monkeypatch, tiny_qwen2).run()  # a new session resumes the chat with its setting
    fresh.sidebar.button(key=f"chat_open_{saved.id}").click().run()
    assert fresh.session_state["chat_books"] == [] and fresh.session_state["chat_scenario"] == "暴雨夜的茶馆"
