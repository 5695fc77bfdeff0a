"""The three doors send the runtime the same prompt: the app's chat page, the CLI (`chat`, `ask`) and the API.

`Runtime.stream` is wrapped to record the token ids each door's reply is generated from; for the same
character, user persona, greeting, message (and knowledge base), the ids are identical.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from rolechat.conversation import Character, Lorebook, LoreEntry
from rolechat.llm import LLMConfig, Runtime
from tests.app_support import app_test, write_docs

CARD = Character(
    name="林夕",
    description="{{char}}是长安城的说书人。",
    personality="健谈",
    scenario="{{user}}走进茶馆",
    first_mes="{{user}}，请坐。",
    mes_example="<START>\n{{user}}: 你好\n{{char}}: 客官好",
    post_history_instructions="保持{{char}}的口吻。",
    character_book=Lorebook(entries=[LoreEntry(keys=["北京"], content="{{char}}去过北京。", comment="北京")]),
)
USER = ("小明", "一个爱喝茶的学生")
MESSAGE = "北京有什么名胜？"


@pytest.fixture
def recorded(monkeypatch):
    """(persona, prompt ids) of every generation, whichever door started it."""
    calls: list[tuple[str | None, list[int]]] = []
    original = Runtime.stream

    def stream(self, messages, persona=None, params=None, persona_system=True):
        calls.append((persona, self.prompt_ids(messages, persona, persona_system)))
        return original(self, messages, persona, params, persona_system)

    monkeypatch.setattr(Runtime, "stream", stream)
    return calls


@pytest.fixture
def character_and_kb(tmp_path):
    import ui.kb
    from rolechat.conversation.characters import save_character
    from rolechat.rag import KnowledgeBase

    save_character(CARD, "linxi")
    kb = KnowledgeBase("城市", ui.kb.rag_config(), embeddings=ui.kb.embeddings())
    kb.index([write_docs(tmp_path / "docs")])
    kb.close()


def from_app(monkeypatch, model, recorded, *, kb: bool) -> list[int]:
    at = app_test(monkeypatch, model).run()
    at.sidebar.selectbox(key="persona").select("linxi").run()
    at.sidebar.text_input(key="user_name").set_value(USER[0]).run()
    at.sidebar.text_area(key="user_description").set_value(USER[1]).run()
    assert at.session_state["history"][0]["content"] == "小明，请坐。"  # the chat opens with the greeting
    at.sidebar.toggle(key="kb_on").set_value(kb).run()
    if kb:
        at.sidebar.selectbox(key="mode").select("bm25").run()
        at.sidebar.checkbox(key="condense").uncheck().run()
    recorded.clear()
    at.chat_input[0].set_value(MESSAGE).run()
    assert not at.exception
    assert len(recorded) == 1 and recorded[0][0] == "linxi"
    return recorded[0][1]


def from_cli(model, recorded, *, kb: bool) -> list[int]:
    from rolechat.cli import app

    user = ["--user-name", USER[0], "--user-description", USER[1], "--max-new-tokens", "12", "--temperature", "0"]
    if kb:
        args = ["ask", MESSAGE, "--kb", "城市", "-p", "linxi", "--mode", "bm25", "--model", str(model), *user]
    else:
        args = ["chat", "-p", "linxi", "-m", MESSAGE, "--model", str(model), *user]
    recorded.clear()
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(recorded) == 1 and recorded[0][0] == "linxi"
    return recorded[0][1]


def from_api(model, recorded, *, kb: bool) -> list[int]:
    from fastapi.testclient import TestClient
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from rolechat.api import create_app
    from rolechat.conversation import Engine
    from rolechat.rag import RAGConfig

    rt = Runtime.load(LLMConfig(model=str(model)))
    engine = Engine(rt, RAGConfig(mode="bm25"), embeddings=DeterministicFakeEmbedding(size=64))
    opening = [] if kb else [{"role": "assistant", "content": "小明，请坐。"}]  # a client sends the greeting itself
    body = {
        "model": "linxi",
        "messages": [*opening, {"role": "user", "content": MESSAGE}],
        "temperature": 0,
        "max_tokens": 12,
        "rolechat": {"user_name": USER[0], "user_description": USER[1], "show_prompt": True},
        **({"knowledge_base": "城市"} if kb else {}),
    }
    recorded.clear()
    with TestClient(create_app(rt, engine=engine)) as client:
        response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    parts = response.json()["prompt_parts"]
    assert {"kind": "lore-triggered", "label": "林夕: 北京", "source": "林夕"}.items() <= parts[1].items()
    assert len(recorded) == 1 and recorded[0][0] == "linxi"
    return recorded[0][1]


@pytest.mark.parametrize("kb", [False, True], ids=["chat", "knowledge-base"])
def test_the_app_the_cli_and_the_api_send_the_same_prompt(monkeypatch, tiny_qwen2, recorded, character_and_kb, kb):
    app_ids = from_app(monkeypatch, tiny_qwen2, recorded, kb=kb)
    cli_ids = from_cli(tiny_qwen2, recorded, kb=kb)
    api_ids = from_api(tiny_qwen2, recorded, kb=kb)
    assert app_ids == cli_ids == api_ids
    text = Runtime.load(LLMConfig(model=str(tiny_qwen2))).tokenizer.decode(app_ids)
    assert "林夕去过北京。" in text and "关于小明：一个爱喝茶的学生" in text  # triggered lore, the user persona
    assert ("使用以下上下文来回答" in text) is kb  # the knowledge-base answer prompt only with a knowledge base


SUWAN = Character(
    name="苏婉",
    description="{{char}}是茶馆的老板娘。",
    personality="爽快",
    first_mes="哟，{{user}}来了。",
    post_history_instructions="{{char}}只说一句话。",
)


def scene_from_app(monkeypatch, model, recorded) -> list[int]:
    at = app_test(monkeypatch, model).run()
    at.sidebar.multiselect(key="scene").select("linxi").select("suwan").run()
    at.sidebar.text_input(key="user_name").set_value(USER[0]).run()
    at.sidebar.text_area(key="user_description").set_value(USER[1]).run()
    at.sidebar.selectbox(key="next_speaker").select("suwan").run()
    recorded.clear()
    at.chat_input[0].set_value(MESSAGE).run()
    assert not at.exception
    assert [m.get("name") for m in at.session_state["history"]] == ["linxi", "suwan", None, "suwan"]
    assert len(recorded) == 1 and recorded[0][0] == "suwan"
    return recorded[0][1]


def scene_from_cli(model, recorded) -> list[int]:
    from rolechat.cli import app

    user = ["--user-name", USER[0], "--user-description", USER[1], "--max-new-tokens", "12", "--temperature", "0"]
    args = ["chat", "--scene", "linxi,suwan", "--speaker", "suwan", "-m", MESSAGE, "--model", str(model), *user]
    recorded.clear()
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(recorded) == 1 and recorded[0][0] == "suwan"
    return recorded[0][1]


def scene_from_api(model, recorded) -> list[int]:
    from fastapi.testclient import TestClient

    from rolechat.api import create_app
    from rolechat.conversation import Engine, UserPersona

    rt = Runtime.load(LLMConfig(model=str(model)))
    engine = Engine(rt)
    opening = engine.scene_greetings(["linxi", "suwan"], UserPersona(*USER))  # a client sends the greetings itself
    body = {
        "model": "suwan",
        "messages": [*opening, {"role": "user", "content": MESSAGE}],
        "temperature": 0,
        "max_tokens": 12,
        "rolechat": {
            "user_name": USER[0],
            "user_description": USER[1],
            "scene": ["linxi", "suwan"],
            "speaker": "suwan",
        },
    }
    recorded.clear()
    with TestClient(create_app(rt, engine=engine)) as client:
        response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["rolechat"]["speaker"] == "suwan"
    assert len(recorded) == 1 and recorded[0][0] == "suwan"
    return recorded[0][1]


def test_the_three_doors_send_the_same_prompt_for_a_scene_turn(monkeypatch, tiny_qwen2, recorded, character_and_kb):
    from rolechat.conversation.characters import save_character

    save_character(SUWAN, "suwan")
    app_ids = scene_from_app(monkeypatch, tiny_qwen2, recorded)
    cli_ids = scene_from_cli(tiny_qwen2, recorded)
    api_ids = scene_from_api(tiny_qwen2, recorded)
    assert app_ids == cli_ids == api_ids
    text = Runtime.load(LLMConfig(model=str(tiny_qwen2))).tokenizer.decode(app_ids)
    assert "林夕：小明，请坐。" in text and "你只扮演苏婉" in text  # the others' lines, named; the scene note
    assert "<|im_start|>assistant\n哟，小明来了。" in text  # the speaker's own greeting is its own turn


def test_every_door_runs_its_turns_through_the_session(monkeypatch, tiny_qwen2, recorded, character_and_kb):
    """No door prepares a turn of its own: with Session.prepare refusing, the app, the CLI and the API all fail."""
    from rolechat.conversation.session import Session

    def refuse(self, speaker=None):
        raise ValueError("session refused")

    monkeypatch.setattr(Session, "prepare", refuse)
    from rolechat.cli import app

    result = CliRunner().invoke(app, ["chat", "-p", "linxi", "-m", MESSAGE, "--model", str(tiny_qwen2)])
    assert result.exit_code != 0 and "session refused" in result.output
    at = app_test(monkeypatch, tiny_qwen2).run()
    at.sidebar.selectbox(key="persona").select("linxi").run()
    at.chat_input[0].set_value(MESSAGE).run()
    assert at.session_state["history"][-1]["error"] == "session refused"
    from fastapi.testclient import TestClient

    from rolechat.api import create_app

    rt = Runtime.load(LLMConfig(model=str(tiny_qwen2)))
    with TestClient(create_app(rt)) as client:
        body = {"model": "linxi", "messages": [{"role": "user", "content": MESSAGE}]}
        response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400 and "session refused" in response.json()["error"]["message"]
    assert recorded == []
