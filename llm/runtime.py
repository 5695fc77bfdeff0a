"""The runtime: ONE base model with every persona adapter loaded into it, switched per request.

Adapters under `$ROLECHAT_HOME/personas` (and any `llm.persona_dirs`) are loaded with peft's
`load_adapter` into the single base model; a request names its persona and the runtime selects it
(`set_adapter`), or disables adapters for the plain base model. Nothing is reloaded on a switch.
Concurrent requests are generated together by one scheduler thread (`llm.batching`): rows of different
personas share each forward pass, every row routed to its own adapter, and join or leave the batch at any
decode step (`llm.max_batch` rows at most). Models whose cache cannot be batched generate one at a time,
serialized by the model lock. A persona's system prompt (from its manifest) is applied automatically.
A prompt-only character (a persona folder with a character card and no adapter) is selectable like any
persona; it generates with the base model (adapters disabled) and its own system prompt.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rolechat import settings
from rolechat.llm.batching import BatchedStream, BatchScheduler, supports_batching
from rolechat.llm.config import GenerationParams, LLMConfig
from rolechat.llm.encoding import encode_prompt, fit_prompt
from rolechat.llm.generation import GenerationStream
from rolechat.llm.loader import ResolvedModel, fingerprint, load_model_and_tokenizer, resolve_model, same_base
from rolechat.llm.personas import (
    BASE_PERSONA,
    PersonaEntry,
    PersonaError,
    PersonaManifest,
    discover,
    folders_stamp,
)
from rolechat.llm.templates import ChatFormat, resolve_format, stop_token_ids

__all__ = ["Runtime", "RuntimeInfo", "describe", "load_runtime", "persona_roots"]

log = logging.getLogger(__name__)

Message = Mapping[str, str]


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


class Runtime:
    """A loaded base model plus persona adapters.

    >>> rt = load_runtime()                       # demo model unless configured otherwise
    >>> rt.persona_names()                        # ['base', 'miaomiao', ...]
    >>> for piece in rt.stream([{"role": "user", "content": "你好"}], persona="miaomiao"): print(piece, end="")
    >>> rt.chat([{"role": "user", "content": "你好"}], persona="base", params={"temperature": 0})
    """

    # generations that run at once (server.max_concurrent auto): llm.max_batch when batched, else 1 (the lock)
    parallel_generations = 1

    def __init__(self, cfg: LLMConfig, model: Any, tokenizer: Any, resolved: ResolvedModel) -> None:
        from rolechat.llm.demo import DEMO_HINT

        self.cfg = cfg
        self.base_model = model
        self.model = model  # becomes a PeftModel once the first adapter loads
        self.tokenizer = tokenizer
        self.format: ChatFormat = resolve_format(tokenizer, cfg.template)
        self._stop_ids = stop_token_ids(tokenizer, self.format, getattr(model, "generation_config", None))
        max_pos = getattr(model.config, "max_position_embeddings", None) or 4096
        self.info = RuntimeInfo(
            model_id=resolved.model_id,
            source=resolved.source,
            device=str(next(model.parameters()).device),
            dtype=str(next(model.parameters()).dtype).replace("torch.", ""),
            is_demo=resolved.is_demo,
            fingerprint=fingerprint(model.config),
            template=self.format.name,
            context_length=cfg.context_length or min(int(max_pos), 32768),
            hint=DEMO_HINT if resolved.is_demo else "",
        )
        gen_cfg = getattr(model, "generation_config", None)
        self._model_max_new = min(int(getattr(gen_cfg, "max_new_tokens", None) or 512), 2048)
        # The model lock covers generation and adapter (un)loading. It is a plain Lock because a stream may be
        # closed (and so release it) on another thread than the one that started it, e.g. Streamlit's stop.
        # Persona bookkeeping has its own lock, so listing personas never waits for a reply to finish.
        self._model_lock = threading.Lock()
        self._lock = threading.RLock()
        self._entries: dict[str, PersonaEntry] = {}
        self._loaded: dict[str, tuple[Path, float]] = {}
        self._prompt_only: set[str] = set()  # character personas without an adapter: the base model
        self._layers: list[Any] | None = None
        self._active: str | None = None  # the adapter the cached layers point at
        self._scheduler: BatchScheduler | None = None
        if not cfg.trust_remote_code and supports_batching(model):
            self._scheduler = BatchScheduler(
                lambda: self.model, self._model_lock, self._persona_context, cfg.max_batch, self._can_mix
            )
            self.parallel_generations = cfg.max_batch
        self.reload_personas()

    @classmethod
    def load(cls, cfg: LLMConfig | None = None) -> Runtime:
        cfg = cfg or LLMConfig()
        resolved = resolve_model(cfg.model, cfg.default_hub_model)
        log.info("loading base model %s from %s", resolved.model_id, resolved.source)
        model, tokenizer = load_model_and_tokenizer(
            resolved.source,
            device=cfg.device,
            dtype=cfg.dtype,
            quantization=cfg.quantization,
            trust_remote_code=cfg.trust_remote_code,
        )
        return cls(cfg, model, tokenizer, resolved)

    # -- personas -----------------------------------------------------------------------------------

    def persona_roots(self) -> list[Path]:
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
        if persona in (None, "", BASE_PERSONA):
            return None
        with self._lock:
            entry = self._entries.get(persona)
            if entry is None or (persona not in self._loaded and persona not in self._prompt_only):
                known = ", ".join(self.persona_names())
                why = f": {entry.error}" if entry is not None and entry.error else ""
                raise PersonaError(f"persona {persona!r} is not available{why}. Available: {known}")
            return entry.manifest

    def _check_base(self, entry: PersonaEntry) -> str | None:
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

    def _load_adapter(self, entry: PersonaEntry) -> None:
        from peft import PeftModel

        if self.model is self.base_model:
            self.model = PeftModel.from_pretrained(self.base_model, str(entry.path), adapter_name=entry.name)
        else:
            self.model.load_adapter(str(entry.path), adapter_name=entry.name)
        self.model.eval()
        self._layers = None

    def _unload_adapter(self, name: str) -> None:
        self._loaded.pop(name, None)
        if self.model is not self.base_model and name in self.model.peft_config:
            self.model.delete_adapter(name)
            self._layers = None

    def refresh_personas(self) -> list[PersonaEntry]:
        """`reload_personas` when a persona folder changed since the last scan, else the personas as they are: a
        request naming an unknown model costs a few stats, not a read of every persona (nor the model lock)."""
        if folders_stamp(self.persona_roots()) == getattr(self, "_persona_stamp", None):
            return self.personas()
        return self.reload_personas()

    def reload_personas(self) -> list[PersonaEntry]:
        """Scan the persona folders: load new or changed adapters, drop removed ones. Never reloads the base."""
        with self._exclusive(), self._lock:
            self._persona_stamp = folders_stamp(self.persona_roots())  # before the scan: a change during it counts
            entries = discover(self.persona_roots())
            found = {e.name for e in entries}
            for name in list(self._loaded):
                if name not in found:
                    self._unload_adapter(name)
            self._entries = {}
            self._prompt_only = set()
            for entry in entries:
                self._entries[entry.name] = entry
                if not entry.ok:
                    self._unload_adapter(entry.name)
                    continue
                if not entry.has_adapter:  # a prompt-only character runs on any base model
                    self._unload_adapter(entry.name)
                    self._prompt_only.add(entry.name)
                    continue
                error = self._check_base(entry)
                if error:
                    entry.error = error
                    self._unload_adapter(entry.name)
                    log.warning(error)
                    continue
                weights = next(
                    f
                    for f in (entry.path / "adapter_model.safetensors", entry.path / "adapter_model.bin")
                    if f.is_file()
                )
                stamp = (entry.path, weights.stat().st_mtime)
                if self._loaded.get(entry.name) == stamp:
                    continue
                self._unload_adapter(entry.name)
                try:
                    self._load_adapter(entry)
                except Exception as exc:  # a corrupt adapter must not take the others down
                    entry.error = f"{entry.path}: adapter could not be loaded: {exc}"
                    log.warning(entry.error)
                    continue
                self._loaded[entry.name] = stamp
            return list(self._entries.values())

    def _exclusive(self) -> contextlib.AbstractContextManager:
        """The model to oneself (adapter (un)loading, diagnostics): running replies finish first."""
        return self._scheduler.exclusive() if self._scheduler is not None else self._model_lock

    def _can_mix(self) -> bool:
        """Whether rows of different personas may share one forward pass (not when an adapter replaces whole
        modules, `modules_to_save`, which peft cannot mix within a batch)."""
        return self.model is self.base_model or self._adapter_layers() is not None

    def _adapter_key(self, persona: str | None) -> str | None:
        """The adapter a persona generates with; None for the plain base model (base, prompt-only characters)."""
        return None if persona in (None, "", BASE_PERSONA) or persona in self._prompt_only else persona

    def _adapter_layers(self) -> list[Any] | None:
        """The LoRA layers of the loaded adapters, cached; None when an adapter also replaces whole modules
        (`modules_to_save`), which only peft's own set_adapter knows how to swap."""
        if self._layers is None:
            from peft.tuners.tuners_utils import BaseTunerLayer

            self._active = None
            configs = self.model.peft_config.values()
            self._layers = (
                []
                if any(getattr(c, "modules_to_save", None) for c in configs)
                else [m for m in self.model.modules() if isinstance(m, BaseTunerLayer)]
            )
        return self._layers or None

    @contextlib.contextmanager
    def _persona_context(self, persona: str | None):
        """Select the persona's adapter (or none) for the duration of one forward/generate.

        peft's set_adapter/disable_adapter walk every module and toggle requires_grad on each adapter weight
        (milliseconds on a deep model); at inference only each LoRA layer's active-adapter and disabled flags
        matter, so with plain LoRA adapters the runtime flips just those on the cached layers.
        """
        if self.model is self.base_model:
            yield
            return
        layers = self._adapter_layers()
        base = persona in (None, "", BASE_PERSONA) or persona in self._prompt_only
        if layers is None:  # modules_to_save present: the slow, general path
            if base:
                with self.model.disable_adapter():
                    yield
            else:
                self.model.set_adapter(persona)
                yield
            return
        if base:
            for layer in layers:
                layer._disable_adapters = True
            try:
                yield
            finally:
                for layer in layers:
                    layer._disable_adapters = False
        else:
            if self._active != persona:
                for layer in layers:  # a layer the adapter doesn't target must not keep the previous one active
                    layer._active_adapter = [persona]
                self._active = persona
            yield

    # -- prompts --------------------------------------------------------------------------------------

    def params(self, overrides: GenerationParams | Mapping[str, Any] | None = None) -> GenerationParams:
        if isinstance(overrides, GenerationParams):
            return overrides
        values = self.cfg.generation_defaults()
        values["max_new_tokens"] = values["max_new_tokens"] or self._model_max_new
        values.update({k: v for k, v in dict(overrides or {}).items() if v is not None})
        return GenerationParams(**values)

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
        """The prompt's token ids exactly as rendered, nothing dropped (`encode` trims to the context; the
        conversation engine measures with this and fits the context itself)."""
        msgs = self.prepare_messages(messages, persona, persona_system)
        return encode_prompt(self.tokenizer, self.format, msgs, enable_thinking=self._thinking(persona))

    def encode(
        self,
        messages: Sequence[Message],
        persona: str | None = None,
        max_new_tokens: int | None = None,
        persona_system: bool = True,
    ) -> list[int]:
        """Prompt token ids, with the oldest turns dropped to fit the context budget (never the system prompt).

        Message text is always plain text to the tokenizer (`llm.encoding`): a `<|im_end|>` typed by a user
        never becomes the template's control token.
        """
        msgs = self.prepare_messages(messages, persona, persona_system)
        if not msgs or msgs[-1]["role"] != "user":
            raise ValueError("the conversation must end with a user message")
        # The reply may claim at most half the context, so a long max_new_tokens never starves the prompt.
        reply = min(max_new_tokens or self.params().max_new_tokens, self.info.context_length // 2)
        budget = self.info.context_length - reply
        return fit_prompt(self.tokenizer, self.format, msgs, budget, enable_thinking=self._thinking(persona))

    # -- generation -----------------------------------------------------------------------------------

    def request(
        self,
        messages: Sequence[Message],
        persona: str | None = None,
        params: GenerationParams | Mapping[str, Any] | None = None,
        persona_system: bool = True,
    ) -> tuple[list[int], GenerationParams]:
        """What one generation needs, whichever backend runs it: the prompt ids (trimmed to the context) and
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

    def stream(
        self,
        messages: Sequence[Message],
        persona: str | None = None,
        params: GenerationParams | Mapping[str, Any] | None = None,
        persona_system: bool = True,
    ) -> GenerationStream:
        """Stream a reply as text pieces (see GenerationStream); `persona` None or "base" = the plain model.
        `persona_system=False` sends the messages without adding the persona's system prompt (see prepare_messages)."""
        ids, p = self.request(messages, persona, params, persona_system)
        if self._scheduler is not None:
            return BatchedStream(
                self._scheduler,
                self.tokenizer,
                ids,
                p,
                persona=persona,
                adapter=self._adapter_key(persona),
                stop_ids=self._stop_ids,
                stop_strings=self.format.stop_strings,
            )
        return self._generate_stream(ids, p, persona)

    def _generate_stream(self, ids: Sequence[int], p: GenerationParams, persona: str | None) -> GenerationStream:
        """One reply at a time through transformers' `generate`, under the model lock (models that cannot batch)."""
        return GenerationStream(
            self.model,
            self.tokenizer,
            ids,
            p,
            stop_ids=self._stop_ids,
            stop_strings=self.format.stop_strings,
            lock=self._model_lock,
            context=lambda: self._persona_context(persona),
        )

    def chat(
        self,
        messages: Sequence[Message],
        persona: str | None = None,
        params: GenerationParams | Mapping[str, Any] | None = None,
    ) -> str:
        """The blocking reply: the joined stream."""
        return self.stream(messages, persona, params).join()

    def logits(self, messages: Sequence[Message], persona: str | None = None) -> Any:
        """Next-token logits after the prompt (1-D tensor): for tests and diagnostics."""
        import torch

        ids = self.encode(messages, persona)
        with self._exclusive(), self._persona_context(persona), torch.inference_mode():
            device = next(self.model.parameters()).device
            out = self.model(input_ids=torch.tensor([ids], device=device))
            return out.logits[0, -1].float().cpu()

    def reply_loss(self, messages: Sequence[Message], reply: str, persona: str | None = None) -> tuple[float, int]:
        """(summed negative log-likelihood, token count) of `reply` as the answer to `messages`, under the persona's
        adapter (None or "base": the plain model), the reply's end-of-turn token included: the basis of the
        perplexity `rolechat eval-persona` compares."""
        import torch

        prompt = self.prompt_ids(messages, persona)
        eos = self._stop_ids[:1] if self._stop_ids else []
        target = self.tokenizer.encode(reply, add_special_tokens=False) + list(eos)
        ids = (prompt + target)[-self.info.context_length :]
        n = min(len(target), len(ids) - 1)
        if n <= 0:
            return 0.0, 0
        with self._exclusive(), self._persona_context(persona), torch.inference_mode():
            device = next(self.model.parameters()).device
            logits = self.model(input_ids=torch.tensor([ids], device=device)).logits[0].float()
            nll = torch.nn.functional.cross_entropy(logits[-n - 1 : -1], torch.tensor(ids[-n:], device=device))
        return float(nll) * n, n

    def chat_model(self, persona: str | None = None, **params: Any) -> Any:
        """A LangChain chat model bound to this runtime and persona."""
        from rolechat.llm.chat_model import RolechatChatModel

        return RolechatChatModel(runtime=self, persona=persona, **params)


def persona_roots(cfg: LLMConfig, is_demo: bool) -> list[Path]:
    """Where personas are looked for: $ROLECHAT_HOME/personas, llm.persona_dirs, and with the demo model
    the sample personas shipped for it (your own personas win on a name clash)."""
    roots = [settings.personas_dir(), *(Path(p).expanduser() for p in cfg.persona_dirs)]
    if is_demo:
        from rolechat.llm.demo import SAMPLE_PERSONAS_DIR

        roots.append(SAMPLE_PERSONAS_DIR)
    return roots


def load_runtime(cfg: LLMConfig | None = None, **overrides: Any) -> Runtime:
    """Load the runtime for `cfg` (defaults when None), with keyword overrides of its fields.

    The runtime never reads the config file or the environment itself: entry points build the LLMConfig
    with `rolechat.settings.build(LLMConfig, "llm", file_data, flags)` (file < environment < flags).
    """
    cfg = replace(cfg or LLMConfig(), **overrides) if overrides else (cfg or LLMConfig())
    if cfg.backend == "openai":
        from rolechat.llm.remote import RemoteRuntime

        return RemoteRuntime.load(cfg)
    return Runtime.load(cfg)


def describe(entries: Iterable[PersonaEntry]) -> list[dict[str, Any]]:
    """Plain dicts for listings (CLI, API, app)."""
    rows = []
    for e in entries:
        m = e.manifest
        rows.append(
            {
                "name": e.name,
                "display_name": m.display_name if m else e.name,
                "system_prompt": m.system_prompt if m else "",
                "base_model": m.base_model if m else "",
                "kind": "character" if m and m.card else "adapter",
                "adapter": e.has_adapter,
                "path": str(e.path),
                "ok": e.ok,
                "error": e.error,
            }
        )
    return rows
