"""The answer chain (LCEL): question (+ history -> standalone question) -> retrieve -> prompt -> model -> answer.

    chain = build_chain(kb.retriever(), chat_model)
    out = chain.invoke({"question": "怎么部署？", "chat_history": []})
    out["answer"], out["sources"]          # sources[i] is citation [i+1]
    for piece in chain.stream({...}):      # {"sources": [...]} first, then {"answer": "tok"} pieces
        ...

Works with any LangChain chat model. When retrieval finds nothing, the model is not called and the
answer is `prompts.NOT_FOUND`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableBranch, RunnableLambda, RunnablePassthrough

from rolechat.rag import prompts

__all__ = ["build_chain", "answer_stream", "format_context", "format_sources", "history_text"]


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
    lines = []
    for item in history or []:
        if isinstance(item, BaseMessage):
            role, content = item.type, item.content
        elif isinstance(item, dict):
            role, content = item.get("role", "user"), item.get("content", "")
        else:
            role, content = item
        label = prompts.HUMAN_LABEL if role in ("human", "user") else prompts.AI_LABEL
        lines.append(f"{label}：{content}")
    return "\n".join(lines)


def build_chain(
    retriever: Runnable, chat_model: Runnable, prompt: str | None = None, condense_prompt: str | None = None
) -> Runnable:
    """Input {"question", "chat_history"?}; output {"question", "standalone_question", "sources", "answer"}."""
    answer_prompt = ChatPromptTemplate.from_messages([("human", prompt or prompts.ANSWER_PROMPT)])
    condense = ChatPromptTemplate.from_messages([("human", condense_prompt or prompts.CONDENSE_PROMPT)])
    condense_chain = condense | chat_model | StrOutputParser()

    def standalone(inputs: dict) -> str:
        history = inputs.get("chat_history")
        if not history:
            return inputs["question"]
        rewritten = condense_chain.invoke({"chat_history": history_text(history), "question": inputs["question"]})
        return rewritten.strip() or inputs["question"]

    def retrieve(inputs: dict) -> list[Document]:
        docs = retriever.invoke(inputs["standalone_question"])
        for n, doc in enumerate(docs, 1):
            doc.metadata["citation"] = n
        return docs

    generate = (
        RunnableLambda(lambda x: {"context": format_context(x["sources"]), "question": x["standalone_question"]})
        | answer_prompt
        | chat_model
        | StrOutputParser()
    )
    answer = RunnableBranch((lambda x: not x["sources"], RunnableLambda(lambda x: prompts.NOT_FOUND)), generate)
    return (
        RunnablePassthrough.assign(standalone_question=RunnableLambda(standalone))
        .assign(sources=RunnableLambda(retrieve))
        .assign(answer=answer)
    )


def answer_stream(
    retriever: Runnable,
    chat_model: Runnable,
    question: str,
    chat_history: Sequence[Any] | None = None,
    prompt: str | None = None,
    condense_prompt: str | None = None,
) -> Iterator[dict]:
    """Yield {"sources": [Document, ...]} once, then {"answer": text piece} as the model streams."""
    chain = build_chain(retriever, chat_model, prompt, condense_prompt)
    for piece in chain.stream({"question": question, "chat_history": list(chat_history or [])}):
        if "sources" in piece:
            yield {"sources": piece["sources"]}
        if "answer" in piece:
            yield {"answer": piece["answer"]}
