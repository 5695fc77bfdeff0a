"""The conversation engine: the ONE place where a turn's inputs become the messages the runtime renders.

Everything that turns (character, user persona, knowledge base, chat history, new message) into a prompt
lives here; the app, the CLI (`chat`, `ask`) and the API all call it, so the same inputs give the same
prompt whichever door they came through.

Interface (the API, the app and the CLI are written against it):

    engine = Engine(runtime, rag_cfg)                     # one per process; knowledge bases open lazily
    turn = engine.prepare("茶园几点开门？", character="miaomiao", history=[...],
                          user=UserPersona("小明"), knowledge_base="示例知识库", k=5,
                          params={"temperature": 0})
    turn.messages        # exactly what the runtime renders (list of {"role", "content"})
    turn.persona         # the adapter the reply is generated with (None = the base model)
    turn.parts           # "what the model saw": one PromptPart per piece, with its token count
    turn.sources         # numbered knowledge-base sources ([n] in the reply = sources[n-1])
    stream = engine.stream(turn)     # text pieces; .text, .stats (prompt/completion tokens, finish_reason)
    for piece in stream: ...         # closing the stream early cancels the generation

`history` holds earlier turns as {"role": "user" | "assistant", "content"} dicts (extra keys are
ignored). Knowledge-base turns use the answer prompt of `rag.prompts` (or `rag.prompt`) as the user
message, exactly as the demo model learned it, after an optional standalone-question rewrite
(`rag.condense_prompt`) of a follow-up; when retrieval finds nothing the reply is `rag.prompts.NOT_FOUND`
and the model is not called.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rolechat.llm import GenerationParams, GenerationStats

__all__ = ["Engine", "FixedReply", "PromptPart", "Turn", "UserPersona", "source_rows"]


@dataclass
class UserPersona:
    """Who the user is in the conversation (`{{user}}`)."""

    name: str = "用户"
    description: str = ""


@dataclass
class PromptPart:
    """One piece of the prompt, for the "what the model saw" view."""

    kind: str  # system, knowledge, history, message (more kinds come with cards and lorebooks)
    label: str
    tokens: int
    text: str
    included: bool = True  # False: over its budget, not sent

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "tokens": self.tokens,
            "text": self.text,
            "included": self.included,
        }


@dataclass
class Turn:
    """A prepared turn: what will be sent, with whom, and why."""

    persona: str | None
    messages: list[dict[str, str]]
    params: GenerationParams
    parts: list[PromptPart] = field(default_factory=list)
    sources: list[dict[str, Any]] | None = None  # None: no knowledge base was asked
    question: str = ""  # what the knowledge base was searched with
    fixed_reply: str | None = None  # set when the reply is known without the model (nothing found)

    def what_the_model_saw(self) -> list[dict[str, Any]]:
        return [p.as_dict() for p in self.parts]


class FixedReply:
    """A reply known in advance, shaped like a GenerationStream (iterate, .text, .stats, .close())."""

    def __init__(self, text: str, tokens: int = 0) -> None:
        self.text = text
        self.stats = GenerationStats(completion_tokens=tokens, finish_reason="stop", time_to_first_token=0.0)

    def __iter__(self) -> Iterator[str]:
        yield self.text

    def join(self) -> str:
        return self.text

    def close(self) -> None:
        return None

    def cancel(self) -> None:
        return None


def source_rows(docs: Sequence[Any]) -> list[dict[str, Any]]:
    """Numbered sources as plain dicts: what the API returns and the app shows."""
    return [
        {
            "n": n,
            "source": d.metadata.get("source", ""),
            "file": Path(d.metadata.get("source", "")).name,
            "location": d.metadata.get("location", ""),
            "score": d.metadata.get("score"),
            "found_by": d.metadata.get("found_by"),
            "snippet": d.page_content[:300],
        }
        for n, d in enumerate(docs, 1)
    ]


class Engine:
    """Assembles every prompt. Thread-safe: knowledge bases are opened once and shared."""

    def __init__(self, runtime: Any, rag_cfg: Any = None, embeddings: Any = None) -> None:
        from rolechat.rag import RAGConfig

        self.runtime = runtime
        self.rag_cfg = rag_cfg or RAGConfig()
        self._embeddings = embeddings
        self._kbs: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- knowledge bases ----------------------------------------------------------------------------------

    def knowledge_base(self, name: str) -> Any:
        """The opened knowledge base `name`; ValueError naming the known ones when there is none."""
        from rolechat.rag import KnowledgeBase, list_kbs

        with self._lock:
            if name not in self._kbs:
                available = list_kbs()
                if name not in available:
                    raise ValueError(
                        f"knowledge base {name!r} not found; available: {', '.join(available) or 'none'}"
                        " (create one with `rolechat index DIR --kb NAME`)"
                    )
                self._kbs[name] = KnowledgeBase(name, self.rag_cfg, embeddings=self._embeddings)
            return self._kbs[name]

    def forget_knowledge_base(self, name: str) -> None:
        """Drop a cached handle (after the knowledge base was deleted or rebuilt)."""
        with self._lock:
            self._kbs.pop(name, None)

    @property
    def embeddings(self) -> Any:
        """The embeddings knowledge bases are opened with (None: each one's configured embedder)."""
        return self._embeddings

    def standalone_question(self, question: str, history: Sequence[Mapping[str, str]], persona: str | None) -> str:
        """Rewrite a follow-up into a question that stands alone (greedy, by the same model)."""
        from rolechat.rag import prompts
        from rolechat.rag.chain import history_text

        if not history:
            return question
        template = self.rag_cfg.condense_prompt or prompts.CONDENSE_PROMPT
        text = template.format(chat_history=history_text(list(history)), question=question)
        rewritten = self.runtime.chat([{"role": "user", "content": text}], persona, {"temperature": 0})
        return rewritten.strip().splitlines()[0].strip() if rewritten.strip() else question

    # -- assembly -----------------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self.runtime.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0

    def prepare(
        self,
        message: str,
        *,
        character: str | None = None,
        history: Sequence[Mapping[str, Any]] = (),
        user: UserPersona | None = None,
        knowledge_base: str | None = None,
        k: int | None = None,
        mode: str | None = None,
        condense: bool = True,
        system: str = "",
        params: GenerationParams | Mapping[str, Any] | None = None,
    ) -> Turn:
        """Build the turn for `message` (see the module docstring). Raises ValueError for unknown names."""
        persona = None if character in (None, "", "base") else character
        manifest = self.runtime.manifest(persona)  # PersonaError (a ValueError) for an unknown persona
        gen = self.runtime.params(params)
        past = [{"role": m["role"], "content": m["content"]} for m in history if m.get("role") in ("user", "assistant")]
        parts: list[PromptPart] = []
        persona_system = manifest.system_prompt if manifest else ""
        if persona_system:
            parts.append(PromptPart("system", "system prompt", self.count_tokens(persona_system), persona_system))
        if system:  # the caller's own system text (an API client's system message), after the persona's
            parts.append(PromptPart("system", "caller's system message", self.count_tokens(system), system))
        if knowledge_base:
            return self._knowledge_turn(message, persona, past, parts, knowledge_base, k, mode, condense, gen)
        # the runtime puts the persona's system prompt first and the caller's system text after it
        messages = [
            *([{"role": "system", "content": system}] if system else []),
            *past,
            {"role": "user", "content": message},
        ]
        for m in past:
            parts.append(PromptPart("history", m["role"], self.count_tokens(m["content"]), m["content"]))
        parts.append(PromptPart("message", "user", self.count_tokens(message), message))
        return Turn(persona=persona, messages=messages, params=gen, parts=parts)

    def _knowledge_turn(self, message, persona, past, parts, kb_name, k, mode, condense, gen) -> Turn:
        from rolechat.rag import prompts
        from rolechat.rag.chain import format_context

        kb = self.knowledge_base(kb_name)
        question = self.standalone_question(message, past, persona) if condense else message
        docs = kb.retriever(mode, k).invoke(question)
        for n, doc in enumerate(docs, 1):
            doc.metadata["citation"] = n
        sources = source_rows(docs)
        if question != message:
            parts.append(PromptPart("question", "standalone question", self.count_tokens(question), question))
        if not docs:
            return Turn(
                persona=persona,
                messages=[],
                params=gen,
                parts=parts,
                sources=sources,
                question=question,
                fixed_reply=prompts.NOT_FOUND,
            )
        context = format_context(docs)
        for row, doc in zip(sources, docs):
            parts.append(
                PromptPart(
                    "knowledge",
                    f"[{row['n']}] {row['file']} {row['location']}".strip(),
                    self.count_tokens(doc.page_content),
                    doc.page_content,
                )
            )
        text = (self.rag_cfg.prompt or prompts.ANSWER_PROMPT).format(context=context, question=question)
        parts.append(PromptPart("message", "user (answer prompt)", self.count_tokens(text), text))
        return Turn(
            persona=persona,
            messages=[{"role": "user", "content": text}],
            params=gen,
            parts=parts,
            sources=sources,
            question=question,
        )

    # -- generation ---------------------------------------------------------------------------------------

    def stream(self, turn: Turn) -> Any:
        """The reply as a stream of text pieces (a GenerationStream, or a FixedReply for known answers)."""
        if turn.fixed_reply is not None:
            return FixedReply(turn.fixed_reply, self.count_tokens(turn.fixed_reply))
        return self.runtime.stream(turn.messages, persona=turn.persona, params=turn.params)

    def reply(self, message: str, **kwargs: Any) -> tuple[Turn, Any]:
        """prepare() then stream()."""
        turn = self.prepare(message, **kwargs)
        return turn, self.stream(turn)

    def complete(self, message: str, **kwargs: Any) -> tuple[Turn, str, float]:
        """Blocking: (turn, reply text, seconds)."""
        start = time.perf_counter()
        turn, stream = self.reply(message, **kwargs)
        return turn, stream.join(), time.perf_counter() - start
