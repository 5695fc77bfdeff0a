"""The chat page's scenes and saved conversations, under streamlit's AppTest on the tiny Qwen2 model.

Scene replies are greedy, so each must equal what the engine answers for that speaker (its own adapter):
that is how these tests see that every character speaks with its own adapter."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import pytest

from rolechat import settings
from rolechat.conversation.chats import chats_dir, load_chat
from tests.app_support import app_test, loaded_runtime, make_adapter

GREEDY = {"temperature": 0.0, "max_new_tokens": 12, "top_p": 0.9}


@pytest.fixture(scope="module")
def adapters(tiny_qwen2, tmp_path_factory):
    root = tmp_path_factory.mktemp("scene-app-personas")
    return {
        "alpha": make_adapter(tiny_qwen2, root / "alpha", 1, display_name="阿尔法"),
        "beta": make_adapter(tiny_qwen2, root / "beta", 2, display_name="贝塔"),
    }


def install(*folders) -> None:
    for folder in folders:
        shutil.copytree(folder, settings.personas_dir() / folder.name)


def scene_reply(history: list[dict], speaker: str) -> str:
    from rolechat.conversation import Engine, UserPersona
    from rolechat.conversation.scene import clean_reply

    engine = Engine(loaded_runtime())
    turn = engine.prepare_scene(
        "", characters=["alpha", "beta"], speaker=speaker, history=history, user=UserPersona("用户"), params=GREEDY
    )
    return clean_reply(engine.stream(turn).join(), engine.display_name(speaker))


def test_a_two_character_scene_each_speaks_with_its_own_adapter(monkeypatch, tiny_qwen2, adapters):
    install(adapters["alpha"], adapters["beta"])
    at = app_test(monkeypatch, tiny_qwen2).run()
    assert not at.exception
    at.sidebar.multiselect(key="scene").select("alpha").select("beta").run()
    assert at.sidebar.selectbox(key="next_speaker").value == "natural"
    at.sidebar.selectbox(key="next_speaker").select("list").run()  # everyone once, in the scene's order
    at.chat_input[0].set_value("贝塔，你后说").run()
    assert not at.exception
    history = at.session_state["history"]
    assert [(m["role"], m.get("name")) for m in history] == [
        ("user", None),
        ("assistant", "alpha"),
        ("assistant", "beta"),
    ]
    assert history[1]["content"] == scene_reply(history[:1], "alpha")
    assert history[2]["content"] == scene_reply(history[:2], "beta")
    assert scene_reply(history[:1], "beta") != scene_reply(history[:1], "alpha")  # the adapters differ
    assert [m.name for m in at.chat_message] == ["user", "阿尔法", "贝塔"]  # each under its own name and avatar

    at.sidebar.selectbox(key="next_speaker").select("alpha").run()  # one chosen character answers alone
    at.chat_input[0].set_value("好的").run()
    history = at.session_state["history"]
    assert [m.get("name") for m in history[3:]] == [None, "alpha"]
    assert history[4]["content"] == scene_reply(history[:4], "alpha")
    saved = load_chat(at.session_state["chat_id"])
    assert saved.characters == ["alpha", "beta"] and len(saved.messages) == 5

    at.button(key="msg_regenerate").click().run()  # the last speaker answers again; the old text is a swipe
    assert not at.exception
    last = at.session_state["history"][-1]
    assert len(at.session_state["history"]) == 5 and last["name"] == "alpha" and len(last["swipes"]) == 2
    assert last["content"] == scene_reply(history[:4], "alpha")

    at.sidebar.selectbox(key="next_speaker").select("round-robin").run()
    at.button(key="scene_continue").click().run()  # another round without a message: beta, then alpha
    history = at.session_state["history"]
    assert [m.get("name") for m in history[5:]] == ["beta", "alpha"]
    assert history[5]["content"] == scene_reply(history[:5], "beta")
    assert load_chat(at.session_state["chat_id"]).order == "round-robin"  # the scene's order is saved with it


def test_a_saved_chat_resumes_after_a_restart_and_exports(monkeypatch, tiny_qwen2, adapters):
    install(adapters["alpha"])
    at = app_test(monkeypatch, tiny_qwen2).run()
    at.sidebar.selectbox(key="persona").select("alpha").run()
    at.chat_input[0].set_value("你好，今天天气如何").run()
    assert not at.exception
    chat_id = at.session_state["chat_id"]
    before = [(m["role"], m["content"]) for m in at.session_state["history"]]
    assert [(m["role"], m["content"]) for m in load_chat(chat_id).messages] == before

    fresh = app_test(monkeypatch, tiny_qwen2).run()  # a new session: the app restarted
    assert not fresh.exception and not fresh.session_state["history"]
    listed = fresh.sidebar.button(key=f"chat_open_{chat_id}")
    assert listed.label.startswith("你好，今天天气如何") and "阿尔法" in listed.label
    listed.click().run()
    assert not fresh.exception
    assert [(m["role"], m["content"]) for m in fresh.session_state["history"]] == before
    assert fresh.sidebar.selectbox(key="persona").value == "alpha"
    fresh.chat_input[0].set_value("继续").run()  # it goes on in the same file
    assert fresh.session_state["chat_id"] == chat_id and len(load_chat(chat_id).messages) == 4

    downloads = {b.proto.label: b for b in fresh.sidebar.get("download_button")}
    assert set(downloads) == {"JSON", "Markdown"}


def test_regenerate_keeps_swipes_and_messages_can_be_edited_and_deleted(monkeypatch, tiny_qwen2, adapters):
    install(adapters["alpha"])
    monkeypatch.setenv("ROLECHAT_LLM_TEMPERATURE", "1.0")  # sampled: a regeneration gives another text
    at = app_test(monkeypatch, tiny_qwen2, greedy=False)
    monkeypatch.setenv("ROLECHAT_LLM_MAX_NEW_TOKENS", "12")
    at.run()
    at.sidebar.selectbox(key="persona").select("alpha").run()
    at.chat_input[0].set_value("讲个故事").run()
    first = at.session_state["history"][-1]["content"]
    at.button(key="msg_regenerate").click().run()
    assert not at.exception
    reply = at.session_state["history"][-1]
    assert len(at.session_state["history"]) == 2
    assert reply["swipes"][0] == first and reply["swipe"] == 1 and reply["content"] == reply["swipes"][1]
    at.button(key="msg_swipe_prev").click().run()
    assert at.session_state["history"][-1]["content"] == first
    saved = load_chat(at.session_state["chat_id"]).messages[-1]
    assert saved["swipe"] == 0 and saved["content"] == first and len(saved["swipes"]) == 2

    edit = next(ta for ta in at.text_area if ta.key.startswith("msg_edit_0_"))
    edit.input("讲一个短故事")
    at.button(key="msg_save_0").click().run()
    assert at.session_state["history"][0]["content"] == "讲一个短故事"
    assert load_chat(at.session_state["chat_id"]).messages[0]["content"] == "讲一个短故事"
    at.button(key="msg_delete_1").click().run()
    assert [m["role"] for m in at.session_state["history"]] == ["user"]
    assert len(load_chat(at.session_state["chat_id"]).messages) == 1


def test_a_corrupt_chat_file_is_named_in_the_sidebar_and_left_in_place(monkeypatch, tiny_qwen2):
    bad = chats_dir() / "20260101-000000-abcdef.json"
    bad.write_text('{"messages": [\n  {"role": "user", "content": "hi"}\n', encoding="utf-8")
    at = app_test(monkeypatch, tiny_qwen2).run()
    assert not at.exception
    warning = next(w.value for w in at.sidebar.warning if "无法读取的对话文件" in w.value)
    assert str(bad) in warning and "line 3" in warning
    assert bad.read_text(encoding="utf-8").endswith('"hi"}\n')


@pytest.mark.slow
@pytest.mark.browser
def test_a_killed_app_keeps_the_saved_messages(monkeypatch, tiny_qwen2, tmp_path):
    """A real `streamlit run`, chatted with in headless Chromium, killed with SIGKILL while a reply streams: the
    chat file is whole, holds everything said before the kill, and the restarted app lists and resumes it."""
    from tests.browser_driver import CHROMIUM, CHROMIUM_ARGS, missing_browser, start_server

    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    env = {
        "ROLECHAT_LLM_MODEL": str(tiny_qwen2),
        "ROLECHAT_LLM_TEMPERATURE": "0",
        "ROLECHAT_LLM_MAX_NEW_TOKENS": "2000",
        # past the tiny model's 512 positions (its rotary embedding has no limit): a reply that stopped at the
        # context's end took well under a second, and a loaded CI box once saw it finish before the kill
        "ROLECHAT_LLM_CONTEXT_LENGTH": "4096",
        "ROLECHAT_APP_SAMPLE_KB": "false",
    }
    server = start_server(env, tmp_path / "streamlit.log")
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(locale="zh-CN")
                page.set_default_timeout(180_000)
                page.goto(server.url)
                box = page.get_by_placeholder("输入消息，回车发送")
                box.wait_for()
                box.fill("第一句")
                box.press("Enter")
                page.get_by_test_id("stChatMessage").filter(has_text="词元/秒").first.wait_for()
                box.fill("第二句")
                box.press("Enter")
                page.get_by_role("button", name="停止生成").wait_for()  # the second reply is streaming
                os.kill(server.proc.pid, signal.SIGKILL)
                server.proc.wait(timeout=30)
            finally:
                browser.close()
    finally:
        server.stop()
    saved = list(chats_dir().glob("*.json"))
    assert len(saved) == 1 and not [p for p in chats_dir().iterdir() if p.suffix != ".json"]
    data = json.loads(saved[0].read_text(encoding="utf-8"))  # whole, not half-written
    assert [m["role"] for m in data["messages"]] == ["user", "assistant", "user"]
    assert [m["content"] for m in data["messages"] if m["role"] == "user"] == ["第一句", "第二句"]

    at = app_test(monkeypatch, tiny_qwen2).run()  # the app again, after the crash
    at.sidebar.button(key=f"chat_open_{saved[0].stem}").click().run()
    assert [m["content"] for m in at.session_state["history"]] == [m["content"] for m in data["messages"]]


def test_a_long_chat_summarises_the_turns_that_no_longer_fit(monkeypatch, tiny_qwen2, adapters):
    install(adapters["alpha"])  # the tiny base model's greedy replies are blank; alpha's are not
    monkeypatch.setenv("ROLECHAT_LLM_CONTEXT_LENGTH", "512")
    at = app_test(monkeypatch, tiny_qwen2).run()
    at.sidebar.selectbox(key="persona").select("alpha").run()
    long = "我们约好明天早上八点在长安城东门的茶馆见面，记得带上那本旧书和两包龙井茶叶。"
    for n in range(12):
        at.chat_input[0].set_value(f"第{n}件事：{long}").run()
        assert not at.exception
        if any(not p["included"] for p in at.session_state["history"][-1]["prompt"]["parts"]):
            break
    else:
        pytest.fail("the history never outgrew the context")
    chat_id = at.session_state["chat_id"]
    deadline = time.time() + 120
    while time.time() < deadline and load_chat(chat_id).summary is None:
        time.sleep(0.2)
    summary = load_chat(chat_id).summary
    assert summary and summary["text"] and summary["covers"] >= 1
    at.chat_input[0].set_value("我们约在哪里见面？").run()
    assert not at.exception
    parts = at.session_state["history"][-1]["prompt"]["parts"]
    shown = [p for p in parts if p["kind"] == "summary"]
    assert len(shown) == 1 and shown[0]["included"] and summary["text"] in shown[0]["text"]
    assert load_chat(chat_id).summary["covers"] >= summary["covers"]  # kept by the saves that followed
    history_sent = [p["text"] for p in parts if p["kind"] == "history"]
    assert "第0件事" not in " ".join(history_sent)  # the summarised turns are no longer sent
    from ui import conversations

    deadline = time.time() + 120  # a summary started by the last turn finishes before the interpreter exits
    while time.time() < deadline and conversations._summarising:
        time.sleep(0.2)
