"""A LangChain chat model over the runtime, so a persona can be dropped into any LCEL chain."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict

__all__ = ["RolechatChatModel", "to_chat_messages"]

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "user": "user", "assistant": "assistant"}


def to_chat_messages(messages: list[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages -> role/content dicts; all system text is merged into one leading system message."""
    system, out = [], []
    for m in messages:
        role = _ROLES.get(m.type)
        if role is None:
            raise ValueError(f"unsupported message type {m.type!r} (only system, human and ai messages)")
        content = (
            m.content
            if isinstance(m.content, str)
            else "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in m.content)
        )
        (system if role == "system" else out).append(
            content if role == "system" else {"role": role, "content": content}
        )
    return ([{"role": "system", "content": "\n\n".join(system)}] if system else []) + out


class RolechatChatModel(BaseChatModel):
    """`rt.chat_model("miaomiao")` -> use it like any LangChain chat model; `.stream()` streams tokens.

    >>> chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | rt.chat_model("miaomiao") | StrOutputParser()
    >>> for piece in chain.stream({"q": "你好"}): print(piece, end="")
    """

    runtime: Any
    persona: str | None = None
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @property
    def _llm_type(self) -> str:
        return "rolechat-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.runtime.info.model_id, "persona": self.persona or "base"}

    def _params(self, stop: list[str] | None) -> dict[str, Any]:
        params = {
            k: getattr(self, k)
            for k in ("max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed")
        }
        if stop:
            params["stop"] = list(stop)
        return params

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        stream = self.runtime.stream(to_chat_messages(messages), persona=self.persona, params=self._params(stop))
        for piece in stream:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        s = stream.stats
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                response_metadata={
                    "finish_reason": s.finish_reason,
                    "model": self.runtime.info.model_id,
                    "persona": self.persona or "base",
                },
                usage_metadata={
                    "input_tokens": s.prompt_tokens,
                    "output_tokens": s.completion_tokens,
                    "total_tokens": s.prompt_tokens + s.completion_tokens,
                },
            )
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text, meta, usage = "", {}, None
        for chunk in self._stream(messages, stop, run_manager, **kwargs):
            text += chunk.message.content
            meta.update(chunk.message.response_metadata)
            usage = chunk.message.usage_metadata or usage
        return ChatResult(
            generations=[ChatGeneration(message=AIMessage(content=text, response_metadata=meta, usage_metadata=usage))]
        )
