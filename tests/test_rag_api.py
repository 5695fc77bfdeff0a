"""The public surface of rag/, its import rule, its config, and the sample knowledge shipped in knowledge/."""

import ast
from pathlib import Path

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

import rag
from rag import KnowledgeBase, RAGConfig
from rolechat import config

ROOT = Path(__file__).resolve().parents[1]


def test_all_names_exist():
    assert all(hasattr(rag, name) for name in rag.__all__)


def test_rag_never_imports_llm_or_rolechat_beyond_config():
    for path in (ROOT / "rag").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(("llm", "finetune", "app")), f"{path.name} imports {name}"
                assert not name.startswith("rolechat") or name == "rolechat.config", f"{path.name} imports {name}"


def test_config_layers_and_precise_errors(monkeypatch):
    monkeypatch.setenv("ROLECHAT_RAG_K", "7")
    cfg = config.build(RAGConfig, "rag", {"rag": {"mode": "bm25", "chunk_size": 128}}, {"chunk_overlap": 16})
    assert (cfg.k, cfg.mode, cfg.chunk_size, cfg.chunk_overlap) == (7, "bm25", 128, 16)
    with pytest.raises(config.ConfigError, match="rag.mode must be one of dense, bm25, hybrid"):
        RAGConfig(mode="fuzzy")
    with pytest.raises(config.ConfigError, match="rag.chunk_overlap must be between 0 and chunk_size/2"):
        RAGConfig(chunk_size=64, chunk_overlap=40)
    with pytest.raises(config.ConfigError, match="rag.chroma_url must start with http"):
        RAGConfig(chroma_url="localhost:8000")
    with pytest.raises(config.ConfigError, match="unknown key 'chunksize'"):
        config.build(RAGConfig, "rag", {"rag": {"chunksize": 1}})


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> KnowledgeBase:
    kb = KnowledgeBase("samples", RAGConfig(), embeddings=DeterministicFakeEmbedding(size=16),
                       root=tmp_path_factory.mktemp("kb"))
    report = kb.index([ROOT / "knowledge"])
    assert report.summary()["failed"] == 0 and report.summary()["indexed"] >= 5
    return kb


@pytest.mark.parametrize("question, expected", [
    ("采茶体验多少钱", "云雾山茶园-参观须知.txt"),
    ("毛尖用多少度的水冲泡", "云雾山茶园-冲泡指南.md"),
    ("索引到一半中断了怎么办", "rolechat-知识库常见问题.md"),
    ("怎么查看知识库里有哪些文档", "rolechat-快速上手.md"),
])
def test_sample_knowledge_answers_its_own_questions(samples, question, expected):
    assert Path(samples.search(question, k=1, mode="bm25")[0].metadata["source"]).name == expected
