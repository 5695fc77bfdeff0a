"""Finding and loading a base model through the ordinary transformers paths.

Resolution order: the configured model (local folder or cached hub id) -> the default hub id if it is
already in the local Hugging Face cache -> the built-in demo model shipped with rolechat. Nothing is
ever downloaded unless the user turned HF_HUB_OFFLINE off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "LoadError",
    "ResolvedModel",
    "resolve_model",
    "pick_device",
    "load_model_and_tokenizer",
    "fingerprint",
    "same_base",
]

log = logging.getLogger(__name__)
# peft reads transformers 5's deprecated `is_gradient_checkpointing` whenever it wraps a model (runtime and
# training alike); the warning is harmless and nothing a user can act on, so `rolechat ask` etc. don't print it.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


class LoadError(RuntimeError):
    """The base model cannot be found or loaded; the message says what to do."""


@dataclass(frozen=True)
class ResolvedModel:
    """Where weights come from (`source`: folder or hub id), the id personas record, and whether it's the demo."""

    source: str
    model_id: str
    is_demo: bool = False


def _hub_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return False
    hit = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(hit, str)


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or os.sep in name.rstrip(os.sep) and name.count("/") != 1


def resolve_model(model: str | None, default_hub_model: str = "") -> ResolvedModel:
    """Decide which base model to load (see module docstring), with a clear error when it can't be had."""
    from rolechat.llm.demo import DEMO_MODEL_ID, demo_model_path, is_demo_path

    if model:
        path = Path(model).expanduser()
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise LoadError(f"{path}: not a transformers model folder (config.json missing)")
            if is_demo_path(path):
                return ResolvedModel(str(path.resolve()), DEMO_MODEL_ID, True)
            return ResolvedModel(str(path.resolve()), str(path.resolve()))
        if _looks_like_path(model) or path.exists():
            raise LoadError(f"model folder not found: {path}")
        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "false", "False") and not _hub_cached(model):
            raise LoadError(
                f"model {model!r} is not in the local Hugging Face cache and downloads are off (HF_HUB_OFFLINE=1). "
                f"Download it first (`hf download {model}`), point llm.model at a local folder, "
                "or set HF_HUB_OFFLINE=0 to allow downloading."
            )
        return ResolvedModel(model, model)
    if default_hub_model and _hub_cached(default_hub_model):
        return ResolvedModel(default_hub_model, default_hub_model)
    return ResolvedModel(str(demo_model_path()), DEMO_MODEL_ID, True)


def pick_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise LoadError(f"llm.device = {device!r} but no CUDA GPU is available; use auto or cpu")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _pick_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def load_model_and_tokenizer(
    source: str,
    *,
    device: str = "auto",
    dtype: str = "auto",
    quantization: str = "none",
    trust_remote_code: bool = False,
) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer: CUDA -> bf16/fp16, CPU -> fp32; 4/8-bit only on CUDA."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # callers show their own progress
    device = pick_device(device)
    torch_dtype = _pick_dtype(dtype, device)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code}
    if quantization != "none":
        if not device.startswith("cuda"):
            raise LoadError(
                f"llm.quantization = {quantization!r} needs a CUDA GPU (bitsandbytes); this machine runs "
                f'on {device}: set llm.quantization = "none"'
            )
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = (
            BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch_dtype,
            )
            if quantization == "4bit"
            else BitsAndBytesConfig(load_in_8bit=True)
        )
        kwargs["device_map"] = {"": torch.device(device).index or 0}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        hint = (
            " This checkpoint needs trust_remote_code (llm.trust_remote_code = true) and, for ChatGLM2/3, "
            "transformers 4.x."
            if "trust_remote_code" in str(exc)
            else ""
        )
        raise LoadError(f"could not load model {source!r}: {exc}{hint}") from exc
    if quantization == "none":
        model.to(device)
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


_SHAPE_KEYS = (
    "model_type",
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
)


def fingerprint(model_config: Any) -> str:
    """A short hash of the architecture and shapes: adapters only fit a base with the same fingerprint."""
    cfg = model_config.to_dict() if hasattr(model_config, "to_dict") else dict(model_config)
    text = json.dumps({k: cfg.get(k) for k in _SHAPE_KEYS}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def same_base(a: str, b: str) -> bool:
    """Whether two model ids name the same base: equal, or the same last path component (hub id vs local copy)."""
    if not a or not b:
        return True
    norm = lambda s: s.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1].lower()
    return a == b or norm(a) == norm(b)
