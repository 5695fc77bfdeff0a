"""The local backend: ONE base model in this process with every persona adapter loaded into it, switched per
request.

Adapters under `$ROLECHAT_HOME/personas` (and any `llm.persona_dirs`) are loaded with peft's
`load_adapter` into the single base model; a request names its persona and the runtime selects it
(`set_adapter`), or disables adapters for the plain base model. Nothing is reloaded on a switch.
Concurrent requests are generated together by one scheduler thread (`llm.batching`): rows of different
personas share each forward pass, every row routed to its own adapter, and join or leave the batch at any
decode step (`llm.max_batch` rows at most). Models whose cache cannot be batched generate one at a time,
serialized by the model lock. A persona's system prompt (from its manifest) is applied automatically.
A prompt-only character (a persona folder with a character card and no adapter) is selectable like any
persona; it generates with the base model (adapters disabled) and its own system prompt.
The persona registry and prompt assembly it shares with the remote backend live in `llm.backend.Backend`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from rolechat.llm.backend import Backend, Message
from rolechat.llm.batching import BatchedStream, BatchScheduler, supports_batching
from rolechat.llm.config import GenerationParams, LLMConfig
from rolechat.llm.generation import GenerationStream
from rolechat.llm.loader import ResolvedModel, load_model_and_tokenizer, resolve_model
from rolechat.llm.lora_batch import lora_layers
from rolechat.llm.personas import BASE_PERSONA, PersonaEntry, discover, folders_stamp
from rolechat.llm.prefix_cache import PrefixCache

if TYPE_CHECKING:
    import torch

__all__ = ["Runtime"]

log = logging.getLogger(__name__)


class Runtime(Backend):
    """A loaded base model plus persona adapters, in this process (`llm.backend.Backend`: the surface, the
    shared half).

    >>> rt = load_runtime()                       # llm.runtime; the demo model unless configured otherwise
    >>> rt.persona_names()                        # ['base', 'miaomiao', ...]
    >>> for piece in rt.stream([{"role": "user", "content": "你好"}], persona="miaomiao"): print(piece, end="")
    >>> rt.chat([{"role": "user", "content": "你好"}], persona="base", params={"temperature": 0})
    """

    def __init__(self, cfg: LLMConfig, model: Any, tokenizer: Any, resolved: ResolvedModel) -> None:
        param = next(model.parameters())
        super().__init__(
            cfg,
            tokenizer,
            resolved,
            model.config,
            getattr(model, "generation_config", None),
            device=str(param.device),
            dtype=str(param.dtype).replace("torch.", ""),
        )
        self.base_model = model
        self.model = model  # becomes a PeftModel once the first adapter loads
        # The model lock covers generation and adapter (un)loading. It is a plain Lock because a stream may be
        # closed (and so release it) on another thread than the one that started it, e.g. Streamlit's stop.
        self._model_lock = threading.Lock()
        self._layers: list[Any] | None = None
        self._active: str | None = None  # the adapter the cached layers point at
        self._scheduler: BatchScheduler | None = None
        if not cfg.trust_remote_code and supports_batching(model):
            self._scheduler = BatchScheduler(
                lambda: self.model,
                self._model_lock,
                self._persona_context,
                cfg.max_batch,
                self._can_mix,
                self._adapter_layers,
                PrefixCache(cfg.prefix_cache_mb * 2**20),
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

    def _load_adapter(self, entry: PersonaEntry) -> None:
        from peft import PeftModel

        if self.model is self.base_model:
            self.model = PeftModel.from_pretrained(self.base_model, str(entry.path), adapter_name=entry.name)
        else:
            self.model.load_adapter(str(entry.path), adapter_name=entry.name)
        self.model.eval()
        self._layers = None
        self._forget_prompts(entry.name)

    def _unload_adapter(self, name: str) -> None:
        self._loaded.pop(name, None)
        if self.model is not self.base_model and name in self.model.peft_config:
            self.model.delete_adapter(name)
            self._layers = None
        self._forget_prompts(name)

    def _forget_prompts(self, adapter: str) -> None:
        """Stored prompt caches computed with an adapter that is gone or being replaced must not be reused."""
        if self._scheduler is not None:
            self._scheduler.prefixes.forget(adapter)

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
            self._active = None
            self._layers = lora_layers(self.model)
        return self._layers or None

    @contextlib.contextmanager
    def _persona_context(self, persona: str | None) -> Iterator[None]:
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

    # -- generation -----------------------------------------------------------------------------------

    def _generate(self, ids: list[int], params: GenerationParams, persona: str | None) -> GenerationStream:
        """Batched with the other requests by the scheduler, or on its own through `generate` (see the module
        docstring)."""
        if self._scheduler is not None:
            return BatchedStream(
                self._scheduler,
                self.tokenizer,
                ids,
                params,
                persona=persona,
                adapter=self._adapter_key(persona),
                stop_ids=self._stop_ids,
                stop_strings=self.format.stop_strings,
            )
        return self._generate_stream(ids, params, persona)

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

    def logits(self, messages: Sequence[Message], persona: str | None = None) -> torch.Tensor:
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
