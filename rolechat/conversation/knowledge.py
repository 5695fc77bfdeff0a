"""Knowledge-base answers, in one place: which knowledge bases are open, the standalone question, retrieval,
numbered citations, the answer mode, extractive answers, and whether a reply is grounded.

Every door asks through the engine (`Engine.prepare(..., knowledge_base=NAME)`), and the engine asks here:

    knowledge = Knowledge(runtime, rag_cfg)           # the engine holds one: engine.knowledge
    found = knowledge.answer("茶园几点开门？", past=[...], persona=None, name="示例知识库")
    found.question, found.docs, found.sources         # what was searched, the ranked passages, their citations
    found.mode                                        # "generate" (the model answers) or "extract" (quoted)
    found.reply                                       # set when the reply is known without the model
                                                      # (nothing found, or an extractive answer)

Retrieval is the knowledge base's LangChain retriever (`KnowledgeBase.retriever`, a `BaseRetriever` over
Chroma + BM25); `session.answer_chain` exposes the same pipeline, prompts included, as a LangChain Runnable
(`rolechat.rag.chain.build_chain`) for users who compose chains.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings

    from rolechat.llm import Backend
    from rolechat.rag import KnowledgeBase, RAGConfig

__all__ = ["Knowledge", "Found", "source_rows", "CONDENSE_MESSAGES", "CONDENSE_TOKENS"]

CONDENSE_MESSAGES = 6  # earlier messages handed to the standalone-question rewrite
CONDENSE_TOKENS = 96  # a rewritten question is short

# (render the prompt from the lines kept, transcript lines oldest first, persona, sampling) -> the model's reply
Ask = Callable[[Callable[[list[str]], str], Sequence[str], "str | None", Mapping[str, Any]], str]


def source_rows(docs: Sequence[Document], snippet_chars: int = 300) -> list[dict[str, Any]]:
    """Numbered sources as plain dicts, the one shape the API returns, the app shows and the CLI prints."""
    rows = []
    for n, d in enumerate(docs, 1):
        text = " ".join(d.page_content.split())
        rows.append(
            {
                "n": n,
                "source": d.metadata.get("source", ""),
                "file": Path(d.metadata.get("source", "")).name,
                "location": d.metadata.get("location", ""),
                "score": d.metadata.get("score"),
                "found_by": d.metadata.get("found_by"),
                "snippet": text[:snippet_chars] + ("…" if len(text) > snippet_chars else ""),
            }
        )
    return rows


@dataclass
class Found:
    """What a knowledge base gave for one question, and how it will be answered."""

    question: str  # what the knowledge base was searched with (the standalone question)
    docs: list[Document] = field(default_factory=list)  # ranked; metadata["citation"] is [n] in the reply
    sources: list[dict[str, Any]] = field(default_factory=list)  # source_rows(docs)
    mode: str = "generate"  # "generate" or "extract"
    reply: str | None = None  # the reply known without the model: nothing found, or the quoted sentences
    grounded: bool = True  # False when the knowledge base holds no answer
    confidence: float | None = None  # extract: the best sentence's match with the question (0-1)
    note: str = ""  # extract: how the answer was made, for "what the model saw"


class Knowledge:
    """The knowledge bases one engine answers from. Thread-safe: each is opened once and shared."""

    def __init__(self, runtime: Backend, rag_cfg: RAGConfig, embeddings: Embeddings | None = None, *, ask: Ask) -> None:
        self.runtime = runtime
        self.rag_cfg = rag_cfg
        self.ask = ask  # a short request of the model, fitted to the context (`Engine.ask`)
        self.embeddings = embeddings  # None: each knowledge base's own embedder
        self._open: dict[str, KnowledgeBase] = {}
        self._lock = threading.Lock()

    # -- the open knowledge bases ---------------------------------------------------------------------------

    def base(self, name: str) -> KnowledgeBase:
        """The opened knowledge base `name`; ValueError naming the known ones when there is none."""
        from rolechat.rag import KnowledgeBase, list_kbs

        with self._lock:
            if name not in self._open:
                available = list_kbs()
                if name not in available:
                    raise ValueError(
                        f"knowledge base {name!r} not found; available: {', '.join(available) or 'none'}"
                        " (create one with `rolechat index DIR --kb NAME`)"
                    )
                self._open[name] = KnowledgeBase(name, self.rag_cfg, embeddings=self.embeddings)
            return self._open[name]

    def forget(self, name: str) -> None:
        """Drop a cached handle (after the knowledge base was deleted or rebuilt)."""
        with self._lock:
            kb = self._open.pop(name, None)
        if kb is not None:
            kb.close()

    def close(self) -> None:
        """Close every knowledge base opened here (they open again on the next question)."""
        for name in list(self._open):
            self.forget(name)

    # -- one question -----------------------------------------------------------------------------------------

    def mode(self, mode: str | None = None) -> str:
        """How questions are answered here: "extract" or "generate". `mode` (default `rag.answer_mode`): auto
        means extract on the demo model and on a model marked `llm.too_small`."""
        from rolechat.rag.config import ANSWER_MODES

        mode = mode or self.rag_cfg.answer_mode
        if mode not in ANSWER_MODES:
            raise ValueError(f"answer mode must be one of {', '.join(ANSWER_MODES)}, got {mode!r}")
        if mode != "auto":
            return mode
        info, cfg = getattr(self.runtime, "info", None), getattr(self.runtime, "cfg", None)
        small = bool(getattr(info, "is_demo", False)) or bool(getattr(cfg, "too_small", False))
        return "extract" if small else "generate"

    def standalone_question(self, question: str, history: Sequence[Mapping[str, str]], persona: str | None) -> str:
        """Rewrite a follow-up into a question that stands alone (greedy, short, by the same model)."""
        from rolechat.rag import prompts
        from rolechat.rag.chain import history_text

        recent = list(history)[-CONDENSE_MESSAGES:]
        if not recent:
            return question
        template = self.rag_cfg.condense_prompt or prompts.CONDENSE_PROMPT

        def render(kept: list[str]) -> str:
            return template.format(chat_history="\n".join(kept), question=question)

        params = {"temperature": 0.0, "max_new_tokens": CONDENSE_TOKENS}
        return self.ask(render, [history_text([m]) for m in recent], persona, params) or question

    def retrieve(self, name: str, question: str, k: int | None = None, mode: str | None = None) -> list[Document]:
        """The passages of knowledge base `name` for `question`, ranked, each numbered for citation."""
        docs = self.base(name).retriever(mode, k).invoke(question)
        for n, doc in enumerate(docs, 1):
            doc.metadata["citation"] = n
        return docs

    def answer(
        self,
        message: str,
        *,
        name: str,
        past: Sequence[Mapping[str, str]] = (),
        persona: str | None = None,
        k: int | None = None,
        retrieval: str | None = None,
        condense: bool = True,
        answer_mode: str | None = None,
    ) -> Found:
        """Search `name` for `message` (a follow-up rewritten first when `condense`) and say how it is answered:
        nothing found (the reply is `rag.prompts.NOT_FOUND`), quoted sentences (extract), or by the model."""
        question = self.standalone_question(message, past, persona) if condense else message
        docs = self.retrieve(name, question, k, retrieval)
        found = Found(question, docs, source_rows(docs), self.mode(answer_mode))
        if not docs:
            from rolechat.rag import prompts

            found.reply, found.grounded = prompts.NOT_FOUND, False
        elif found.mode == "extract":
            self._extract(name, found)
        return found

    def _extract(self, name: str, found: Found) -> None:
        """Quote the sentences of `found.docs` that answer its question, or say the knowledge base does not."""
        from rolechat.rag.embedder_spec import MINILM
        from rolechat.rag.extract import extract

        kb = self.base(name)
        try:  # the bundled MiniLM is blind to Chinese: its cosines would be noise, the lexical judge decides alone
            embeddings = None if kb.embedder_spec().name == MINILM else kb.embeddings
        except (AttributeError, ValueError):
            embeddings = kb.embeddings if self.embeddings is None else self.embeddings
        idf = getattr(getattr(kb, "bm25", None), "idf", None)
        threshold = self.rag_cfg.extract_threshold
        reader = None
        if self.rag_cfg.extract_reader:
            from rolechat.rag.reader import Reader

            reader = Reader.shipped()
        got = extract(found.question, found.docs, embeddings, idf, threshold=threshold, reader=reader)
        found.reply, found.grounded, found.confidence = got.text, got.grounded, round(got.confidence, 4)
        found.note = (
            f"extractive answer (rag.answer_mode): the model is not called; confidence {got.confidence:.2f}, "
            f"threshold {threshold:.2f}: " + ("quoted" if got.grounded else "not in the knowledge base")
        )

    @staticmethod
    def grounded(mode: str, grounded: bool | None, reply: str) -> bool | None:
        """Whether a knowledge-base reply is an answer from the knowledge base (None: no knowledge base was
        asked): False when nothing was found, when an extractive answer found no sentence good enough, or when
        the model said the passages do not answer."""
        if grounded is None or not grounded:
            return grounded
        if mode == "generate":
            from rolechat.rag import prompts

            return not any(marker in reply for marker in prompts.NOT_ANSWERED)
        return True
