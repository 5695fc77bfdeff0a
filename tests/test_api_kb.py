"""rolechat.api.kb_routes: list, search, upload (a background job), delete, over a real server."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.api_support import knowledge_app, running


@pytest.fixture
def kb_client(tiny_qwen2, tmp_path):
    runtime, engine, app = knowledge_app(tiny_qwen2, tmp_path / "docs")
    with running(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        client.engine = engine
        yield client


def wait_for(client: httpx.Client, job: dict) -> dict:
    deadline = time.time() + 120
    while job["status"] in ("queued", "running") and time.time() < deadline:
        time.sleep(0.1)
        job = client.get(f"/v1/index_jobs/{job['id']}").json()
    return job


def test_list_and_search(kb_client):
    listing = kb_client.get("/v1/knowledge_bases").json()
    assert listing["data"] == [{"id": "demo-kb", "object": "knowledge_base", "documents": 2, "chunks": 2}]
    docs = kb_client.get("/v1/knowledge_bases/demo-kb/documents").json()["data"]
    assert sorted(d["file"] for d in docs) == ["天气.txt", "熊猫.md"]
    hits = kb_client.post("/v1/knowledge_bases/demo-kb/search", json={"query": "大熊猫吃什么", "k": 2, "mode": "bm25"})
    rows = hits.json()["data"]
    assert rows[0]["rank"] == 1 and rows[0]["file"] == "熊猫.md" and "竹子" in rows[0]["text"]
    assert rows[0]["location"] is not None and isinstance(rows[0]["score"], float)
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_errors_in_openai_shape(kb_client):
    for method, path, kwargs, status in [
        ("GET", "/v1/knowledge_bases/nope/documents", {}, 404),
        ("POST", "/v1/knowledge_bases/nope/search", {"json": {"query": "x"}}, 404),
        ("POST", "/v1/knowledge_bases/demo-kb/search", {"json": {"query": ""}}, 400),
        ("POST", "/v1/knowledge_bases/demo-kb/search", {"json": {"query": "x", "mode": "magic"}}, 400),
        ("DELETE", "/v1/knowledge_bases/demo-kb/documents/none.txt", {}, 404),
        ("GET", "/v1/index_jobs/index-nothing", {}, 404),
        ("POST", "/v1/knowledge_bases/demo-kb/documents", {"files": {"files": ("..", b"x")}}, 400),
        ("POST", "/v1/knowledge_bases/demo-kb/documents", {}, 400),  # no files
    ]:
        resp = kb_client.request(method, path, **kwargs)
        assert resp.status_code == status, (path, resp.text)
        assert set(resp.json()["error"]) == {"message", "type", "param", "code"}


def test_upload_indexes_in_the_background_then_chat_and_search_see_it(kb_client):
    text = "长城是中国古代的军事防御工程，全长两万多公里。".encode()
    resp = kb_client.post(
        "/v1/knowledge_bases/demo-kb/documents",
        files=[
            ("files", ("长城.txt", text, "text/plain")),
            ("files", ("notes.md", b"# Notes\n\nplain notes", "text/markdown")),
        ],
    )
    assert resp.status_code == 202 and resp.headers["location"].startswith("/v1/index_jobs/")
    job = wait_for(kb_client, resp.json())
    assert job["status"] == "succeeded", job
    assert job["report"]["summary"]["indexed"] == 2 and job["files"] == ["长城.txt", "notes.md"]
    names = {d["file"] for d in kb_client.get("/v1/knowledge_bases/demo-kb/documents").json()["data"]}
    assert {"长城.txt", "notes.md", "熊猫.md"} <= names
    hits = kb_client.post("/v1/knowledge_bases/demo-kb/search", json={"query": "长城", "mode": "bm25"}).json()["data"]
    assert hits[0]["file"] == "长城.txt"
    # the chat path sees the new document too (the engine's cached handle was dropped)
    body = kb_client.post(
        "/v1/chat/completions",
        json={
            "knowledge_base": "demo-kb",
            "messages": [{"role": "user", "content": "长城"}],
            "max_tokens": 3,
            "temperature": 0,
        },
    ).json()
    assert "长城.txt" in [s["file"] for s in body["sources"]]

    deleted = kb_client.delete("/v1/knowledge_bases/demo-kb/documents/长城.txt").json()
    assert deleted["deleted"] is True and deleted["chunks_removed"] >= 1
    hits = kb_client.post("/v1/knowledge_bases/demo-kb/search", json={"query": "长城", "mode": "bm25"}).json()["data"]
    assert "长城.txt" not in [h["file"] for h in hits]
    assert "长城.txt" not in {d["file"] for d in kb_client.get("/v1/knowledge_bases/demo-kb/documents").json()["data"]}


def test_upload_creates_a_new_knowledge_base(kb_client):
    resp = kb_client.post("/v1/knowledge_bases/新库/documents", files={"files": ("a.txt", "桂花在秋天开放。".encode())})
    job = wait_for(kb_client, resp.json())
    assert job["status"] == "succeeded"
    assert "新库" in [kb["id"] for kb in kb_client.get("/v1/knowledge_bases").json()["data"]]
    bad = kb_client.post("/v1/knowledge_bases/a:b/documents", files={"files": ("a.txt", b"x")})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "name"


def test_an_upload_over_the_limit_is_a_413(tiny_qwen2, tmp_path):
    _, _, app = knowledge_app(tiny_qwen2, tmp_path / "docs", max_upload_bytes=4096)
    with running(app) as url:
        resp = httpx.post(url + "/v1/knowledge_bases/demo-kb/documents", files={"files": ("big.txt", b"x" * 10000)})
        assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"


def test_no_answer_names_a_server_path(kb_client, tmp_path):
    """Documents, search hits, chat sources and index reports name documents by their id: an upload's file
    name, or the path below the folder indexed; never where the server keeps them."""
    import json

    from rolechat import settings

    docs = kb_client.get("/v1/knowledge_bases/demo-kb/documents").json()["data"]
    assert sorted(d["id"] for d in docs) == ["docs/天气.txt", "docs/熊猫.md"]
    job = wait_for(
        kb_client,
        kb_client.post(
            "/v1/knowledge_bases/demo-kb/documents", files={"files": ("长城.txt", "长城很长。".encode())}
        ).json(),
    )
    assert [f["path"] for f in job["report"]["files"]] == ["长城.txt"]
    docs = kb_client.get("/v1/knowledge_bases/demo-kb/documents").json()
    hits = kb_client.post("/v1/knowledge_bases/demo-kb/search", json={"query": "熊猫 长城", "mode": "bm25"}).json()
    chat = kb_client.post(
        "/v1/chat/completions",
        json={"knowledge_base": "demo-kb", "messages": [{"role": "user", "content": "熊猫"}], "max_tokens": 2},
    ).json()
    assert {h["source"] for h in hits["data"]} <= {"docs/天气.txt", "docs/熊猫.md", "长城.txt"}
    assert {s["source"] for s in chat["sources"]} <= {"docs/天气.txt", "docs/熊猫.md", "长城.txt"}
    for body in (docs, hits, chat, job):
        text = json.dumps(body, ensure_ascii=False)
        assert str(tmp_path) not in text and str(settings.home()) not in text
    deleted = kb_client.delete("/v1/knowledge_bases/demo-kb/documents/docs/熊猫.md").json()
    assert deleted["id"] == "docs/熊猫.md" and deleted["chunks_removed"] >= 1
