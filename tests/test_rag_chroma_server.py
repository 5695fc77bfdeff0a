"""The same knowledge base on a real Chroma server (`chroma run`) on loopback."""

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from rolechat.rag import KnowledgeBase, RAGConfig, delete_kb
from rolechat.rag.store import all_ids, collection_name
from tests.servers import chroma_server

pytestmark = pytest.mark.slow


@pytest.fixture
def chroma_url(tmp_path):
    with chroma_server(tmp_path / "chroma") as url:
        yield url


def test_index_search_and_delete_through_a_chroma_server(tmp_path, chroma_url):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "部署.md").write_text("# 部署\n使用 vLLM 部署模型。需要先安装依赖，再启动服务。", encoding="utf-8")
    (docs / "微调.md").write_text("# 微调\nLoRA 微调只训练少量参数。学习率通常设为万分之一。", encoding="utf-8")
    cfg = RAGConfig(chroma_url=chroma_url)
    kb = KnowledgeBase("团队知识库", cfg, embeddings=DeterministicFakeEmbedding(size=16))
    first = kb.index([docs])
    assert first.summary()["indexed"] == 2
    assert not (kb.path / "chroma").exists()  # vectors live on the server, not locally

    import chromadb

    server = chromadb.HttpClient(host="127.0.0.1", port=int(chroma_url.rsplit(":", 1)[1]))
    collection = server.get_collection(collection_name("团队知识库"))
    assert set(all_ids(collection)) == kb.manifest.chunk_ids() and collection.count() == first.chunks_added

    assert kb.index([docs]).chunks_embedded == 0
    hits = kb.search("LoRA 微调", k=2, mode="hybrid")
    assert hits[0].metadata["source"].endswith("微调.md")
    assert kb.search("部署", k=1, mode="dense")

    assert delete_kb("团队知识库", cfg)
    assert collection_name("团队知识库") not in [c.name for c in server.list_collections()]
