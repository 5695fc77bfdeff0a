"""Documents in, answers with sources out: loading, decoding, splitting, Chroma + BM25 indexes kept in step
by an incremental manifest, dense/BM25/hybrid retrievers, and a cited LCEL answer chain.

    kb = KnowledgeBase("产品手册", RAGConfig())
    kb.index(["docs/"])
    for piece in answer_stream(kb.retriever(), chat_model, "怎么重置密码？"):
        ...   # {"sources": [...]} first, then {"answer": "..."} pieces

Never imports llm/: the chain takes any LangChain chat model.
"""

from rolechat.rag.chain import answer_stream, build_chain, format_context, format_sources
from rolechat.rag.config import RAGConfig
from rolechat.rag.knowledge_base import (
    DocumentInfo,
    FileOutcome,
    IndexReport,
    KnowledgeBase,
    Progress,
    delete_kb,
    list_kbs,
)

__all__ = [
    "RAGConfig",
    "KnowledgeBase",
    "IndexReport",
    "FileOutcome",
    "DocumentInfo",
    "Progress",
    "list_kbs",
    "delete_kb",
    "build_chain",
    "answer_stream",
    "format_sources",
    "format_context",
]
