"""The trainable model: the runtime's base model (llm.loader) with LoRA adapters, optionally on a 4-bit base.

QLoRA is CUDA-only on purpose: bitsandbytes 4-bit also loads on a CPU, but it brings no speed there and any
no-grad forward before training repacks the weights into an inference-only layout that breaks every later
backward pass (see docs/training.md). On a CPU we refuse before anything loads.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from rolechat.finetune.config import TrainConfig
from rolechat.finetune.progress import perplexity
from rolechat.llm.loader import load_model_and_tokenizer, pick_device

__all__ = ["TrainError", "precision", "cpu_bf16", "check_device", "load_trainable", "evaluate_loss", "perplexity"]

log = logging.getLogger(__name__)


class TrainError(RuntimeError):
    """Training cannot start or finish; the message says why and what to do."""


def precision(cfg: TrainConfig, device: str) -> str:
    """The compute dtype name for this device: on CUDA bf16 (fp16 without bf16 support); on a CPU bf16 base layers
    where the CPU has AMX and one process trains (speedups.bf16_base), fp32 elsewhere; or what the config asks."""
    import torch

    if cfg.precision != "auto":
        if device == "cpu" and cfg.precision == "fp16":
            raise TrainError("train.precision = 'fp16' is for GPUs; on the CPU use fp32, auto or bf16")
        if device == "cpu" and cfg.precision == "bf16" and not cpu_bf16():
            raise TrainError(
                "train.precision = 'bf16': this CPU has no native bf16 arithmetic (AMX or AVX512-BF16), where bf16 "
                "matmuls are slower than fp32; use fp32 (or auto)"
            )
        return cfg.precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    # bf16 base layers helped one process on an AMX CPU (+13% tokens/s) and slowed two (-9%): docs/benchmarks.md
    alone = int(os.environ.get("WORLD_SIZE", "1")) == 1
    return "bf16" if device == "cpu" and alone and cpu_bf16(amx=True) else "fp32"


def cpu_bf16(*, amx: bool = False) -> bool:
    """Whether this CPU multiplies bf16 natively: AMX tiles (or, unless `amx`, AVX512-BF16)."""
    import torch

    probes = ("_is_amx_tile_supported",) if amx else ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def check_device(cfg: TrainConfig, device: str) -> str:
    """Resolve the device; refuse QLoRA without CUDA (clearly, before any weights load)."""
    import torch

    resolved = pick_device(device)
    if cfg.qlora and not (resolved.startswith("cuda") and torch.cuda.is_available()):
        raise TrainError(
            "--qlora needs a CUDA GPU (bitsandbytes 4-bit training); this machine trains on "
            f"{resolved}. Train plain LoRA instead (drop --qlora): on a CPU it is just as fast."
        )
    return resolved


def load_trainable(
    source: str, cfg: TrainConfig, *, device: str, trust_remote_code: bool = False, local_rank: int = 0
) -> tuple[Any, Any]:
    """(peft model ready to train, tokenizer). Only LoRA weights require grad."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    prec = precision(cfg, device)
    cpu_bf16_base = device == "cpu" and prec == "bf16"  # only the frozen base layers: see speedups.bf16_base
    dtype = "float32" if cpu_bf16_base else {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[prec]
    if device == "cuda":
        device = f"cuda:{local_rank}"
    model, tokenizer = load_model_and_tokenizer(
        source,
        device=device,
        dtype=dtype,
        quantization="4bit" if cfg.qlora else "none",
        trust_remote_code=trust_remote_code,
    )
    model.config.use_cache = False  # also required for packed rows (block-diagonal masks)
    if cfg.qlora:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    lora = LoraConfig(
        r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=cfg.target, task_type="CAUSAL_LM"
    )
    torch.manual_seed(cfg.seed)
    try:
        model = get_peft_model(model, lora)
    except ValueError as exc:
        linear = sorted(
            {name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)}
            - {"lm_head"}
        )
        raise TrainError(
            f"--target-modules {','.join(cfg.target_modules)}: {exc}. "
            f"Linear modules of this model: {', '.join(linear)} (or all-linear)"
        ) from None
    if cfg.gradient_checkpointing and not cfg.qlora:
        model.enable_input_require_grads()
    if device == "cpu" and (cfg.speedups or cpu_bf16_base):
        from rolechat.finetune.speedups import bf16_base, speed_up

        if cfg.speedups:
            log.info("CPU speed-ups: %s", speed_up(model, packed=cfg.packing and not trust_remote_code))
        if cpu_bf16_base:
            log.info("bf16 base layers: %d", bf16_base(model))
    return model, tokenizer


def evaluate_loss(model: Any, rows: Sequence[dict[str, list[int]]], collator: Any, batch_size: int) -> float | None:
    """Mean next-token loss over every supervised token of `rows` (token-weighted); None without rows."""
    import torch
    import torch.nn.functional as F

    if not rows:
        return None
    device = next(p.device for p in model.parameters() if p.numel())
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = collator([rows[i] for i in order[start : start + batch_size]])
            batch = {k: v.to(device) for k, v in batch.items()}
            labels = batch.pop("labels")
            logits = model(**batch, use_cache=False).logits[:, :-1].float()
            target = labels[:, 1:]
            total += F.cross_entropy(
                logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=-100, reduction="sum"
            ).item()
            count += int((target != -100).sum())
    model.train(was_training)
    return total / count if count else None
