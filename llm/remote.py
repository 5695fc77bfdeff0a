"""The remote backend: the same personas served by an OpenAI-compatible engine (vLLM, SGLang) instead of
in-process.

`llm.backend = "openai"` with `llm.base_url` (e.g. http://127.0.0.1:8001/v1) makes `load_runtime` return a
`RemoteRuntime`: everything but the forward pass stays here. Personas are the same folders (their manifests
give the system prompt, card and template arguments); an adapter persona is sent to the server model of the
same name (a LoRA module: `rolechat export vllm` prints the command that serves them all), the base model
and prompt-only characters to the base model's served name. The prompt is rendered and trimmed HERE with
the local tokenizer (the model folder of `llm.model`), exactly as in-process, and sent as token ids to
`/v1/completions`, so the server sees the very tokens the runtime would have fed its own model: the chat
template, `enable_thinking` and plain-text encoding of user text cannot drift between the two backends.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from rolechat.llm.backend import Backend, Message
from rolechat.llm.config import GenerationParams, LLMConfig
from rolechat.llm.generation import TextStream
from rolechat.llm.loader import LoadError, ResolvedModel, resolve_model
from rolechat.llm.personas import BASE_PERSONA, PersonaEntry, discover, folders_stamp

if TYPE_CHECKING:
    import httpx
    from transformers import GenerationConfig, PretrainedConfig, PreTrainedTokenizerBase

__all__ = ["RemoteRuntime", "RemoteStream", "RemoteError"]

log = logging.getLogger(__name__)


class RemoteError(LoadError):
    """The remote server could not be reached or refused a request; the message names the URL."""


def _headers(cfg: LLMConfig) -> dict[str, str]:
    return {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}


class RemoteStream(TextStream):
    """A reply streamed from the server's `/v1/completions`, shaped like GenerationStream: iterate for text
    pieces; `.text` and `.stats` describe the reply; closing (or `cancel`) drops the connection, which makes
    vLLM abort the request."""

    def __init__(self, client: httpx.Client, url: str, body: dict[str, Any], prompt_tokens: int) -> None:
        super().__init__(prompt_tokens)
        self._client, self._url, self._body = client, url, body

    def _run(self) -> Iterator[str]:
        import httpx

        start = time.perf_counter()
        done = False
        try:
            with self._client.stream("POST", self._url, json=self._body) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise RemoteError(f"{self._url}: HTTP {resp.status_code}: {resp.text[:500]}")
                for line in resp.iter_lines():
                    if self._cancel.is_set():
                        break
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        done = True
                        break
                    event = json.loads(data)
                    if event.get("usage"):
                        self.stats.completion_tokens = event["usage"].get("completion_tokens", 0)
                    for choice in event.get("choices") or []:
                        # whole characters only, as in-process: an engine shows byte tokens that never form a
                        # character as U+FFFD, the runtime leaves them out
                        piece = (choice.get("text") or "").replace("\ufffd", "")
                        if piece:
                            if self.stats.time_to_first_token is None:
                                self.stats.time_to_first_token = time.perf_counter() - start
                            self.text += piece
                            yield piece
                        if choice.get("finish_reason"):
                            self.stats.finish_reason = "length" if choice["finish_reason"] == "length" else "stop"
        except httpx.HTTPError as exc:
            raise RemoteError(f"{self._url}: {exc}") from exc
        finally:
            if not done and not self.stats.finish_reason:
                self.stats.finish_reason = "cancelled"
            self.stats.elapsed = time.perf_counter() - start


class RemoteRuntime(Backend):
    """A backend whose forward passes run on an OpenAI-compatible server (see the module docstring).

    >>> rt = load_runtime(LLMConfig(backend="openai", base_url="http://127.0.0.1:8001/v1", model="llm/demo/model"))
    >>> rt.chat([{"role": "user", "content": "你好"}], persona="miaomiao", params={"temperature": 0})
    """

    parallel_generations = 64  # requests it can have in flight: the engine batches them (server.max_concurrent auto)

    def __init__(
        self,
        cfg: LLMConfig,
        tokenizer: PreTrainedTokenizerBase,
        model_config: PretrainedConfig,
        resolved: ResolvedModel,
    ) -> None:
        import httpx

        device = f"remote {cfg.base_url}"
        super().__init__(
            cfg, tokenizer, resolved, model_config, _generation_config(resolved.source), device=device, dtype="remote"
        )
        self._client = httpx.Client(base_url=cfg.base_url.rstrip("/"), headers=_headers(cfg), timeout=cfg.timeout)
        self._served = self._served_models()
        self.served_base = cfg.served_model or self._base_name()
        self.reload_personas()

    @classmethod
    def load(cls, cfg: LLMConfig | None = None) -> RemoteRuntime:
        from transformers import AutoConfig, AutoTokenizer

        cfg = cfg or LLMConfig()
        resolved = resolve_model(cfg.model, cfg.default_hub_model)
        try:
            tokenizer = AutoTokenizer.from_pretrained(resolved.source, trust_remote_code=cfg.trust_remote_code)
            model_config = AutoConfig.from_pretrained(resolved.source, trust_remote_code=cfg.trust_remote_code)
        except (OSError, ValueError) as exc:
            raise LoadError(
                f"the remote backend renders prompts with the base model's local tokenizer; could not read "
                f"{resolved.source!r}: {exc}"
            ) from exc
        return cls(cfg, tokenizer, model_config, resolved)

    # -- the server ---------------------------------------------------------------------------------

    def _served_models(self) -> list[dict[str, Any]]:
        import httpx

        url = f"{self.cfg.base_url.rstrip('/')}/models"
        try:
            resp = self._client.get("/models")
        except httpx.HTTPError as exc:
            raise RemoteError(f"{url}: {exc} (is the server running? llm.base_url)") from exc
        if resp.status_code >= 400:
            raise RemoteError(f"{url}: HTTP {resp.status_code}: {resp.text[:300]}")
        return list(resp.json().get("data") or [])

    def _base_name(self) -> str:
        bases = [m["id"] for m in self._served if not m.get("parent")]
        if not bases:
            raise RemoteError(f"{self.cfg.base_url}: serves no base model (/v1/models is empty)")
        if len(bases) > 1:
            raise RemoteError(
                f"{self.cfg.base_url} serves several base models ({', '.join(bases)}): set llm.served_model"
            )
        return bases[0]

    def served_name(self, persona: str | None) -> str:
        """The server's model name for a persona: its LoRA module, or the base model."""
        if persona in (None, "", BASE_PERSONA) or persona in self._prompt_only:
            return self.served_base
        return persona

    # -- personas -----------------------------------------------------------------------------------

    def reload_personas(self) -> list[PersonaEntry]:
        """Persona folders as in-process; an adapter persona is usable when the server serves it by name."""
        with self._lock:
            self._persona_stamp = folders_stamp(self.persona_roots())  # before the scan: a change during it counts
            self._served = self._served_models()
            served = {m["id"] for m in self._served}
            self._entries, self._loaded, self._prompt_only = {}, {}, set()
            for entry in discover(self.persona_roots()):
                self._entries[entry.name] = entry
                if not entry.ok:
                    continue
                if not entry.has_adapter:
                    self._prompt_only.add(entry.name)
                    continue
                error = self._check_base(entry)
                if error is None and entry.name not in served:
                    error = (
                        f"persona {entry.name!r} is not served by {self.cfg.base_url} (serve its adapter as a "
                        f"LoRA module named {entry.name!r}: `rolechat export vllm` prints the command)"
                    )
                if error:
                    entry.error = error
                    log.warning(error)
                    continue
                self._loaded[entry.name] = (entry.path, 0.0)
            return list(self._entries.values())

    # -- generation ---------------------------------------------------------------------------------

    def _generate(self, ids: list[int], params: GenerationParams, persona: str | None) -> RemoteStream:
        """The reply to `ids` from the server's `/v1/completions`, with the same sampling settings and stop
        tokens the in-process runtime would use."""
        body: dict[str, Any] = {
            "model": self.served_name(persona),
            "prompt": ids,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": 1.0 if params.greedy else params.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
            "stop": [s for s in (*self.format.stop_strings, *params.stop) if s],
            # vLLM / SGLang sampling extensions, so a greedy reply equals the in-process one
            "top_k": -1 if params.greedy or not params.top_k else params.top_k,
            "repetition_penalty": params.repetition_penalty,
            "stop_token_ids": self._stop_ids,
            "skip_special_tokens": True,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        return RemoteStream(self._client, f"{self.cfg.base_url.rstrip('/')}/completions", body, len(ids))

    def logits(self, messages: Sequence[Message], persona: str | None = None) -> NoReturn:
        raise RemoteError("next-token logits are not available from a remote server (llm.backend = openai)")

    def reply_loss(self, messages: Sequence[Message], reply: str, persona: str | None = None) -> NoReturn:
        raise RemoteError("a reply's likelihood is not available from a remote server (llm.backend = openai)")


def _generation_config(source: str) -> GenerationConfig | None:
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(source)
    except (OSError, ValueError):
        return None
