"""rolechat.api: the OpenAI-compatible routes, over a real socket on loopback."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from rolechat.llm import LLMConfig, Runtime
from tests.api_support import RecordingEngine, running, sse_events
from tests.test_llm_runtime import install, make_adapter

GREEDY = {"temperature": 0, "max_tokens": 10}
HELLO = [{"role": "user", "content": "你好"}]


@pytest.fixture
def runtime(tiny_qwen2, tmp_path):
    install(make_adapter(tiny_qwen2, tmp_path / "alpha", 1, system="你是阿尔法。"))
    return Runtime.load(LLMConfig(model=str(tiny_qwen2)))


@pytest.fixture
def server(runtime):
    from rolechat.api import ServerConfig, create_app

    engine = RecordingEngine(runtime)
    with running(create_app(runtime, ServerConfig(api_key="secret"), engine)) as url:
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer secret"}, timeout=60) as client:
            client.engine = engine
            yield runtime, client


def reference(rt: Runtime, messages, persona, max_new_tokens: int = 10, **params) -> str:
    return rt.chat(messages, persona, {"temperature": 0, "max_new_tokens": max_new_tokens, **params})


def test_models_lists_base_and_personas_and_retrieves_one(server):
    _, client = server
    body = client.get("/v1/models").json()
    assert [m["id"] for m in body["data"]] == ["base", "alpha"]
    assert client.get("/v1/models/alpha").json()["id"] == "alpha"
    missing = client.get("/v1/models/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found" and "alpha" in missing.json()["error"]["message"]


def test_completion_matches_the_runtime_with_exact_usage(server):
    rt, client = server
    for model, persona in (("alpha", "alpha"), ("base", None)):
        body = client.post("/v1/chat/completions", json={"model": model, "messages": HELLO, **GREEDY}).json()
        choice = body["choices"][0]
        assert choice["message"]["content"] == reference(rt, HELLO, persona)
        prompt_tokens = len(rt.encode(HELLO, persona))
        stats = client.engine.streams[-1].stats
        assert body["usage"] == {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": stats.completion_tokens,
            "total_tokens": prompt_tokens + stats.completion_tokens,
        }
        # 10 tokens without an end-of-turn token: max_tokens cut the reply
        assert (choice["finish_reason"] == "length") == (
            stats.completion_tokens == 10 and stats.finish_reason == "length"
        )


def test_max_tokens_cut_reports_length_and_a_stop_string_cuts_the_reply(server):
    rt, client = server
    long = client.post("/v1/chat/completions", json={"messages": HELLO, "temperature": 0, "max_tokens": 12}).json()
    assert long["choices"][0]["finish_reason"] == "length" and long["usage"]["completion_tokens"] == 12
    text = long["choices"][0]["message"]["content"]
    stop = text[-1]  # a character the greedy reply reaches
    cut = client.post(
        "/v1/chat/completions", json={"messages": HELLO, "temperature": 0, "max_tokens": 12, "stop": [stop]}
    ).json()
    assert cut["choices"][0]["message"]["content"] == text[: text.find(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"


def test_extreme_but_valid_values_are_answered(server):
    rt, client = server
    tiny = client.post("/v1/chat/completions", json={"messages": HELLO, "temperature": 1e-300, "max_tokens": 10})
    assert tiny.status_code == 200  # not a 500 from logits / 1e-300: a temperature that small is greedy
    assert tiny.json()["choices"][0]["message"]["content"] == reference(rt, HELLO, None)
    for extra in (
        {"seed": 2**64 - 1},
        {"seed": -(2**63)},
        {"max_tokens": 1_000_000},
        {"top_p": 1e-300},
        {"stop": [""]},
    ):
        resp = client.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 3, **extra})
        assert resp.status_code == 200, (extra, resp.text)


def test_streaming_sends_sse_chunks_that_join_to_the_reply(server):
    rt, client = server
    body = {"model": "alpha", "stream": True, "messages": HELLO, **GREEDY}
    with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(resp.iter_lines()))
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("usage" not in c for c in chunks)  # only with stream_options.include_usage
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == reference(rt, HELLO, "alpha")
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_stream_options_include_usage_adds_a_usage_chunk(server):
    rt, client = server
    body = {"stream": True, "stream_options": {"include_usage": True}, "messages": HELLO, **GREEDY}
    with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        events = list(sse_events(resp.iter_lines()))
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["prompt_tokens"] == len(rt.encode(HELLO))
    assert usage_chunk["usage"]["completion_tokens"] == client.engine.streams[-1].stats.completion_tokens
    assert all(c["usage"] is None for c in events[:-2])
    assert events[-3]["choices"][0]["finish_reason"] == "length"


def test_show_prompt_returns_what_the_model_saw(server):
    _, client = server
    ask = {"model": "alpha", "messages": HELLO, **GREEDY, "rolechat": {"user_name": "小明", "show_prompt": True}}
    parts = client.post("/v1/chat/completions", json=ask).json()["prompt_parts"]
    assert parts[-1]["text"] == "你好" and all(p["tokens"] >= 0 for p in parts)
    with client.stream("POST", "/v1/chat/completions", json={**ask, "stream": True}) as resp:
        first = next(sse_events(resp.iter_lines()))
    assert first["prompt_parts"] == parts
    plain = client.post("/v1/chat/completions", json={"messages": HELLO, **GREEDY}).json()
    assert "prompt_parts" not in plain
    bad = client.post("/v1/chat/completions", json={**ask, "rolechat": {"show_prompt": "yes"}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rolechat.show_prompt"


def test_errors_come_in_openai_shape(server):
    _, client = server
    resp = client.post("/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 404 and set(resp.json()["error"]) == {"message", "type", "param", "code"}
    resp = client.post("/v1/chat/completions", json={"model": "base", "messages": []})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "messages"
    resp = client.post(
        "/v1/chat/completions",
        json={"model": "base", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]},
    )
    assert resp.status_code == 400 and "last message" in resp.json()["error"]["message"]
    resp = client.get("/v1/nowhere")
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "not_found_error"


def test_system_and_text_parts_reach_the_engine(server):
    rt, client = server
    messages = [
        {"role": "system", "content": "你是助手。"},
        {"role": "user", "content": [{"type": "text", "text": "你"}, {"type": "text", "text": "好"}]},
    ]
    body = client.post("/v1/chat/completions", json={"messages": messages, **GREEDY}).json()
    plain = [{"role": "system", "content": "你是助手。"}, *HELLO]
    assert body["choices"][0]["message"]["content"] == reference(rt, plain, None)
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]
    assert client.post("/v1/chat/completions", json={"messages": image}).status_code == 400


def test_concurrent_api_requests_for_different_personas(server):
    rt, client = server
    question = [{"role": "user", "content": "介绍一下"}]
    expected = {m: reference(rt, question, None if m == "base" else m) for m in ("base", "alpha")}
    results: dict[str, list[str]] = {"base": [], "alpha": []}

    def call(model: str) -> None:
        with httpx.Client(base_url=client.base_url, headers=client.headers, timeout=60) as c:
            body = c.post("/v1/chat/completions", json={"model": model, "messages": question, **GREEDY}).json()
            results[model].append(body["choices"][0]["message"]["content"])

    threads = [threading.Thread(target=call, args=(m,)) for m in ("base", "alpha") * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == {m: [expected[m]] * 3 for m in expected}


@pytest.fixture
def kb_server(tiny_qwen2, tmp_path):
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from rolechat.api import ServerConfig, create_app
    from rolechat.rag import KnowledgeBase, RAGConfig

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "熊猫.md").write_text("# 熊猫\n\n大熊猫主要吃竹子，生活在四川的山林里。", encoding="utf-8")
    (docs / "天气.txt").write_text("北京的冬天寒冷干燥，夏天炎热多雨。", encoding="utf-8")
    fake = DeterministicFakeEmbedding(size=32)
    KnowledgeBase("demo-kb", RAGConfig(), embeddings=fake).index([docs])
    empty = tmp_path / "empty"
    empty.mkdir()
    KnowledgeBase("empty-kb", RAGConfig(), embeddings=fake).index([empty])
    rt = Runtime.load(LLMConfig(model=str(tiny_qwen2)))
    engine = RecordingEngine(rt, RAGConfig(), embeddings=fake)
    with running(create_app(rt, ServerConfig(), engine=engine)) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            client.engine = engine
            yield client


KB_QUESTION = {
    "model": "base",
    "knowledge_base": "demo-kb",
    "k": 2,
    "messages": [{"role": "user", "content": "大熊猫吃什么？"}],
}


def test_knowledge_base_answers_carry_sources_usage_and_finish_reason(kb_server):
    body = kb_server.post("/v1/chat/completions", json={**KB_QUESTION, **GREEDY}).json()
    assert body["sources"][0]["file"] == "熊猫.md" and body["sources"][0]["n"] == 1
    stats = kb_server.engine.streams[-1].stats
    assert body["usage"]["prompt_tokens"] == stats.prompt_tokens > 0
    assert body["usage"]["completion_tokens"] == stats.completion_tokens
    assert body["choices"][0]["finish_reason"] == ("length" if stats.finish_reason == "length" else "stop")
    short = kb_server.post("/v1/chat/completions", json={**KB_QUESTION, "temperature": 0, "max_tokens": 2}).json()
    assert short["choices"][0]["finish_reason"] == "length" and short["usage"]["completion_tokens"] == 2
    text = body["choices"][0]["message"]["content"]
    stop = text[-1]
    stopped = kb_server.post("/v1/chat/completions", json={**KB_QUESTION, **GREEDY, "stop": stop}).json()
    assert stopped["choices"][0]["message"]["content"] == text[: text.find(stop)]
    missing = kb_server.post("/v1/chat/completions", json={**KB_QUESTION, "knowledge_base": "nope"})
    assert missing.status_code == 404 and "demo-kb" in missing.json()["error"]["message"]


def test_knowledge_base_streams_sources_first_and_usage_last(kb_server):
    body = {**KB_QUESTION, **GREEDY, "stream": True, "stream_options": {"include_usage": True}}
    with kb_server.stream("POST", "/v1/chat/completions", json=body) as resp:
        events = list(sse_events(resp.iter_lines()))
    assert events[0]["sources"][0]["file"] == "熊猫.md"
    assert events[-2]["usage"]["completion_tokens"] == kb_server.engine.streams[-1].stats.completion_tokens


def test_nothing_found_reply_honours_stop_and_max_tokens(kb_server):
    from rolechat.rag import prompts

    ask = {**KB_QUESTION, "knowledge_base": "empty-kb"}
    body = kb_server.post("/v1/chat/completions", json=ask).json()
    assert body["choices"][0]["message"]["content"] == prompts.NOT_FOUND
    assert body["choices"][0]["finish_reason"] == "stop" and body["sources"] == []
    assert body["usage"]["completion_tokens"] > 1
    one = kb_server.post("/v1/chat/completions", json={**ask, "max_tokens": 1}).json()
    assert one["choices"][0]["finish_reason"] == "length" and one["usage"]["completion_tokens"] == 1
    assert prompts.NOT_FOUND.startswith(one["choices"][0]["message"]["content"])
    stop = prompts.NOT_FOUND[3]
    cut = kb_server.post("/v1/chat/completions", json={**ask, "stop": [stop]}).json()
    assert cut["choices"][0]["message"]["content"] == prompts.NOT_FOUND[: prompts.NOT_FOUND.find(stop)]


def test_a_scene_turn_is_answered_by_the_speakers_own_adapter(server, tiny_qwen2, tmp_path):
    """`rolechat.scene` names the characters; the reply comes from the speaker with its own card and adapter,
    exactly as the engine's scene turn (the same call the app and `rolechat chat --scene` make)."""
    from rolechat.conversation import Engine

    rt, client = server
    install(make_adapter(tiny_qwen2, tmp_path / "beta", 2, system="你是贝塔。"))
    rt.reload_personas()
    history = [
        {"role": "user", "content": "你们好"},
        {"role": "assistant", "content": "你好呀", "name": "alpha"},
    ]
    body = {
        "model": "base",
        "messages": [*history, {"role": "user", "content": "贝塔，你呢？"}],
        "rolechat": {"scene": ["alpha", "beta"], "order": "round-robin"},
        **GREEDY,
    }
    reply = client.post("/v1/chat/completions", json=body).json()
    assert reply["rolechat"]["speaker"] == "beta"  # round-robin: alpha spoke last
    engine = Engine(rt)
    turn = engine.prepare_scene(
        "贝塔，你呢？",
        characters=["alpha", "beta"],
        speaker="beta",
        history=history,
        params={"temperature": 0, "max_new_tokens": 10},
    )
    assert turn.persona == "beta"
    assert reply["choices"][0]["message"]["content"] == engine.stream(turn).join()
    bad = client.post(
        "/v1/chat/completions", json={**body, "rolechat": {"scene": ["alpha", "beta"], "speaker": "ghost"}}
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rolechat.speaker"


def test_a_chat_names_its_lorebooks_scenario_and_note_and_carries_its_timed_state(server, tmp_path):
    """`rolechat.lorebooks` names library books (never a server file), `lore_state` goes back and forth."""
    import json

    from rolechat.conversation.books import add_book

    rt, client = server
    world = {
        "name": "天气",
        "entries": {
            "0": {
                "uid": 0,
                "key": ["雨"],
                "content": "外面下着大雨。",
                "order": 5,
                "position": 4,
                "depth": 0,
                "role": 0,
                "sticky": 5,
            }
        },
    }
    path = tmp_path / "world.json"
    path.write_text(json.dumps(world, ensure_ascii=False), encoding="utf-8")
    add_book(path)
    options = {
        "lorebooks": ["天气"],
        "scenario": "暴雨夜",
        "authors_note": {"text": "保持紧张。", "depth": 1},
        "show_prompt": True,
    }
    body = {"model": "base", "messages": [{"role": "user", "content": "下雨了"}], "rolechat": options, **GREEDY}
    reply = client.post("/v1/chat/completions", json=body).json()
    parts = {p["text"]: p for p in reply["prompt_parts"]}
    assert parts["外面下着大雨。"]["source"] == "天气" and parts["保持紧张。"]["included"]
    state = reply["rolechat"]["lore_state"]
    assert set(state["sticky"]) == {"天气.0"} and reply["rolechat"]["user_text"] == "下雨了"
    later = [
        {"role": "user", "content": "下雨了"},
        {"role": "assistant", "content": "是的"},
        {"role": "user", "content": "晴了"},
    ]
    body = {**body, "messages": later, "rolechat": {**options, "lore_state": state}}
    again = client.post("/v1/chat/completions", json=body).json()
    assert any(p["text"] == "外面下着大雨。" and p["why"].startswith("sticky") for p in again["prompt_parts"])
    for name, code in (("没有这本", 404), (str(path), 404)):  # a path is refused like any unknown name
        bad = client.post("/v1/chat/completions", json={**body, "rolechat": {"lorebooks": [name]}})
        assert bad.status_code == code and bad.json()["error"]["code"] == "lorebook_not_found"
    bad = client.post("/v1/chat/completions", json={**body, "rolechat": {"authors_note": {"text": "x", "depth": -1}}})
    assert bad.status_code == 400 and bad.json()["error"]["param"]


def test_a_manual_scene_needs_a_speaker_and_a_saved_scene_is_named(server, tiny_qwen2, tmp_path):
    from rolechat.conversation.scene import Scene, save_scene

    rt, client = server
    install(make_adapter(tiny_qwen2, tmp_path / "beta", 2))  # alpha is the fixture's
    rt.reload_personas()
    body = {"model": "base", "messages": [{"role": "user", "content": "大家好"}], **GREEDY}
    manual = client.post(
        "/v1/chat/completions", json={**body, "rolechat": {"scene": ["alpha", "beta"], "order": "manual"}}
    )
    assert manual.status_code == 400 and manual.json()["error"]["param"] == "rolechat.speaker"
    save_scene(Scene("茶会", ["alpha", "beta"], order="list", scenario="雨夜"))
    listed = client.post("/v1/chat/completions", json={**body, "rolechat": {"scene_name": "茶会", "show_prompt": True}})
    assert listed.status_code == 200 and listed.json()["rolechat"]["speaker"] == "alpha"  # list order: the first
    assert any(p["label"].startswith("scenario") and "雨夜" in p["text"] for p in listed.json()["prompt_parts"])
    missing = client.post("/v1/chat/completions", json={**body, "rolechat": {"scene_name": "没有"}})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "scene_not_found"


def test_a_long_chat_gets_a_summary_to_send_back(tiny_qwen2, monkeypatch):
    """When the prompt had to leave older turns out, the response carries their summary; sent back with the
    same history, it stands in for them (as the app keeps a summary with a saved chat)."""
    from fastapi.testclient import TestClient

    from rolechat.api import create_app
    from rolechat.conversation.summary import SUMMARY_PROMPT

    head = SUMMARY_PROMPT.split("{previous}")[0]
    original = Runtime.chat

    def chat(self, messages, persona=None, params=None):
        if messages[-1]["content"].startswith(head):
            return "小明和店家约好八点在东门茶馆见面。"  # the tiny model's own summary would be blank
        return original(self, messages, persona, params)

    monkeypatch.setattr(Runtime, "chat", chat)
    rt = Runtime.load(LLMConfig(model=str(tiny_qwen2), context_length=512))
    history = []
    for n in range(12):
        history += [
            {"role": "user", "content": f"第{n}件事：明天早上八点在东门茶馆见面，记得带上旧书。"},
            {"role": "assistant", "content": f"好的，第{n}件事我记下了。"},
        ]
    body = {
        "model": "base",
        "messages": [*history, {"role": "user", "content": "我们约在哪里？"}],
        "max_tokens": 8,
        "temperature": 0,
        "rolechat": {"show_prompt": True},
    }
    with TestClient(create_app(rt)) as client:
        first = client.post("/v1/chat/completions", json=body).json()
        summary = first["rolechat"]["summary"]
        assert summary["text"] == "小明和店家约好八点在东门茶馆见面。" and 0 < summary["covers"] <= len(history)
        assert any(p["kind"] == "history" and not p["included"] for p in first["prompt_parts"])
        again = client.post(
            "/v1/chat/completions", json={**body, "rolechat": {"show_prompt": True, "summary": summary}}
        )
        parts = again.json()["prompt_parts"]
        assert [p["text"] for p in parts if p["kind"] == "summary"] == [f"此前对话的概要：{summary['text']}"]
        sent = " ".join(p["text"] for p in parts if p["kind"] == "history")
        assert "第0件事" not in sent  # the summarised turns are no longer sent
        streamed = client.post("/v1/chat/completions", json={**body, "stream": True}).text
        chunks = [json.loads(line[6:]) for line in streamed.splitlines() if line.startswith("data: {")]
        last = next(c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"])
        assert last["rolechat"]["summary"] == summary  # streaming: in the chunk with finish_reason
        stale = {**body, "rolechat": {"show_prompt": True, "summary": {"text": "x", "covers": 999}}}
        assert not any(
            p["kind"] == "summary" for p in client.post("/v1/chat/completions", json=stale).json()["prompt_parts"]
        )
