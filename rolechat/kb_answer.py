"""Answering from a knowledge base for the API: rag's cited chain over the runtime's chat model.

Lives on top (it joins `rag` and a chat model from `llm`), so neither package needs to know the other.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

__all__ = ["make_kb_answerer", "source_rows"]


def source_rows(docs: Sequence[Any]) -> list[dict[str, Any]]:
    """Numbered sources as plain dicts: what the API returns and the app shows."""
    return [{"n": n, "source": d.metadata.get("source", ""), "file": Path(d.metadata.get("source", "")).name,
             "location": d.metadata.get("location", ""), "score": d.metadata.get("score"),
             "found_by": d.metadata.get("found_by"), "snippet": d.page_content[:300]}
            for n, d in enumerate(docs, 1)]


def make_kb_answerer(rag_cfg: Any = None, embeddings: Any = None) -> Callable:
    """`answer(kb, question, history, chat_model, k) -> (sources, text pieces)`; knowledge bases open once."""
    from rag import KnowledgeBase, RAGConfig, list_kbs
    from rag.chain import answer_stream

    cfg = rag_cfg or RAGConfig()
    opened: dict[str, Any] = {}
    lock = threading.Lock()

    def answer(kb_name: str, question: str, history: list[dict[str, str]], chat_model: Any,
               k: int | None) -> tuple[list[dict[str, Any]], Iterator[str]]:
        with lock:
            if kb_name not in opened:
                available = list_kbs()
                if kb_name not in available:
                    raise ValueError(f"knowledge base {kb_name!r} not found; available: {', '.join(available) or 'none'}"
                                     " (create one with `rolechat index DIR --kb NAME`)")
                opened[kb_name] = KnowledgeBase(kb_name, cfg, embeddings=embeddings)
            kb = opened[kb_name]
        events = answer_stream(kb.retriever(k=k), chat_model, question, history)
        first = next(events)
        sources = source_rows(first.get("sources", []))

        def pieces() -> Iterator[str]:
            if "answer" in first:
                yield first["answer"]
            for event in events:
                if "answer" in event:
                    yield event["answer"]

        return sources, pieces()

    return answer
