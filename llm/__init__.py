"""The local model runtime: load a base model, render chats, stream tokens, switch persona adapters.

A walk through: `backend` says what a runtime offers (`Backend`, an abstract base) and holds the half both backends
share (personas, prompts); `local` runs the model in this process, `remote` on an OpenAI-compatible server;
`runtime.load_runtime` picks one. Below them: `templates` and `encoding` (chat text -> ids, also for training),
`generation` and `batching` (streaming), `loader`, `personas`, `config`.

Knows nothing of `rag` or `finetune`. torch/transformers/peft load only when a model is loaded, and the
LangChain adapter (`llm.chat_model.RolechatChatModel`) only when it is asked for.
"""

from rolechat.llm.backend import Backend, PromptTooLong
from rolechat.llm.config import GenerationParams, LLMConfig
from rolechat.llm.encoding import encode_prompt, encode_turns
from rolechat.llm.generation import GenerationStats, GenerationStream, TextStream
from rolechat.llm.loader import LoadError, fingerprint, load_model_and_tokenizer, resolve_model
from rolechat.llm.personas import BASE_PERSONA, PersonaEntry, PersonaError, PersonaManifest, discover
from rolechat.llm.runtime import Runtime, RuntimeInfo, describe, load_runtime
from rolechat.llm.templates import ChatFormat, TemplateError, render_prompt, resolve_format

__all__ = [
    "BASE_PERSONA",
    "Backend",
    "ChatFormat",
    "GenerationParams",
    "GenerationStats",
    "GenerationStream",
    "LLMConfig",
    "LoadError",
    "PersonaEntry",
    "PersonaError",
    "PersonaManifest",
    "PromptTooLong",
    "Runtime",
    "RuntimeInfo",
    "TemplateError",
    "TextStream",
    "describe",
    "discover",
    "encode_prompt",
    "encode_turns",
    "fingerprint",
    "load_model_and_tokenizer",
    "load_runtime",
    "render_prompt",
    "resolve_format",
    "resolve_model",
]
