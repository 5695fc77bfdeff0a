"""The knowledge-base answer as a LangChain Runnable, and the text shapes of its passages.

    from rolechat.conversation.session import answer_chain
    chain = answer_chain(engine, "示例知识库")            # the engine's own pipeline and prompts
    out = chain.invoke({"question": "怎么部署？", "chat_history": []})
    out["answer"], out["sources"]          # sources[i] is citation [i+1]
    for piece in chain.stream({...}):      # {"question", "standalone_question", "sources"}, then {"answer": piece}
        ...

`build_chain` only gives a LangChain shape to an answer function (question, history) -> (standalone question,
passages, reply pieces); the prompts are built where every other turn's are, in the conversation engine
(`rolechat.conversation.knowledge`, asked through a `Session`), so a chain and a chat never answer one question
differently.
`format_context` is the numbered passages block the answer prompt (`rag.prompts`) holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable

from rolechat.rag import prompts

__all__ = ["build_chain", "answer_stream", "format_context", "format_sources", "history_text"]

# (question, history) -> (standalone question, ranked passages, the reply's pieces)
Answer = Callable[[str, list[dict[str, str]]], tuple[str, list[Document], Iterator[str]]]


def _source_name(doc: Document) -> str:
    return Path(doc.metadata.get("source", "?")).name


def format_context(docs: Sequence[Document]) -> str:
    """Numbered context blocks; [n] in the answer refers to docs[n-1]."""
    return "\n\n".join(
        prompts.SOURCE_HEADER.format(n=i, source=_source_name(d), location=d.metadata.get("location", ""))
        + "\n"
        + d.page_content
        for i, d in enumerate(docs, 1)
    )


def format_sources(docs: Sequence[Document]) -> list[str]:
    """One line per source for display: "[1] /path/file.md (line 12)"."""
    return [f"[{i}] {d.metadata.get('source', '?')} ({d.metadata.get('location', '')})" for i, d in enumerate(docs, 1)]


def history_text(history: Sequence[Any] | None) -> str:
    """Chat history as text: accepts LangChain messages, (role, content) pairs or {"role", "content"} dicts."""
    return "\n".join(
        f"{prompts.HUMAN_LABEL if m['role'] == 'user' else prompts.AI_LABEL}：{m['content']}"
        for m in _as_dicts(history)
    )


def build_chain(answer: Answer) -> Runnable:
    """A Runnable over `answer`: input {"question", "chat_history"?}; output {"question", "standalone_question",
    "sources", "answer"}. Streaming yields the first three keys at once, then {"answer": piece} as it comes
    (`invoke` joins them)."""
    from langchain_core.runnables import RunnableGenerator
    from langchain_core.runnables.utils import AddableDict

    def run(inputs: Iterator[dict[str, Any]]) -> Iterator[AddableDict]:
        for given in inputs:
            question = given["question"]
            history = _as_dicts(given.get("chat_history"))
            standalone, docs, pieces = answer(question, history)
            yield AddableDict(question=question, standalone_question=standalone, sources=docs)
            for piece in pieces:
                yield AddableDict(answer=piece)

    return RunnableGenerator(run)


def _as_dicts(history: Sequence[Any] | None) -> list[dict[str, str]]:
    """Chat history as {"role", "content"} dicts from LangChain messages, (role, content) pairs or dicts."""
    out = []
    for item in history or []:
        if isinstance(item, BaseMessage):
            role, content = item.type, item.content
        elif isinstance(item, dict):
            role, content = item.get("role", "user"), item.get("content", "")
        else:
            role, content = item
        out.append({"role": "user" if role in ("human", "user") else "assistant", "content": str(content)})
    return out


def answer_stream(chain: Runnable, question: str, chat_history: Sequence[Any] | None = None) -> Iterator[dict]:
    """Yield {"sources": [Document, ...]} once, then {"answer": text piece} as the model streams."""
    for piece in chain.stream({"question": question, "chat_history": list(chat_history or [])}):
        if "sources" in piece:
            yield {"sources": piece["sources"]}
        if "answer" in piece:
            yield {"answer": piece["answer"]}
