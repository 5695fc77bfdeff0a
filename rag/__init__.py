"""Documents in, answers with sources out: loading, decoding, splitting, Chroma + BM25 indexes kept in step
by an incremental manifest, dense/BM25/hybrid retrievers (LangChain `BaseRetriever`s), and the LangChain shape of
a cited answer chain (`chain.build_chain`).

    kb = KnowledgeBase("产品手册", RAGConfig())
    kb.index(["docs/"])
    docs = kb.retriever("hybrid", 5).invoke("怎么重置密码？")

Never imports llm/: answers are made by the conversation layer (`rolechat.conversation`, whose
`answer_chain(engine, "产品手册")` is the Runnable users compose).
"""

from rolechat.exports import lazy

# submodule -> the names it exports, imported on first use, so `from rolechat.rag.config import RAGConfig`
# (the CLI's start-up path) does not pull in LangChain and Chroma.
_EXPORTS = {
    "config": ["RAGConfig"],
    "knowledge_base": [
        "DocumentInfo",
        "EmbedderMismatch",
        "FileOutcome",
        "IndexReport",
        "KnowledgeBase",
        "Progress",
        "ReembedReport",
        "delete_kb",
        "list_kbs",
    ],
    "embedder_spec": ["EmbedderSpec", "resolve_spec"],
    "chain": ["build_chain", "answer_stream", "format_sources", "format_context"],
}

__all__, __getattr__, __dir__ = lazy(__name__, _EXPORTS)
