"""The public surface of rag/, its import rule, its config, and the sample knowledge shipped in knowledge/."""

from pathlib import Path

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from rolechat import rag, settings
from rolechat.rag import KnowledgeBase, RAGConfig

ROOT = Path(__file__).resolve().parents[1]


def test_all_names_exist():
    assert all(hasattr(rag, name) for name in rag.__all__)


def test_config_layers_and_precise_errors(monkeypatch):
    monkeypatch.setenv("ROLECHAT_RAG_K", "7")
    cfg = settings.build(RAGConfig, "rag", {"rag": {"mode": "bm25", "chunk_size": 128}}, {"chunk_overlap": 16})
    assert (cfg.k, cfg.mode, cfg.chunk_size, cfg.chunk_overlap) == (7, "bm25", 128, 16)
    with pytest.raises(settings.ConfigError, match="rag.mode must be one of dense, bm25, hybrid"):
        RAGConfig(mode="fuzzy")
    with pytest.raises(settings.ConfigError, match="rag.chunk_overlap must be between 0 and chunk_size/2"):
        RAGConfig(chunk_size=64, chunk_overlap=40)
    with pytest.raises(settings.ConfigError, match="rag.chroma_url must start with http"):
        RAGConfig(chroma_url="localhost:8000")
    with pytest.raises(settings.ConfigError, match="unknown key 'chunksize'"):
        settings.build(RAGConfig, "rag", {"rag": {"chunksize": 1}})


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> KnowledgeBase:
    kb = KnowledgeBase(
        "samples", RAGConfig(), embeddings=DeterministicFakeEmbedding(size=16), root=tmp_path_factory.mktemp("kb")
    )
    report = kb.index([ROOT / "knowledge"])
    assert report.summary()["failed"] == 0 and report.summary()["indexed"] >= 5
    return kb


@pytest.mark.parametrize(
    "question, expected",
    [
        ("采茶体验多少钱", "云雾山茶园-参观须知.txt"),
        ("毛尖用多少度的水冲泡", "云雾山茶园-冲泡指南.md"),
        ("索引到一半中断了怎么办", "rolechat-知识库常见问题.md"),
        ("怎么查看知识库里有哪些文档", "rolechat-快速上手.md"),
    ],
)
def test_sample_knowledge_answers_its_own_questions(samples, question, expected):
    assert Path(samples.search(question, k=1, mode="bm25")[0].metadata["source"]).name == expected
