"""The chat page (app.py, default page) under streamlit's AppTest, on the tiny Qwen2 model.

Replies are greedy, so each one must equal what the runtime itself answers for the same persona and
history: that is how these tests see that persona switches and settings really reach the model.
"""

from __future__ import annotations

import shutil

import pytest

from rolechat import settings
from tests.app_support import app_test, assistant_texts, loaded_runtime, make_adapter, write_docs

GREEDY = {"temperature": 0.0, "max_new_tokens": 12}


@pytest.fixture(scope="module")
def adapters(tiny_qwen2, tmp_path_factory):
    root = tmp_path_factory.mktemp("app-personas")
    return {
        "alpha": make_adapter(tiny_qwen2, root / "alpha", 1, display_name="阿尔法", system="你是阿尔法，说话简短。"),
        "beta": make_adapter(tiny_qwen2, root / "beta", 2, display_name="贝塔"),
    }


def install(*folders) -> None:
    for folder in folders:
        shutil.copytree(folder, settings.personas_dir() / folder.name)


def expected(history: list[dict], persona: str) -> str:
    rt = loaded_runtime()
    messages = [{"role": m["role"], "content": m["content"]} for m in history]
    return rt.chat(messages, persona=persona, params={**GREEDY, "top_p": 0.9})


def test_plain_chat_streams_the_runtimes_reply_and_shows_model_and_stats(monkeypatch, tiny_qwen2):
    at = app_test(monkeypatch, tiny_qwen2).run()
    assert not at.exception
    assert any(str(tiny_qwen2) in c.value for c in at.caption)  # which model, on which device
    assert not at.warning  # not the demo model: no demo banner
    assert at.sidebar.selectbox(key="persona").options == ["基础模型（不加角色）"]
    assert at.sidebar.slider(key="temperature").value == 0.0  # defaults come from [llm] / ROLECHAT_LLM_*

    at.chat_input[0].set_value("你好").run()
    assert not at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    history = at.session_state["history"]
    assert history[-1]["content"] == expected(history[:1], "base")
    assert history[-1]["stats"]["completion_tokens"] > 0
    meta = at.chat_message[1].caption[-1].value
    assert "基础模型" in meta and "词元/秒" in meta


def test_persona_switch_applies_to_the_next_message_and_broken_personas_are_listed(monkeypatch, tiny_qwen2, adapters):
    install(adapters["alpha"], adapters["beta"])
    broken = settings.personas_dir() / "broken"
    broken.mkdir()
    (broken / "persona.json").write_text("{not json", encoding="utf-8")
    corrupt = settings.personas_dir() / "corrupt"
    shutil.copytree(adapters["beta"], corrupt)
    (corrupt / "adapter_model.safetensors").write_bytes(b"garbage")
    (corrupt / "persona.json").write_text(
        (adapters["beta"] / "persona.json").read_text(encoding="utf-8").replace('"beta"', '"corrupt"'), encoding="utf-8"
    )

    at = app_test(monkeypatch, tiny_qwen2).run()
    assert not at.exception
    picker = at.sidebar.selectbox(key="persona")
    assert picker.options == ["基础模型（不加角色）", "阿尔法 (alpha)", "贝塔 (beta)"]
    unavailable = next(e for e in at.sidebar.expander if e.label.startswith("不可用的角色"))
    assert unavailable.label == "不可用的角色（2）"
    assert {"**broken**", "**corrupt**"} <= {m.value.removeprefix("⚠️ ") for m in unavailable.markdown}

    picker.select("alpha").run()
    assert "你是阿尔法，说话简短。" in [m.value for m in at.sidebar.expander[0].markdown]
    at.chat_input[0].set_value("你好").run()
    at.sidebar.selectbox(key="persona").select("beta").run()
    at.chat_input[0].set_value("你是谁").run()
    assert not at.exception

    history = at.session_state["history"]
    assert [m.get("persona") for m in history] == [None, "alpha", None, "beta"]
    alpha_reply, beta_reply = assistant_texts(at)
    assert alpha_reply == expected(history[:1], "alpha")
    assert beta_reply == expected(history[:3], "beta")
    assert expected(history[:1], "alpha") != expected(history[:1], "beta")  # the switch is observable
    assert "贝塔" in at.chat_message[3].caption[-1].value


