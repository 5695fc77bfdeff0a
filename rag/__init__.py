"""Documents in, answers with sources out: loading, decoding, splitting, Chroma + BM25 indexes kept in step
by an incremental manifest, dense/BM25/hybrid retrievers, and a cited LCEL answer chain.

    kb = KnowledgeBase("产品手册", RAGConfig())
    kb.index(["docs/"])
    for piece in answer_stream(kb.retriever(), chat_model, "怎么重置密码？"):
        ...   # {"sources": [...]} first, then {"answer": "..."} pieces

Never imports llm/: the chain takes any LangChain chat model.
"""

from rolechat.exports import lazy

# name -> submodule; imported on first use, so `from rolechat.rag.config import RAGConfig` (the CLI's start-up
# path) does not pull in LangChain and Chroma.
_EXPORTS = {
    "RAGConfig": "config",
    "KnowledgeBase": "knowledge_base",
    "IndexReport": "knowledge_base",
    "FileOutcome": "knowledge_base",
    "DocumentInfo": "knowledge_base",
    "Progress": "knowledge_base",
    "list_kbs": "knowledge_base",
    "delete_kb": "knowledge_base",
    "EmbedderMismatch": "knowledge_base",
    "ReembedReport": "knowledge_base",
    "EmbedderSpec": "embedder_spec",
    "resolve_spec": "embedder_spec",
    "build_chain": "chain",
    "answer_stream": "chain",
    "format_sources": "chain",
    "format_context": "chain",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
