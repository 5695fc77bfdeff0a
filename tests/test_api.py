"""rolechat.api: the OpenAI-compatible server, over a real socket on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from rolechat.llm import LLMConfig, Runtime
from tests.test_llm_runtime import install, make_adapter

GREEDY = {"temperature": 0, "max_tokens": 10}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tiny_qwen2, tmp_path):
    import uvicorn

    from rolechat.api import ServerConfig, create_app

    install(make_adapter(tiny_qwen2, tmp_path / "alpha", 1, system="你是阿尔法。"))
    rt = Runtime.load(LLMConfig(model=str(tiny_qwen2)))
    cfg = ServerConfig(port=free_port(), api_key="secret")
    srv = uvicorn.Server(uvicorn.Config(create_app(rt, cfg), host="127.0.0.1", port=cfg.port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{cfg.port}", headers={"Authorization": "Bearer secret"}, timeout=60
    )
    yield rt, client
    client.close()
    srv.should_exit = True
    thread.join(timeout=10)


def test_models_lists_base_and_personas(server):
    rt, client = server
    body = client.get("/v1/models").json()
    assert [m["id"] for m in body["data"]] == ["base", "alpha"]


def test_api_key_is_required_when_configured(server):
    _, client = server
    assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_completion_matches_the_runtime_for_each_persona(server):
    rt, client = server
    for model, persona in (("alpha", "alpha"), ("base", None)):
        body = client.post(
            "/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "你好"}], **GREEDY}
        ).json()
        expected = rt.chat([{"role": "user", "content": "你好"}], persona, {"temperature": 0, "max_new_tokens": 10})
        assert body["choices"][0]["message"]["content"] == expected
        assert body["usage"]["completion_tokens"] > 0


def test_streaming_sends_sse_chunks_that_join_to_the_reply(server):
    rt, client = server
    pieces, done = [], False
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "alpha", "stream": True, "messages": [{"role": "user", "content": "你好"}], **GREEDY},
    ) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                break
            chunk = json.loads(line[6:])
            pieces.append(chunk["choices"][0]["delta"].get("content", ""))
    assert done
    assert "".join(pieces) == rt.chat(
        [{"role": "user", "content": "你好"}], "alpha", {"temperature": 0, "max_new_tokens": 10}
    )


def test_unknown_model_and_bad_requests_are_clear_errors(server):
    _, client = server
    resp = client.post("/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 404 and "alpha" in resp.json()["detail"]
    resp = client.post("/v1/chat/completions", json={"model": "base", "messages": []})
    assert resp.status_code == 422
    resp = client.post(
        "/v1/chat/completions",
        json={"model": "base", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]},
    )
    assert resp.status_code == 400 and "last message" in resp.json()["detail"]


def test_concurrent_api_requests_for_different_personas(server):
    rt, client = server
    expected = {
        m: rt.chat(
            [{"role": "user", "content": "介绍一下"}],
            None if m == "base" else m,
            {"temperature": 0, "max_new_tokens": 10},
        )
        for m in ("base", "alpha")
    }
    results: dict[str, list[str]] = {"base": [], "alpha": []}

    def call(model: str) -> None:
        with httpx.Client(base_url=client.base_url, headers=client.headers, timeout=60) as c:
            body = c.post(
                "/v1/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": "介绍一下"}], **GREEDY},
            ).json()
            results[model].append(body["choices"][0]["message"]["content"])

    threads = [threading.Thread(target=call, args=(m,)) for m in ("base", "alpha") * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == {m: [expected[m]] * 3 for m in expected}


@pytest.fixture
def kb_server(tiny_qwen2, tmp_path):
    import uvicorn
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from rolechat.api import ServerConfig, create_app
    from rolechat.conversation import Engine
    from rolechat.rag import KnowledgeBase, RAGConfig

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "熊猫.md").write_text("# 熊猫\n\n大熊猫主要吃竹子，生活在四川的山林里。", encoding="utf-8")
    (docs / "天气.txt").write_text("北京的冬天寒冷干燥，夏天炎热多雨。", encoding="utf-8")
    fake = DeterministicFakeEmbedding(size=32)
    KnowledgeBase("demo-kb", RAGConfig(), embeddings=fake).index([docs])
    rt = Runtime.load(LLMConfig(model=str(tiny_qwen2)))
    cfg = ServerConfig(port=free_port())
    app = create_app(rt, cfg, engine=Engine(rt, RAGConfig(), embeddings=fake))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=cfg.port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    with httpx.Client(base_url=f"http://127.0.0.1:{cfg.port}", timeout=60) as client:
        yield client
    srv.should_exit = True
    thread.join(timeout=10)


def test_knowledge_base_answers_carry_their_sources(kb_server):
    body = kb_server.post(
        "/v1/chat/completions",
        json={
            "model": "base",
            "knowledge_base": "demo-kb",
            "k": 2,
            **GREEDY,
            "messages": [{"role": "user", "content": "大熊猫吃什么？"}],
        },
    ).json()
    assert body["sources"][0]["file"] == "熊猫.md" and body["sources"][0]["n"] == 1
    assert isinstance(body["choices"][0]["message"]["content"], str)
    missing = kb_server.post(
        "/v1/chat/completions",
        json={"model": "base", "knowledge_base": "nope", "messages": [{"role": "user", "content": "x"}]},
    )
    assert missing.status_code == 400 and "demo-kb" in missing.json()["detail"]
