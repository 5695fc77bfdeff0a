"""rolechat.api under the probes a serving API must survive: bursts of concurrent streams with /health
probed meanwhile, full queues, mid-stream disconnects, bad values, huge bodies and histories, auth,
metrics. A real uvicorn server on loopback, a tiny model (slowed down where timing matters)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
import time

import httpx
import pytest

from rolechat.api import ServerConfig, create_app
from rolechat.llm import LLMConfig, Runtime
from tests.api_support import RecordingEngine, running, server_process, slowed, sse_events

HELLO = [{"role": "user", "content": "你好"}]
KEY = "probe-key"


@pytest.fixture
def runtime(tiny_qwen2):
    return Runtime.load(LLMConfig(model=str(tiny_qwen2)))


def serve(runtime, **server):
    engine = RecordingEngine(runtime)
    return engine, running(create_app(runtime, ServerConfig(**server), engine))


def error_of(resp: httpx.Response) -> dict:
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


# -- bursts ------------------------------------------------------------------------------------------------


async def _burst(url: str, n: int, max_tokens: int) -> tuple[list[int], list[str]]:
    """n concurrent streaming requests; returns their statuses and each one's last event."""
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(base_url=url, timeout=900, limits=limits) as client:
        body = {"messages": HELLO, "stream": True, "max_tokens": max_tokens, "temperature": 0}

        async def one() -> tuple[int, str]:
            async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
                last = ""
                async for line in resp.aiter_lines():
                    if line.startswith("data: "):
                        last = line[6:]
                return resp.status_code, last

        results = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), timeout=900)
    return [s for s, _ in results], [last for _, last in results]


_PROBE_SCRIPT = """
import json, sys, threading, time
import httpx
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
latencies = []
with httpx.Client(base_url=sys.argv[1], timeout=30) as client:
    while not stop.is_set():
        start = time.perf_counter()
        assert client.get("/health").status_code == 200
        latencies.append(time.perf_counter() - start)
        time.sleep(0.05)
print(json.dumps(latencies))
"""


