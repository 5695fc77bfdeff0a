"""rolechat.api.tutorial: the classic ChatGLM FastAPI tutorial endpoint (`POST /`)."""

from __future__ import annotations

import datetime
import json

import httpx
import pytest

from rolechat.api import ServerConfig, create_app
from rolechat.llm import LLMConfig, Runtime
from tests.api_support import RecordingEngine, running
from tests.test_llm_runtime import install, make_adapter


@pytest.fixture
def tutorial(tiny_qwen2, tmp_path):
    install(make_adapter(tiny_qwen2, tmp_path / "alpha", 1, system="你是阿尔法。"))
    rt = Runtime.load(LLMConfig(model=str(tiny_qwen2)))
    engine = RecordingEngine(rt)
    with running(create_app(rt, ServerConfig(), engine)) as url, httpx.Client(base_url=url, timeout=60) as client:
        client.engine = engine
        yield rt, client


def test_the_tutorial_contract_with_pair_history(tutorial):
    rt, client = tutorial
    history = [["你好", "你好！"]]
    body = client.post("/", json={"prompt": "介绍一下", "history": history, "temperature": 0, "max_length": 64}).json()
    assert set(body) == {"response", "history", "status", "time"} and body["status"] == 200
    datetime.datetime.strptime(body["time"], "%Y-%m-%d %H:%M:%S")
    messages = [
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "你好！"},
        {"role": "user", "content": "介绍一下"},
    ]
    prompt_tokens = len(rt.encode(messages))
    # max_length bounds prompt + reply, as in ChatGLM's model.chat
    assert body["response"] == rt.chat(messages, None, {"temperature": 0, "max_new_tokens": 64 - prompt_tokens})
    assert client.engine.streams[-1].stats.completion_tokens <= 64 - prompt_tokens
    assert body["history"] == [["你好", "你好！"], ["介绍一下", body["response"]]]


def test_personas_and_chatglm3_history(tutorial):
    rt, client = tutorial
    history = [{"role": "user", "content": "你好"}, {"role": "assistant", "metadata": "", "content": "嗯"}]
    for field in ("persona", "model"):
        body = client.post("/", json={"prompt": "你是谁", "history": history, "temperature": 0, field: "alpha"}).json()
        messages = [{"role": m["role"], "content": m["content"]} for m in history] + [
            {"role": "user", "content": "你是谁"}
        ]
        assert body["response"] == rt.chat(messages, "alpha", {"temperature": 0})
        assert body["history"][-2:] == [
            {"role": "user", "content": "你是谁"},
            {"role": "assistant", "content": body["response"]},
        ]


def test_tutorial_errors_are_4xx(tutorial):
    _, client = tutorial
    cases = [
        ({"history": []}, 400),  # no prompt
        ({"prompt": "x", "history": [["only one"]]}, 400),
        ({"prompt": "x", "temperature": float("nan")}, 400),
        ({"prompt": "x", "max_length": 2}, 400),  # no room for a reply
        ({"prompt": "x", "persona": "nobody"}, 404),
    ]
    for body, status in cases:
        raw = json.dumps(body)  # Python's encoder writes NaN, as a careless client would
        resp = client.post("/", content=raw, headers={"Content-Type": "application/json"})
        assert resp.status_code == status, (body, resp.text)
        assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
