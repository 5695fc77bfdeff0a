"""What a model backend is (`Backend`): the half that needs no weights, written once, and what each backend adds.

Two backends extend it: the in-process runtime (`llm.local.Runtime`: one base model with every persona adapter
loaded into it) and the remote one (`llm.remote.RemoteRuntime`: an OpenAI-compatible server runs the forward
pass), as LLaMA-Factory's engines extend its `BaseEngine`. `llm.runtime.load_runtime` picks one for a config;
callers (the conversation engine, the API, the CLI, the app, persona evaluation) see only this surface.

`Backend` owns everything that does not touch the forward pass, so the two can never render a different prompt
for the same chat: the persona registry (which folders, which personas are usable, their manifests) and prompt
assembly (the persona's system prompt, the chat template, the check that a prompt fits the context, the
sampling settings). A backend adds how it loads, how it (re)loads persona adapters, and how it generates. There
is no "switch adapter" call: every request names its persona, and the backend selects that persona's adapter
(or its served LoRA module) for that request only.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from rolechat import settings
from rolechat.llm.config import GenerationParams, LLMConfig
from rolechat.llm.demo.layout import DEMO_HINT, SAMPLE_PERSONAS_DIR
from rolechat.llm.encoding import encode_prompt, encode_text
from rolechat.llm.generation import TextStream
from rolechat.llm.loader import ResolvedModel, fingerprint, same_base
from rolechat.llm.personas import BASE_PERSONA, PersonaEntry, PersonaError, PersonaManifest, folders_stamp
from rolechat.llm.templates import ChatFormat, resolve_format, stop_token_ids

if TYPE_CHECKING:
    from typing import Self

    import torch
    from transformers import GenerationConfig, PretrainedConfig, PreTrainedTokenizerBase

    from rolechat.llm.chat_model import RolechatChatModel

__all__ = ["Backend", "Message", "ParamOverrides", "PromptTooLong", "RuntimeInfo", "persona_roots"]

log = logging.getLogger(__name__)

Message = Mapping[str, str]
# sampling settings for one request: whole, or the fields to change (None values keep the default)
ParamOverrides = GenerationParams | Mapping[str, object] | None


class PromptTooLong(ValueError):
    """A prompt that leaves the reply too little of the context. The backend never drops a turn: a chat is
    fitted by the conversation layer; a caller sending messages itself shortens them (LangChain:
    `trim_messages` before the chat model)."""

    def __init__(self, tokens: int, budget: int, context: int) -> None:
        super().__init__(
            f"the prompt is {tokens} tokens, but llm.context_length ({context}) leaves {budget} for it after the "
            "reply's room (max_new_tokens, at most half the context): send fewer or shorter messages, lower "
            "max_new_tokens, or raise llm.context_length if the model allows"
        )
        self.tokens, self.budget, self.context = tokens, budget, context


@dataclass(frozen=True)
class RuntimeInfo:
    """What is loaded, for banners and `/v1/models`."""

    model_id: str
    source: str
    device: str
    dtype: str
    is_demo: bool
    fingerprint: str
    template: str
    context_length: int
    hint: str = ""


class Backend(ABC):
    """A loaded base model with its personas, as every caller uses it: the persona registry and prompt assembly
    that both backends share, written once here, and the abstract part each backend adds (`load`,
    `reload_personas`, `logits`, `reply_loss`, and `_generate`, a reply to prompt ids). Until a backend has them
    all it cannot be instantiated.

    >>> rt = load_runtime()                       # llm.runtime: in-process or remote, per llm.backend
    >>> rt.persona_names()                        # ['base', 'miaomiao', ...]
    >>> for piece in rt.stream([{"role": "user", "content": "你好"}], persona="miaomiao"): print(piece, end="")
    >>> rt.chat([{"role": "user", "content": "你好"}], persona="base", params={"temperature": 0})
    """

    cfg: LLMConfig
    info: RuntimeInfo
    tokenizer: PreTrainedTokenizerBase
    format: ChatFormat
    parallel_generations: int = 1  # generations it runs at once (server.max_concurrent auto)

    def __init__(
        self,
        cfg: LLMConfig,
        tokenizer: PreTrainedTokenizerBase,
        resolved: ResolvedModel,
        model_config: PretrainedConfig,
        generation_config: GenerationConfig | None,
        *,
        device: str,
        dtype: str,
    ) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.format: ChatFormat = resolve_format(tokenizer, cfg.template)
        self._stop_ids = stop_token_ids(tokenizer, self.format, generation_config)
        max_pos = getattr(model_config, "max_position_embeddings", None) or 4096
        self.info = RuntimeInfo(
            model_id=resolved.model_id,
            source=resolved.source,
            device=device,
            dtype=dtype,
            is_demo=resolved.is_demo,
            fingerprint=fingerprint(model_config),
            template=self.format.name,
            context_length=cfg.context_length or min(int(max_pos), 32768),
            hint=DEMO_HINT if resolved.is_demo else "",
        )
        self._model_max_new = min(int(getattr(generation_config, "max_new_tokens", None) or 512), 2048)
        # Persona bookkeeping has its own lock, so listing personas never waits for a reply to finish.
        self._lock = threading.RLock()
        self._entries: dict[str, PersonaEntry] = {}
        self._loaded: dict[str, tuple[Path, float]] = {}  # usable adapter personas: (folder, weights' mtime or 0)
        self._prompt_only: set[str] = set()  # character personas without an adapter: the base model
        self._persona_stamp: object = None

    @classmethod
    @abstractmethod
    def load(cls, cfg: LLMConfig | None = None) -> Self:
        """Load the base model (or connect to its server) and scan the persona folders."""

    @abstractmethod
    def reload_personas(self) -> list[PersonaEntry]:
        """Scan the persona folders again: new or changed adapters become usable, removed ones go."""

    @abstractmethod
    def logits(self, messages: Sequence[Message], persona: str | None = None) -> torch.Tensor:
        """Next-token logits after the prompt (diagnostics); RemoteError where the server cannot give them."""

    @abstractmethod
    def reply_loss(self, messages: Sequence[Message], reply: str, persona: str | None = None) -> tuple[float, int]:
        """(summed negative log-likelihood, token count) of `reply` as the answer to `messages`."""

    # -- personas: which ones exist and are usable; each request names one ----------------------------------

    def persona_roots(self) -> list[Path]:
        """The folders personas are looked for in."""
        return persona_roots(self.cfg, self.info.is_demo)

    def personas(self) -> list[PersonaEntry]:
        """Every persona folder found, usable or not (`entry.error` says why not)."""
        with self._lock:
            return list(self._entries.values())

    def persona_names(self) -> list[str]:
        """Selectable personas: "base" first, then each loaded adapter and each prompt-only character."""
        with self._lock:
            return [BASE_PERSONA, *sorted({*self._loaded, *self._prompt_only})]

    def manifest(self, persona: str | None) -> PersonaManifest | None:
        """The persona's manifest (None for the base model); PersonaError when it is not available."""
        if persona in (None, "", BASE_PERSONA):
            return None
        with self._lock:
            entry = self._entries.get(persona)
            if entry is None or (persona not in self._loaded and persona not in self._prompt_only):
                known = ", ".join(self.persona_names())
                why = f": {entry.error}" if entry is not None and entry.error else ""
                raise PersonaError(f"persona {persona!r} is not available{why}. Available: {known}")
            return entry.manifest

    def refresh_personas(self) -> list[PersonaEntry]:
        """`reload_personas` when a persona folder changed since the last scan, else the personas as they are: a
        request naming an unknown model costs a few stats, not a read of every persona (nor the model lock)."""
        if folders_stamp(self.persona_roots()) == self._persona_stamp:
            return self.personas()
        return self.reload_personas()

    def _check_base(self, entry: PersonaEntry) -> str | None:
        """Why the persona's adapter cannot run on the loaded base model, or None when it can."""
        m = entry.manifest
        assert m is not None
        if m.base_fingerprint and m.base_fingerprint != self.info.fingerprint:
            return (
                f"persona {m.name!r} was trained on {m.base_model or 'another model'!r} (architecture "
                f"{m.base_fingerprint}); the loaded base model {self.info.model_id!r} is {self.info.fingerprint}. "
                "Load its base model (llm.model) to use it."
            )
        if not same_base(m.base_model, self.info.model_id):
            message = f"persona {m.name!r} was trained on {m.base_model!r}, but {self.info.model_id!r} is loaded"
            if self.cfg.on_base_mismatch == "refuse":
                return message + ' (set llm.on_base_mismatch = "warn" to load it anyway)'
            log.warning("%s; loading it anyway (llm.on_base_mismatch = warn)", message)
        return None

    # -- prompts ----------------------------------------------------------------------------------------------

    def params(self, overrides: ParamOverrides = None) -> GenerationParams:
        """The configured sampling settings with `overrides` applied."""
        if isinstance(overrides, GenerationParams):
            return overrides
        values = self.cfg.generation_defaults()
        values["max_new_tokens"] = values["max_new_tokens"] or self._model_max_new
        values.update({k: v for k, v in dict(overrides or {}).items() if v is not None})
        return GenerationParams(**values)

    def count_tokens(self, text: str) -> int:
        """How many tokens `text` takes as plain message text."""
        return len(encode_text(self.tokenizer, text))

    def prepare_messages(
        self, messages: Sequence[Message], persona: str | None, persona_system: bool = True
    ) -> list[dict[str, str]]:
        """Apply the persona's system prompt (before any system text the caller sent, e.g. RAG context).

        `persona_system=False`: the messages already hold the whole system text (the conversation engine
        writes it, card and persona prompt included); they are sent as they are."""
        manifest = self.manifest(persona)
        msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
        if not persona_system:
            return msgs
        system = manifest.system_prompt if manifest else ""
        if msgs and msgs[0]["role"] == "system":
            caller = msgs.pop(0)["content"]
            system = f"{system}\n\n{caller}" if system else caller
        return ([{"role": "system", "content": system}] if system else []) + msgs

    def _thinking(self, persona: str | None) -> bool:
        manifest = self.manifest(persona)
        if manifest is None or persona in self._prompt_only:  # a prompt-only character is the base model's
            return self.cfg.enable_thinking
        return manifest.enable_thinking

    def prompt_ids(
        self, messages: Sequence[Message], persona: str | None = None, persona_system: bool = True
    ) -> list[int]:
        """The prompt's token ids exactly as rendered, whatever their length (the conversation engine measures
        with this while it fits a chat to the context; `encode` refuses a prompt that does not fit)."""
        msgs = self.prepare_messages(messages, persona, persona_system)
        return encode_prompt(self.tokenizer, self.format, msgs, enable_thinking=self._thinking(persona))

    def encode(
        self,
        messages: Sequence[Message],
        persona: str | None = None,
        max_new_tokens: int | None = None,
        persona_system: bool = True,
    ) -> list[int]:
        """Prompt token ids, exactly as rendered; `PromptTooLong` when they leave the reply less room than it may
        claim (`max_new_tokens`, at most half the context). Nothing is dropped here: fitting a chat to the
        context is the conversation layer's (`rolechat.conversation`), which decides what may go.

        Message text is always plain text to the tokenizer (`llm.encoding`): a `<|im_end|>` typed by a user
        never becomes the template's control token.
        """
        msgs = self.prepare_messages(messages, persona, persona_system)
        if not msgs or msgs[-1]["role"] != "user":
            raise ValueError("the conversation must end with a user message")
        ids = encode_prompt(self.tokenizer, self.format, msgs, enable_thinking=self._thinking(persona))
        # The reply may claim at most half the context, so a long max_new_tokens never starves the prompt.
        reply = min(max_new_tokens or self.params().max_new_tokens, self.info.context_length // 2)
        budget = self.info.context_length - reply
        if len(ids) > budget:
            raise PromptTooLong(len(ids), budget, self.info.context_length)
        return ids

    def request(
        self,
        messages: Sequence[Message],
        persona: str | None = None,
        params: ParamOverrides = None,
        persona_system: bool = True,
    ) -> tuple[list[int], GenerationParams]:
        """What one generation needs, whichever backend runs it: the prompt ids (within the context) and
        the sampling settings, with the persona's stop strings added and the reply capped to the room left."""
        p = self.params(params)
        manifest = self.manifest(persona)
        if manifest and manifest.stop:
            p = replace(p, stop=[*p.stop, *manifest.stop])
        ids = self.encode(messages, persona, p.max_new_tokens, persona_system)
        room = self.info.context_length - len(ids)
        if p.max_new_tokens > room:
            p = replace(p, max_new_tokens=max(room, 1))
        return ids, p

    # -- generation -------------------------------------------------------------------------------------------

    def stream(
        self,
        messages: Sequence[Message],
        persona: str | None = None,
        params: ParamOverrides = None,
        persona_system: bool = True,
    ) -> TextStream:
        """Stream a reply as text pieces; `persona` None or "base" = the plain model. `persona_system=False` sends
        the messages without adding the persona's system prompt (see prepare_messages)."""
        ids, p = self.request(messages, persona, params, persona_system)
        return self._generate(ids, p, persona)

    @abstractmethod
    def _generate(self, ids: list[int], params: GenerationParams, persona: str | None) -> TextStream:
        """The reply to prompt `ids` (from `request`: rendered, within the context, persona applied), streamed."""

    def chat(self, messages: Sequence[Message], persona: str | None = None, params: ParamOverrides = None) -> str:
        """The blocking reply: the joined stream."""
        return self.stream(messages, persona, params).join()

    def chat_model(self, persona: str | None = None, **params: float | None) -> RolechatChatModel:
        """A LangChain chat model bound to this backend and persona."""
        from rolechat.llm.chat_model import RolechatChatModel

        return RolechatChatModel(runtime=self, persona=persona, **params)


def persona_roots(cfg: LLMConfig, is_demo: bool) -> list[Path]:
    """Where personas are looked for: $ROLECHAT_HOME/personas, llm.persona_dirs, and with the demo model
    the sample personas shipped for it (your own personas win on a name clash)."""
    roots = [settings.personas_dir(), *(Path(p).expanduser() for p in cfg.persona_dirs)]
    if is_demo:
        roots.append(SAMPLE_PERSONAS_DIR)
    return roots