def _check_burst(model_dir, n: int) -> None:
    """The server in its own process (as deployed), /health probed every 50 ms from a third process (so the
    test's own clients never delay a probe) while the burst runs; SIGTERM afterwards must stop the server
    (server_process checks)."""
    with server_process(model_dir, max_queue=n) as url:
        prober = subprocess.Popen(
            [sys.executable, "-c", _PROBE_SCRIPT, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            statuses, lasts = asyncio.run(_burst(url, n, max_tokens=3))
        finally:
            out, _ = prober.communicate("", timeout=60)
        latencies = json.loads(out)
        assert statuses == [200] * n
        assert lasts == ["[DONE]"] * n
        assert len(latencies) >= 3 and max(latencies) < 1.0, sorted(latencies)[-5:]
        assert httpx.get(url + "/health", timeout=5).json()["in_flight"] == 0
        metrics = httpx.get(url + "/metrics", timeout=5).text
        assert f'rolechat_requests_total{{method="POST",route="/v1/chat/completions",status="200"}} {n}.0' in metrics


@pytest.mark.parametrize("n", [41, 64])
def test_bursts_of_streams_all_finish_and_health_stays_fast(tiny_qwen2, n):
    _check_burst(tiny_qwen2, n)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_burst_of_200_streams(tiny_qwen2):
    _check_burst(tiny_qwen2, 200)


def test_beyond_the_queue_is_a_429_with_retry_after(runtime):
    engine, server = serve(runtime, max_concurrent=1, max_queue=1)
    with slowed(runtime, 0.05), server as url:

        async def main() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                body = {"messages": HELLO, "max_tokens": 10, "temperature": 0}
                return await asyncio.gather(*(client.post("/v1/chat/completions", json=body) for _ in range(5)))

        responses = asyncio.run(main())
        codes = sorted(r.status_code for r in responses)
        assert codes.count(200) >= 2, [r.text for r in responses]
        assert codes.count(200) >= 2 and codes.count(429) >= 1 and set(codes) == {200, 429}
        refused = next(r for r in responses if r.status_code == 429)
        assert int(refused.headers["Retry-After"]) >= 1
        assert error_of(refused)["type"] == "rate_limit_error"
        metrics = httpx.get(url + "/metrics", timeout=5).text
        assert 'rolechat_rejected_total{reason="queue_full"}' in metrics


def test_waiting_longer_than_the_queue_timeout_is_a_429(runtime):
    engine, server = serve(runtime, max_concurrent=1, queue_timeout=0.3)
    with slowed(runtime, 0.05), server as url:

        async def main() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                body = {"messages": HELLO, "max_tokens": 20, "temperature": 0}
                return await asyncio.gather(*(client.post("/v1/chat/completions", json=body) for _ in range(3)))

        codes = sorted(r.status_code for r in asyncio.run(main()))
        assert codes[0] == 200 and 429 in codes


# -- disconnects -------------------------------------------------------------------------------------------


def _open_and_hang_up(url: str) -> int:
    """Start a long stream, read the first content chunk, hang up. Returns the completion tokens seen."""
    body = {"messages": HELLO, "stream": True, "max_tokens": 200, "temperature": 0}
    with httpx.Client(base_url=url, timeout=30) as client:
        with client.stream("POST", "/v1/chat/completions", json=body) as resp:
            for event in sse_events(resp.iter_lines()):
                if event["choices"][0]["delta"].get("content"):
                    break
    return 1


def test_a_client_that_hangs_up_cancels_its_generation_and_frees_the_model(runtime):
    engine, server = serve(runtime)
    with slowed(runtime, 0.05), server as url:
        for attempt in range(4):  # repeated disconnects leave nothing behind
            _open_and_hang_up(url)
            deadline = time.time() + 5  # the slot is handed back only once the model lock is released
            while httpx.get(url + "/health").json()["in_flight"] and time.time() < deadline:
                time.sleep(0.01)
            stats = engine.streams[-1].stats
            assert stats.finish_reason == "cancelled", attempt
            # one chunk read (>= 1 token); at most two more were generated before the model stopped
            assert stats.completion_tokens <= 1 + 1 + 2, stats
            assert not runtime._model_lock.locked()
            started = time.perf_counter()
            reply = httpx.post(
                url + "/v1/chat/completions", json={"messages": HELLO, "max_tokens": 2, "temperature": 0}, timeout=30
            )
            assert reply.status_code == 200
            assert time.perf_counter() - started < 10  # served at once, not after the 200-token stream
        health = httpx.get(url + "/health").json()
        assert health["in_flight"] == 0 and health["queued"] == 0


def test_a_non_streaming_client_that_gives_up_cancels_too(runtime):
    engine, server = serve(runtime)
    with slowed(runtime, 0.03), server as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                url + "/v1/chat/completions",
                json={"messages": HELLO, "max_tokens": 300, "temperature": 0},
                timeout=httpx.Timeout(30, read=0.5),
            )
        deadline = time.time() + 5
        while not (engine.streams and engine.streams[-1].stats.finish_reason) and time.time() < deadline:
            time.sleep(0.01)
        assert engine.streams[-1].stats.finish_reason == "cancelled"
        assert engine.streams[-1].stats.completion_tokens < 100


def test_a_request_abandoned_in_the_queue_never_runs(runtime):
    engine, server = serve(runtime, max_concurrent=1)
    with slowed(runtime, 0.05), server as url:

        async def main() -> int:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                body = {"messages": HELLO, "max_tokens": 30, "temperature": 0}
                first = asyncio.create_task(client.post("/v1/chat/completions", json=body))
                await asyncio.sleep(0.3)  # the first one holds the only slot
                with pytest.raises(httpx.ReadTimeout):
                    await client.post("/v1/chat/completions", json=body, timeout=httpx.Timeout(60, read=0.3))
                return (await first).status_code

        assert asyncio.run(main()) == 200
        assert len(engine.streams) == 1  # the abandoned request was never prepared nor generated
        assert httpx.get(url + "/health").json()["queued"] == 0
        assert 'status="499"' in httpx.get(url + "/metrics").text


# -- bad values --------------------------------------------------------------------------------------------

MSG = '"messages": [{"role": "user", "content": "x"}]'


def body(fields: str) -> str:
    """A valid request body plus `fields` (raw JSON text: NaN, Infinity and escapes stay as written)."""
    return "{" + MSG + ", " + fields + "}"


BAD_BODIES = {
    "nan temperature": (body('"temperature": NaN'), "temperature"),
    "infinite top_p": (body('"top_p": Infinity'), "top_p"),
    "-infinite temperature": (body('"temperature": -Infinity'), "temperature"),
    "seed 2**64": (body(f'"seed": {2**64}'), "seed"),
    "seed below int64": (body(f'"seed": {-(2**63) - 1}'), "seed"),
    "lone surrogate": ('{"messages": [{"role": "user", "content": "a\\ud800b"}]}', "messages.0.content"),
    "surrogate in model": (body('"model": "\\udfff"'), "model"),
    "surrogate in stop": (body('"stop": "\\ud800"'), "stop"),
    "messages not a list": ('{"messages": "hi"}', "messages"),
    "temperature a word": (body('"temperature": "hot"'), "temperature"),
    "temperature too high": (body('"temperature": 3'), "temperature"),
    "stream a word": (body('"stream": "yes"'), "stream"),
    "max_tokens a float": (body('"max_tokens": 1.5'), "max_tokens"),
    "max_tokens zero": (body('"max_tokens": 0'), "max_tokens"),
    "k too big": (body('"k": 1000'), "k"),
    "tool role": ('{"messages": [{"role": "tool", "content": "x"}]}', "messages.0.role"),
    "n 2": (body('"n": 2'), "n"),
    "logprobs": (body('"logprobs": true'), "logprobs"),
    "json mode": (body('"response_format": {"type": "json_object"}'), "response_format"),
    "tools": (body('"tools": [{"type": "function", "function": {"name": "f"}}]'), "tools"),
    "tool_choice": (body('"tool_choice": "required"'), "tool_choice"),
    "functions": (body('"functions": [{"name": "f"}]'), "functions"),
    "logit_bias": (body('"logit_bias": {"1": 5}'), "logit_bias"),
    "presence_penalty": (body('"presence_penalty": 1'), "presence_penalty"),
    "unknown field": (body('"best_of": 3'), "best_of"),
    "stream_options without stream": (body('"stream_options": {"include_usage": true}'), "stream_options"),
    "not json": ("{messages", None),
    "not an object": ("[1, 2]", None),
    "empty body": ("", None),
    "deeply nested": ("[" * 100_000 + "]" * 100_000, None),
    "a 5000-digit integer": (body('"seed": ' + "9" * 5000), None),
    "a number beyond float": (body('"temperature": 1e400'), "temperature"),
    "invalid utf-8": (b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', None),
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_every_invalid_value_is_a_400_in_openai_shape(runtime, name):
    raw, param = BAD_BODIES[name]
    engine, server = serve(runtime)
    with server as url, httpx.Client(base_url=url, timeout=30) as client:
        resp = client.post("/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})
        assert resp.status_code == 400, resp.text
        error = error_of(resp)
        assert error["type"] == "invalid_request_error" and error["param"] == param
        assert "Traceback" not in resp.text
        # the kept-alive connection still serves the next request
        assert resp.headers.get("connection") != "close"
        assert client.get("/health").status_code == 200
        assert engine.streams == []


def test_an_unexpected_error_is_a_500_without_traceback_and_is_logged(runtime, caplog):
    class Broken(RecordingEngine):
        def prepare(self, *args, **kwargs):
            raise RuntimeError("boom in prepare")

    with running(create_app(runtime, ServerConfig(), Broken(runtime))) as url, httpx.Client(base_url=url) as client:
        with caplog.at_level(logging.ERROR):
            resp = client.post("/v1/chat/completions", json={"messages": HELLO})
        assert resp.status_code == 500 and error_of(resp)["type"] == "server_error"
        assert "boom" not in resp.text and "Traceback" not in resp.text
        assert any("boom in prepare" in (r.exc_text or "") or r.exc_info for r in caplog.records)
        assert client.get("/health").status_code == 200


# -- sizes -------------------------------------------------------------------------------------------------


def _raw(url: str, head: str, body: bytes = b"", timeout: float = 10) -> bytes:
    """Send raw request bytes and read until the server closes or a full small response arrived."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.encode() + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 1 << 30


def test_a_huge_body_is_refused_from_its_content_length_before_it_is_sent(runtime):
    engine, server = serve(runtime, max_body_bytes=1 << 20)
    with server as url:
        head = (
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {50 << 20}\r\n\r\n"
        )
        reply = _raw(url, head, b'{"messages": [')  # 14 of 50 MB sent: the answer must not wait for the rest
        assert reply.startswith(b"HTTP/1.1 413")
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_too_large"


def test_a_chunked_body_is_cut_off_at_the_limit(runtime):
    engine, server = serve(runtime, max_body_bytes=1 << 16)
    with server as url:

        def chunks():
            yield b'{"messages": [{"role": "user", "content": "'
            for _ in range(64):
                yield b"x" * 4096

        resp = httpx.post(url + "/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"})
        assert resp.status_code == 413 and error_of(resp)["code"] == "request_too_large"


def test_huge_histories_and_prompts_are_refused_cheaply(runtime):
    engine, server = serve(runtime, max_messages=100, max_prompt_chars=20000, max_prompt_tokens=3000)
    with server as url, httpx.Client(base_url=url, timeout=30) as client:
        turns = [{"role": r, "content": "你好"} for _ in range(500) for r in ("user", "assistant")] + HELLO
        resp = client.post("/v1/chat/completions", json={"messages": turns})
        assert resp.status_code == 400 and error_of(resp)["code"] == "too_many_messages"
        resp = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "好" * 30000}]})
        assert resp.status_code == 400 and error_of(resp)["code"] == "context_length_exceeded"
        resp = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "天气" * 9000}]})
        error = error_of(resp)
        assert resp.status_code == 400 and error["code"] == "context_length_exceeded" and "tokens" in error["message"]
        assert engine.streams == []  # none of them reached the model
        ok = client.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 2})
        assert ok.status_code == 200


# -- auth --------------------------------------------------------------------------------------------------


def test_auth_is_checked_before_the_body_is_read(runtime):
    engine, server = serve(runtime, api_key=KEY)
    with server as url:
        head = (
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {50 << 20}\r\n\r\n"
        )
        reply = _raw(url, head, b"{")  # almost none of the 50 MB sent
        assert reply.startswith(b"HTTP/1.1 401")
        assert b"www-authenticate: Bearer" in reply.lower().replace(b"bearer", b"Bearer")


@pytest.mark.parametrize("path", ["/v1/models", "/docs", "/redoc", "/openapi.json", "/metrics", "/v1/knowledge_bases"])
def test_everything_but_health_needs_the_key(runtime, path):
    engine, server = serve(runtime, api_key=KEY)
    with server as url:
        assert httpx.get(url + "/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
            resp = httpx.get(url + path, headers=headers)
            assert resp.status_code == 401 and error_of(resp)["code"] == "invalid_api_key"
        assert httpx.get(url + path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_the_key_can_come_from_a_file_or_the_environment(runtime, tmp_path, monkeypatch):
    from rolechat import settings

    key_file = tmp_path / "key.txt"
    key_file.write_text("from-file\n", encoding="utf-8")
    assert ServerConfig(api_key_file=str(key_file)).key() == "from-file"
    assert settings.build(ServerConfig, "server", {"server": {"api_key_file": str(key_file)}}).key() == "from-file"
    monkeypatch.setenv("ROLECHAT_SERVER_API_KEY", "from-env")
    assert settings.build(ServerConfig, "server", {"server": {"api_key_file": str(key_file)}}).key() == "from-env"
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="empty.txt"):
        ServerConfig(api_key_file=str(tmp_path / "empty.txt"))
    with pytest.raises(ValueError, match="missing.txt"):
        ServerConfig(api_key_file=str(tmp_path / "missing.txt"))
    with running(create_app(runtime, ServerConfig(api_key_file=str(key_file)))) as url:
        assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer from-file"}).status_code == 200
        assert httpx.get(url + "/v1/models").status_code == 401


def test_a_key_with_whitespace_around_it_is_trimmed_at_start_up_and_inside_it_is_refused(runtime, monkeypatch, caplog):
    from rolechat import settings

    monkeypatch.setenv("ROLECHAT_SERVER_API_KEY", "from-env\n")  # ROLECHAT_SERVER_API_KEY=$(cat key)
    with caplog.at_level(logging.WARNING):
        server = settings.build(ServerConfig, "server", {})
    assert server.key() == "from-env" and "trimmed" in caplog.text
    with running(create_app(runtime, server)) as url:
        assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer from-env"}).status_code == 200
    monkeypatch.setenv("ROLECHAT_SERVER_API_KEY", "two words")
    with pytest.raises(ValueError, match="must not contain whitespace"):
        settings.build(ServerConfig, "server", {})


def test_a_body_that_is_not_utf8_is_invalid_json(runtime):
    engine, server = serve(runtime)
    with server as url:
        resp = httpx.post(
            url + "/v1/chat/completions",
            content=b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}',
            headers={"Content-Type": "application/json"},
        )
        assert resp.status_code == 400 and error_of(resp)["code"] == "invalid_json"


def test_no_answer_names_a_server_folder(runtime, tiny_qwen2):
    engine, server = serve(runtime)
    with server as url, httpx.Client(base_url=url, timeout=30) as client:
        health, models = client.get("/health").json(), client.get("/v1/models").json()
        assert health["model"] == tiny_qwen2.name and models["data"][0]["root"] == tiny_qwen2.name
        reply = client.post("/v1/chat/completions", json={"model": tiny_qwen2.name, "messages": HELLO, "max_tokens": 1})
        assert reply.status_code == 200  # the folder's name works as the base model's id
        unknown = client.post("/v1/chat/completions", json={"model": "nobody", "messages": HELLO})
        for body in (health, models, unknown.json()):
            assert str(tiny_qwen2.parent) not in json.dumps(body, ensure_ascii=False)


def test_an_unknown_model_rescans_the_personas_only_when_a_folder_changed(runtime, monkeypatch):
    from rolechat.conversation.card import Character
    from rolechat.conversation.characters import save_character

    scans = []
    monkeypatch.setattr(runtime, "reload_personas", lambda real=runtime.reload_personas: scans.append(1) or real())
    engine, server = serve(runtime)
    with server as url, httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(3):
            assert client.post("/v1/chat/completions", json={"model": "later", "messages": HELLO}).status_code == 404
        assert client.get("/v1/models").status_code == 200
        assert len(scans) <= 1  # the first look may find the folders changed since the runtime loaded
        save_character(Character(name="后来者"), "later")  # a character imported while the server runs
        reply = client.post("/v1/chat/completions", json={"model": "later", "messages": HELLO, "max_tokens": 1})
        assert reply.status_code == 200 and len(scans) <= 2


# -- hostile cards -----------------------------------------------------------------------------------------


def _backtracking_character(name: str, pattern: str) -> None:
    from rolechat.conversation.card import Character
    from rolechat.conversation.characters import save_character
    from rolechat.conversation.lorebook import Lorebook, LoreEntry

    book = Lorebook(entries=[LoreEntry(keys=[f"/{pattern}/"], content="回溯的设定", comment="回溯")])
    save_character(Character(name=name, character_book=book), name)


def test_a_backtracking_lorebook_key_blocks_neither_health_nor_other_requests_nor_sigterm(tiny_qwen2):
    """The issue's probe: a card whose key backtracks for hours on "aaa…!". Its request takes the pattern's time
    limit (3 s here) and no more; /health, probed from a third process, and another chat answer meanwhile;
    SIGTERM during a second such match stops the server at once."""
    _backtracking_character("slow", "(a|aa)+$")
    _backtracking_character("slow2", "(a|aa)+(?:$)")
    with server_process(tiny_qwen2, chat={"lore_regex_timeout": 3.0, "lore_scan_seconds": 30.0}) as url:
        prober = subprocess.Popen(
            [sys.executable, "-c", _PROBE_SCRIPT, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        body = {"model": "slow", "messages": [{"role": "user", "content": "a" * 47 + "!"}], "max_tokens": 2}

        async def both() -> tuple[httpx.Response, httpx.Response, float]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                slow = asyncio.create_task(client.post("/v1/chat/completions", json=body))
                await asyncio.sleep(0.5)
                start = time.perf_counter()
                other = await client.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 2})
                other_seconds = time.perf_counter() - start
                return await slow, other, other_seconds

        try:
            slow, other, other_seconds = asyncio.run(both())
        finally:
            out, _ = prober.communicate("", timeout=60)
        assert slow.status_code == 200 and other.status_code == 200 and other_seconds < 2.5
        latencies = json.loads(out)
        assert len(latencies) >= 20 and max(latencies) < 1.0, sorted(latencies)[-5:]
        stuck = subprocess.Popen(  # a second request, into a fresh pattern's 3 s of backtracking
            [sys.executable, "-c", f"import httpx; httpx.post({url + '/v1/chat/completions'!r}, json={body!r})"]
        )
        time.sleep(1.0)
        start = time.perf_counter()
        url.process.terminate()
        url.process.wait(timeout=20)
        assert time.perf_counter() - start < 5  # uvicorn's graceful shutdown is 2 s here
        stuck.wait(timeout=20)


# -- metrics -----------------------------------------------------------------------------------------------


def test_metrics_count_requests_tokens_and_latency(runtime):
    from prometheus_client.parser import text_string_to_metric_families

    engine, server = serve(runtime)
    with server as url, httpx.Client(base_url=url, timeout=30) as client:
        client.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 3, "temperature": 0})
        client.post("/v1/chat/completions", json={"messages": []})
        text = client.get("/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    route = (("method", "POST"), ("route", "/v1/chat/completions"))
    assert samples[("rolechat_requests_total", (*route, ("status", "200")))] == 1
    assert samples[("rolechat_requests_total", (*route, ("status", "400")))] == 1
    assert samples[("rolechat_request_duration_seconds_count", route)] == 2
    stats = engine.streams[0].stats
    assert samples[("rolechat_completion_tokens_total", ())] == stats.completion_tokens == 3
    assert samples[("rolechat_prompt_tokens_total", ())] == stats.prompt_tokens
    assert samples[("rolechat_queue_depth", ())] == 0 and samples[("rolechat_in_flight", ())] == 0
