"""Helpers for the API tests: a real uvicorn server on loopback, a slowed-down model, an engine that
keeps the streams it hands out (to read their stats after the response)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rolechat.conversation import Engine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve `app` on a free loopback port; yields the base URL."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    assert server.started, "the test server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


class RecordingEngine(Engine):
    """The real engine, keeping every stream it returns."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.streams: list[Any] = []

    def stream(self, turn: Any) -> Any:
        stream = super().stream(turn)
        self.streams.append(stream)
        return stream


@contextmanager
def slowed(runtime: Any, seconds: float) -> Iterator[None]:
    """Every forward pass of the runtime's model takes at least `seconds` (a stand-in for a big model)."""
    handle = runtime.model.register_forward_pre_hook(lambda module, args: time.sleep(seconds))
    try:
        yield
    finally:
        handle.remove()


def sse_events(lines: Iterator[str]) -> Iterator[Any]:
    """Decoded `data:` payloads of a server-sent event stream ("[DONE]" as the string)."""
    import json

    for line in lines:
        if line.startswith("data: "):
            payload = line[6:]
            yield payload if payload == "[DONE]" else json.loads(payload)


def knowledge_app(model_dir: Any, docs_dir: Any, **server: Any) -> tuple[Any, RecordingEngine, Any]:
    """(runtime, engine, app) with a knowledge base `demo-kb` of two small documents, on fake embeddings."""
    from pathlib import Path

    from langchain_core.embeddings import DeterministicFakeEmbedding

    from rolechat.api import ServerConfig, create_app
    from rolechat.llm import LLMConfig, Runtime
    from rolechat.rag import KnowledgeBase, RAGConfig

    docs = Path(docs_dir)
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "熊猫.md").write_text("# 熊猫\n\n大熊猫主要吃竹子，生活在四川的山林里。", encoding="utf-8")
    (docs / "天气.txt").write_text("北京的冬天寒冷干燥，夏天炎热多雨。", encoding="utf-8")
    fake = DeterministicFakeEmbedding(size=32)
    KnowledgeBase("demo-kb", RAGConfig(), embeddings=fake).index([docs])
    runtime = Runtime.load(LLMConfig(model=str(model_dir)))
    engine = RecordingEngine(runtime, RAGConfig(), embeddings=fake)
    return runtime, engine, create_app(runtime, ServerConfig(**server), engine=engine)


_SERVER_SCRIPT = """
import json, sys
import uvicorn
from rolechat.api import ServerConfig, create_app
from rolechat.conversation import ConversationConfig, Engine
from rolechat.llm import LLMConfig, Runtime

model, port, server, chat = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
runtime = Runtime.load(LLMConfig(model=model))
app = create_app(runtime, ServerConfig(port=port, **server), Engine(runtime, chat_cfg=ConversationConfig(**chat)))
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2)
"""


class ServerURL(str):
    """The base URL of a server process, with the process itself (`.process`) for tests that stop it."""

    process: Any


@contextmanager
def server_process(model_dir: Any, chat: dict | None = None, **server: Any) -> Iterator[ServerURL]:
    """`rolechat serve` as users run it: its own process (its own interpreter lock), stopped with SIGTERM,
    which must end it promptly whatever it is doing. `chat`: ConversationConfig fields. Yields the base URL."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    import httpx

    port = free_port()
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER_SCRIPT, str(model_dir), str(port), json.dumps(server), json.dumps(chat or {})],
        cwd=root,
    )
    url = ServerURL(f"http://127.0.0.1:{port}")
    url.process = proc
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, "the server process exited"
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline, "the server process did not start"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("SIGTERM did not stop the server within 20 s") from None
    assert code in (0, -15), f"the server process exited with {code}"
