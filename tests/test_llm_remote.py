"""The remote backend (llm.backend = "openai"): the same personas, prompts and greedy replies as in-process,
with the forward pass on an OpenAI-compatible server (here a stand-in on loopback: tests/openai_engine.py)."""

from __future__ import annotations

import socket

import pytest

from rolechat import settings
from rolechat.llm import Backend, LLMConfig, Runtime, load_runtime
from rolechat.llm.remote import RemoteError, RemoteRuntime
from tests.app_support import make_adapter
from tests.openai_engine import create_engine_app, serve

GREEDY = {"temperature": 0, "max_new_tokens": 12}
QUESTIONS = [[{"role": "user", "content": "你好，今天怎么样？"}], [{"role": "user", "content": "讲个故事"}]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def engine(tiny_qwen2):
    """Two adapter personas + one prompt-only character, served by the stand-in engine."""
    make_adapter(tiny_qwen2, settings.personas_dir() / "alpha", 1, system="你是阿尔法。")
    make_adapter(tiny_qwen2, settings.personas_dir() / "beta", 2)
    local = Runtime.load(LLMConfig(model=str(tiny_qwen2)))
    app = create_engine_app(local, served_name="tiny-base")
    port = free_port()
    server = serve(app, port)
    yield local, app, f"http://127.0.0.1:{port}/v1"
    server.should_exit = True


def remote_config(tiny_qwen2, url: str, **kw) -> LLMConfig:
    return LLMConfig(model=str(tiny_qwen2), backend="openai", base_url=url, **kw)


def test_every_persona_gives_the_in_process_greedy_reply(engine, tiny_qwen2):
    local, app, url = engine
    remote = load_runtime(remote_config(tiny_qwen2, url))
    assert isinstance(remote, RemoteRuntime)
    assert remote.persona_names() == local.persona_names() == ["base", "alpha", "beta"]
    for persona in ("base", "alpha", "beta"):
        for messages in QUESTIONS:
            assert remote.encode(messages, persona) == local.encode(messages, persona)
            assert remote.chat(messages, persona, GREEDY) == local.chat(messages, persona, GREEDY)
    models = [r["model"] for r in app.state.requests]
    assert {"tiny-base", "alpha", "beta"} <= set(models)


def test_both_loaded_backends_satisfy_the_backend_protocol(engine, tiny_qwen2):
    local, _, url = engine
    remote = load_runtime(remote_config(tiny_qwen2, url))
    assert isinstance(local, Backend) and isinstance(remote, Backend)
    assert not isinstance(remote, Runtime)  # it shares Backend with the local runtime, not the local runtime itself
    assert remote.count_tokens("讲个故事") == local.count_tokens("讲个故事") > 0


def test_the_server_gets_the_locally_rendered_token_ids_with_the_sampling_settings(engine, tiny_qwen2):
    _, app, url = engine
    remote = load_runtime(remote_config(tiny_qwen2, url, repetition_penalty=1.2))
    stream = remote.stream(QUESTIONS[0], "alpha", {"temperature": 0, "max_new_tokens": 5, "stop": ["。"]})
    stream.join()
    body = app.state.requests[-1]
    assert body["prompt"] == remote.encode(QUESTIONS[0], "alpha")  # system prompt applied here, not there
    assert body["repetition_penalty"] == 1.2 and body["temperature"] == 0 and body["max_tokens"] == 5
    assert "。" in body["stop"] and body["stop_token_ids"]
    assert stream.stats.prompt_tokens == len(body["prompt"]) and 0 < stream.stats.completion_tokens <= 5
    assert stream.stats.finish_reason in ("stop", "length")


def test_an_adapter_the_server_does_not_serve_is_listed_with_the_reason(engine, tiny_qwen2):
    _, _, url = engine
    make_adapter(tiny_qwen2, settings.personas_dir() / "gamma", 3)  # trained after the server started
    remote = load_runtime(remote_config(tiny_qwen2, url))
    assert "gamma" not in remote.persona_names()
    broken = {e.name: e.error for e in remote.personas()}
    assert "not served by" in broken["gamma"] and "rolechat export vllm" in broken["gamma"]


def test_closing_a_stream_early_ends_the_request(engine, tiny_qwen2):
    _, _, url = engine
    remote = load_runtime(remote_config(tiny_qwen2, url))
    stream = remote.stream(QUESTIONS[1], "beta", {"temperature": 0, "max_new_tokens": 40})
    next(iter(stream))
    stream.close()
    assert stream.stats.finish_reason == "cancelled"
    assert remote.chat(QUESTIONS[0], "base", GREEDY)  # the server is free again


def test_an_unreachable_server_is_a_clear_error(tiny_qwen2):
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(RemoteError, match=f"{url}/models"):
        load_runtime(remote_config(tiny_qwen2, url))


def test_the_backend_settings_are_validated():
    with pytest.raises(ValueError, match="llm.backend must be local or openai"):
        LLMConfig(backend="grpc")
    with pytest.raises(ValueError, match="llm.base_url must be an http"):
        LLMConfig(backend="openai", base_url="")