def test_rag_answers_show_numbered_sources_and_say_when_nothing_is_found(monkeypatch, tiny_qwen2, tmp_path, adapters):
    import ui.kb
    from rolechat.rag import KnowledgeBase
    from rolechat.rag.chain import history_text
    from rolechat.rag.prompts import CONDENSE_PROMPT, NOT_FOUND

    install(adapters["alpha"])  # its greedy replies are not blank, so the rewrite below is visible
    at = app_test(monkeypatch, tiny_qwen2)
    kb = KnowledgeBase("城市", ui.kb.rag_config(), embeddings=ui.kb.embeddings())
    kb.index([write_docs(tmp_path / "docs")])
    kb.close()

    at.run()
    assert not at.exception
    assert at.sidebar.selectbox(key="kb_name").value == "城市"
    assert at.sidebar.toggle(key="kb_on").value is True
    at.sidebar.selectbox(key="persona").select("alpha").run()
    at.sidebar.selectbox(key="mode").select("bm25").run()
    at.sidebar.checkbox(key="condense").uncheck().run()

    at.chat_input[0].set_value("北京是哪个国家的首都？").run()
    assert not at.exception
    reply = at.session_state["history"][-1]
    assert reply["kb"] == "城市"
    assert reply["sources"][0]["file"] == "beijing.md"  # the one source shape (rolechat.conversation.source_rows)
    assert "首都" in reply["sources"][0]["snippet"]
    sources = at.chat_message[1].expander[0]
    assert sources.label.startswith("参考来源")
    assert "**[1]** `beijing.md`" in sources.markdown[0].value

    at.chat_input[0].set_value("zzz qqq").run()  # no term in common with any document
    reply = at.session_state["history"][-1]
    assert reply["sources"] == [] and reply["content"] == NOT_FOUND
    assert "没有找到相关内容" in at.chat_message[3].info[0].value

    at.sidebar.checkbox(key="condense").check().run()  # follow-ups are rewritten with the history first
    at.chat_input[0].set_value("那里有什么名胜？").run()
    assert not at.exception
    history = at.session_state["history"]
    rewrite = CONDENSE_PROMPT.format(chat_history=history_text(history[:4]), question="那里有什么名胜？")
    rt = loaded_runtime()
    expected_standalone = " ".join(
        rt.chat(
            [{"role": "user", "content": rewrite}], persona="alpha", params={"temperature": 0, "max_new_tokens": 96}
        ).split()
    )
    assert expected_standalone and history[-1]["standalone"] == expected_standalone
    assert f"检索用的问题：{expected_standalone}" in [c.value for c in at.chat_message[5].caption]

    at.sidebar.toggle(key="kb_on").set_value(False).run()
    at.chat_input[0].set_value("北京").run()
    assert not at.exception
    reply = at.session_state["history"][-1]
    assert reply["kb"] is None and reply["sources"] is None
    assert not [e for e in at.chat_message[7].expander if e.label.startswith("参考来源")]  # no sources block


def test_clear_conversation_and_language_switch(monkeypatch, tiny_qwen2):
    at = app_test(monkeypatch, tiny_qwen2).run()
    at.chat_input[0].set_value("你好").run()
    assert len(at.chat_message) == 2
    next(b for b in at.sidebar.button if b.label == "清空对话").click().run()
    assert at.session_state["history"] == [] and not at.chat_message

    at.radio(key="lang").set_value("en").run()
    assert not at.exception
    assert at.title[0].value == "Chat"
    assert next(b for b in at.sidebar.button if b.label == "Clear conversation")


def test_an_interrupted_reply_is_kept_and_marked_stopped(monkeypatch, tiny_qwen2):
    at = app_test(monkeypatch, tiny_qwen2).run()
    at.session_state["history"] = [{"role": "user", "content": "讲个长故事"}]
    at.session_state["pending"] = {
        "role": "assistant",
        "content": "从前有",
        "persona": "base",
        "persona_label": "基础模型（不加角色）",
        "kb": None,
        "sources": None,
        "stats": {},
    }
    at.run()
    assert not at.exception
    assert at.session_state["history"][-1]["content"] == "从前有"
    assert "（已停止）" in at.chat_message[1].caption[-1].value


def test_a_missing_model_is_a_clear_error_and_other_pages_still_work(monkeypatch, tmp_path):
    at = app_test(monkeypatch, tmp_path / "no-such-model").run()
    assert not at.exception
    assert "模型加载失败" in at.error[0].value and "no-such-model" in at.error[0].value
    at.switch_page("ui/pages/kb.py").run()
    assert not at.exception and at.title[0].value == "知识库"
    at.switch_page("ui/pages/train.py").run()
    assert not at.exception and at.title[0].value == "训练角色"


def test_first_run_indexes_the_sample_folder_once(monkeypatch, tiny_qwen2, tmp_path):
    samples = write_docs(tmp_path / "knowledge")
    at = app_test(monkeypatch, tiny_qwen2, sample_dir=samples).run()
    assert not at.exception
    assert at.sidebar.selectbox(key="kb_name").options == ["示例知识库"]
    assert any("示例知识库" in s.value for s in at.success)

    from rolechat.rag import delete_kb

    delete_kb("示例知识库")  # a user who deletes it doesn't get it back on the next visit
    at = app_test(monkeypatch, tiny_qwen2, sample_dir=samples).run()
    assert not at.exception
    assert "kb_name" not in [s.key for s in at.sidebar.selectbox]  # no knowledge base at all: no picker
    assert any("还没有知识库" in c.value for c in at.sidebar.caption)


def test_rag_reply_stats_are_the_models_own_token_counts(monkeypatch, tiny_qwen2, tmp_path):
    import ui.kb
    from rolechat.rag import KnowledgeBase

    at = app_test(monkeypatch, tiny_qwen2)
    kb = KnowledgeBase("城市", ui.kb.rag_config(), embeddings=ui.kb.embeddings())
    kb.index([write_docs(tmp_path / "docs")])
    kb.close()
    at.run()
    at.sidebar.selectbox(key="mode").select("bm25").run()
    at.chat_input[0].set_value("北京").run()
    assert not at.exception
    assert at.session_state["history"][-1]["stats"]["completion_tokens"] == 12  # greedy, no end token: max_new_tokens
