"""Settings of the model runtime (config section `[llm]`, environment `ROLECHAT_LLM_<FIELD>`)."""

from __future__ import annotations

from dataclasses import dataclass

from rolechat.settings import setting

__all__ = ["LLMConfig", "GenerationParams"]

DEFAULT_HUB_MODEL = "Qwen/Qwen3-1.7B"


@dataclass
class GenerationParams:
    """How one reply is sampled. `temperature == 0` means greedy (deterministic)."""

    max_new_tokens: int = setting(512, "Most tokens one reply may have.")
    temperature: float = setting(0.7, "Sampling temperature; 0 = greedy.")
    top_p: float = setting(0.9, "Nucleus sampling mass.")
    top_k: int = setting(50, "Sample among the k likeliest tokens; 0 = off.")
    repetition_penalty: float = setting(1.05, "> 1 discourages repeats.")
    seed: int | None = setting(None, "Seed for reproducible sampling.")
    stop: list[str] = setting(factory=list, help="Extra stop strings.")

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class LLMConfig:
    """Which base model to load, how, and where personas come from."""

    model: str = setting(
        "",
        "Base model: a local folder or a hub id (must already be in the local HF cache). Empty: the default hub "
        "model if cached, else the built-in demo model.",
    )
    default_hub_model: str = setting(DEFAULT_HUB_MODEL, "Hub id used when `model` is empty and it is already cached.")
    device: str = setting("auto", "auto, cpu, cuda, cuda:N or mps.")
    dtype: str = setting("auto", "auto (CUDA: bf16 or fp16; CPU: fp32), float32, bfloat16, float16.")
    quantization: str = setting("none", "none, 4bit or 8bit (bitsandbytes; CUDA only).")
    trust_remote_code: bool = setting(
        False, "Run model code shipped with the checkpoint (legacy ChatGLM2/3; needs transformers 4.x)."
    )
    template: str = setting("auto", "Chat template: auto (the tokenizer's own), chatml, chatglm3, glm4.")
    enable_thinking: bool = setting(False, "Let Qwen3-style models think before answering.")
    too_small: bool = setting(
        False,
        "The model is too small to answer from knowledge-base passages (it states facts they do not hold): with "
        "rag.answer_mode = auto its knowledge-base answers are extracted from the passages instead (the built-in "
        "demo model always counts as too small).",
    )
    persona_dirs: list[str] = setting(
        factory=list, help="Extra folders holding persona adapters (besides $ROLECHAT_HOME/personas)."
    )
    on_base_mismatch: str = setting(
        "refuse", "An adapter trained on another base model: refuse (skip it) or warn (load it anyway, if shapes fit)."
    )
    context_length: int = setting(
        0, "Token budget for prompt + reply; 0 = the model's max_position_embeddings (capped at 32768)."
    )
    max_new_tokens: int = setting(
        0, "Default reply length limit; 0 = the model's own generation_config value (at most 2048), else 512."
    )
    temperature: float = setting(0.7, "Default sampling temperature (0 = greedy).")
    top_p: float = setting(0.9, "Default nucleus sampling mass.")
    top_k: int = setting(50, "Default top-k.")
    repetition_penalty: float = setting(1.05, "Default repetition penalty.")
    max_batch: int = setting(
        64,
        "In-process: replies generated together, in one forward pass per token (personas mixed); more wait "
        "for a free row. `rolechat serve` admits this many at once (server.max_concurrent = 0). 1 = one at a time. "
        "The batch's KV cache holds rows x the longest row's tokens: lower it for long chats on a large model.",
    )
    prefix_cache_mb: int = setting(
        256,
        "In-process: memory (on the model's device) for the KV caches of recent prompts; a prompt that starts "
        "like one of them is prefilled only from where they part, the same prompt again not at all. 0 = off.",
    )
    backend: str = setting(
        "local",
        "local (the model runs in this process) or openai (an OpenAI-compatible server such as vLLM runs it: "
        "base_url; `model` must still name the base model's local folder, whose tokenizer renders prompts).",
    )
    base_url: str = setting("", "With backend = openai: the server's API root, e.g. http://127.0.0.1:8001/v1.")
    api_key: str = setting(
        "", "With backend = openai: the server's API key (better from ROLECHAT_LLM_API_KEY than a file or flag)."
    )
    served_model: str = setting(
        "", "With backend = openai: the server's name for the base model; empty = the one model without a parent."
    )
    timeout: float = setting(300.0, "With backend = openai: seconds to wait for the server.")

    def __post_init__(self) -> None:
        if self.backend not in ("local", "openai"):
            raise ValueError(f"llm.backend must be local or openai, got {self.backend!r}")
        if self.backend == "openai" and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"llm.base_url must be an http(s) URL when llm.backend = openai, got {self.base_url!r}")
        if self.timeout <= 0:
            raise ValueError(f"llm.timeout must be > 0, got {self.timeout}")
        if self.quantization not in ("none", "4bit", "8bit"):
            raise ValueError(f"llm.quantization must be none, 4bit or 8bit, got {self.quantization!r}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"llm.dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if self.on_base_mismatch not in ("refuse", "warn"):
            raise ValueError(f"llm.on_base_mismatch must be refuse or warn, got {self.on_base_mismatch!r}")
        if not (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            raise ValueError(f"llm.device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        if self.max_batch < 1:
            raise ValueError(f"llm.max_batch must be >= 1, got {self.max_batch}")
        if self.prefix_cache_mb < 0:
            raise ValueError(f"llm.prefix_cache_mb must be >= 0 (0 = off), got {self.prefix_cache_mb}")
        if self.context_length < 0:
            raise ValueError(f"llm.context_length must be >= 0, got {self.context_length}")
        if isinstance(self.persona_dirs, str):
            self.persona_dirs = [p for p in self.persona_dirs.split(",") if p]
        if self.max_new_tokens < 0:
            raise ValueError(f"llm.max_new_tokens must be >= 0 (0 = the model's default), got {self.max_new_tokens}")
        GenerationParams(**{**self.generation_defaults(), "max_new_tokens": self.max_new_tokens or 1})

    def generation_defaults(self) -> dict:
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "repetition_penalty": self.repetition_penalty,
        }
