"""Documents in, answers with sources out: loading, decoding, splitting, Chroma + BM25 indexes kept in step
by an incremental manifest, dense/BM25/hybrid retrievers, and a cited LCEL answer chain.

Never imports llm/: the chain takes any LangChain chat model.
"""

from rag.config import RAGConfig
from rag.knowledge_base import (DocumentInfo, FileOutcome, IndexReport, KnowledgeBase, Progress, delete_kb,
                                list_kbs)

__all__ = [
    "RAGConfig",
    "KnowledgeBase",
    "IndexReport",
    "FileOutcome",
    "DocumentInfo",
    "Progress",
    "list_kbs",
    "delete_kb",
]
