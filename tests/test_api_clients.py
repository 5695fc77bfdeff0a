"""rolechat.api driven by the clients our users use: the official `openai` package and LangChain's
ChatOpenAI, streaming and not, with and without a knowledge base, errors included."""

from __future__ import annotations

import httpx
import openai
import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

from tests.api_support import knowledge_app, running
from tests.test_llm_runtime import install, make_adapter

KEY = "client-key"
HELLO = [{"role": "user", "content": "你好"}]


@pytest.fixture
def served(tiny_qwen2, tmp_path):
    install(make_adapter(tiny_qwen2, tmp_path / "alpha", 1, system="你是阿尔法。"))
    runtime, engine, app = knowledge_app(tiny_qwen2, tmp_path / "docs", api_key=KEY)
    with running(app) as url:
        yield runtime, engine, url


@pytest.fixture
def client(served):
    _, _, url = served
    with openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0) as c:
        yield c


def greedy(rt, messages, persona=None, n=10) -> str:
    return rt.chat(messages, persona, {"temperature": 0, "max_new_tokens": n})


def test_openai_models(client):
    assert [m.id for m in client.models.list()] == ["base", "alpha"]
    assert client.models.retrieve("alpha").id == "alpha"
    with pytest.raises(openai.NotFoundError, match="available: base, alpha"):
        client.models.retrieve("nope")


def test_openai_chat_non_streaming_and_streaming(served, client):
    rt, engine, _ = served
    reply = client.chat.completions.create(model="alpha", messages=HELLO, temperature=0, max_tokens=10)
    assert reply.choices[0].message.content == greedy(rt, HELLO, "alpha")
    assert reply.usage.completion_tokens == engine.streams[-1].stats.completion_tokens
    assert reply.choices[0].finish_reason in ("stop", "length")
    stream = client.chat.completions.create(
        model="alpha",
        messages=HELLO,
        temperature=0,
        max_tokens=10,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content
    assert chunks[-1].usage.total_tokens == reply.usage.total_tokens


def test_openai_chat_with_a_knowledge_base(served, client):
    _, engine, _ = served
    ask = {"model": "base", "messages": [{"role": "user", "content": "大熊猫吃什么？"}], "max_tokens": 5}
    reply = client.chat.completions.create(**ask, temperature=0, extra_body={"knowledge_base": "demo-kb", "k": 2})
    assert reply.model_extra["sources"][0]["file"] == "熊猫.md"
    assert reply.usage.completion_tokens == engine.streams[-1].stats.completion_tokens
    chunks = list(
        client.chat.completions.create(
            **ask, temperature=0, stream=True, extra_body={"knowledge_base": "demo-kb", "k": 2}
        )
    )
    assert chunks[0].model_extra["sources"][0]["file"] == "熊猫.md"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == reply.choices[0].message.content


def test_openai_errors_carry_the_message(served, client):
    _, _, url = served
    with pytest.raises(openai.BadRequestError, match="n = 2 is not supported") as info:
        client.chat.completions.create(model="base", messages=HELLO, n=2)
    assert info.value.param == "n" and info.value.code == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError, match="response_format"):
        client.chat.completions.create(model="base", messages=HELLO, response_format={"type": "json_object"})
    with pytest.raises(openai.BadRequestError, match="tools"):
        client.chat.completions.create(
            model="base", messages=HELLO, tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]
        )
    with pytest.raises(openai.NotFoundError, match="nope"):
        client.chat.completions.create(model="nope", messages=HELLO)
    with pytest.raises(openai.NotFoundError, match="Knowledge base"):
        client.chat.completions.create(model="base", messages=HELLO, extra_body={"knowledge_base": "nope"})
    with openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0) as stranger:
        with pytest.raises(openai.AuthenticationError, match="API key"):
            stranger.models.list()


def test_openai_client_reaches_every_other_route(served, client):
    """The knowledge-base, tutorial, health and metrics routes, through the client's own HTTP layer."""
    kbs = client.get("/knowledge_bases", cast_to=object)
    assert [kb["id"] for kb in kbs["data"]] == ["demo-kb"]
    hits = client.post("/knowledge_bases/demo-kb/search", body={"query": "熊猫", "mode": "bm25"}, cast_to=object)
    assert hits["data"][0]["file"] == "熊猫.md"
    with pytest.raises(openai.NotFoundError):
        client.get("/knowledge_bases/nope/documents", cast_to=object)
    root = str(client.base_url).removesuffix("/v1/")
    tutorial = client.post(root + "/", body={"prompt": "你好", "history": [], "max_length": 64}, cast_to=object)
    assert tutorial["status"] == 200 and tutorial["history"][0][0] == "你好"
    assert client.get(root + "/health", cast_to=object)["status"] == "ok"
    metrics = client.get(root + "/metrics", cast_to=httpx.Response).text
    assert 'route="/v1/knowledge_bases/{name}/search"' in metrics


def test_langchain_chat_openai(served):
    rt, engine, url = served
    llm = ChatOpenAI(base_url=url + "/v1", api_key=KEY, model="alpha", temperature=0, max_tokens=10, max_retries=0)
    message = llm.invoke([HumanMessage("你好")])
    assert message.content == greedy(rt, HELLO, "alpha")
    assert message.usage_metadata["output_tokens"] == engine.streams[-1].stats.completion_tokens
    assert message.response_metadata["finish_reason"] in ("stop", "length")
    pieces = list(llm.stream([HumanMessage("你好")]))
    assert all(isinstance(p, AIMessageChunk) for p in pieces)
    assert "".join(p.content for p in pieces) == message.content
    with_system = llm.invoke([SystemMessage("你是助手。"), HumanMessage("你好")])
    assert with_system.content == greedy(rt, [{"role": "system", "content": "你是助手。"}, *HELLO], "alpha")


def test_langchain_with_a_knowledge_base_and_errors(served):
    _, _, url = served
    llm = ChatOpenAI(
        base_url=url + "/v1",
        api_key=KEY,
        model="base",
        temperature=0,
        max_tokens=5,
        max_retries=0,
        extra_body={"knowledge_base": "demo-kb", "k": 2},
    )
    streamed = "".join(p.content for p in llm.stream("大熊猫吃什么？"))
    assert streamed == llm.invoke("大熊猫吃什么？").content
    bad = ChatOpenAI(base_url=url + "/v1", api_key=KEY, model="nope", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="nope"):
        bad.invoke("你好")
