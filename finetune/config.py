"""Settings of persona training (config section `[train]`, environment `ROLECHAT_TRAIN_<FIELD>`).

The base model, device, chat template and trust_remote_code come from the `[llm]` section, so a persona
is trained on exactly the model and template the runtime serves it with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar, cast

from rolechat.settings import setting

__all__ = ["LoraRun", "TrainConfig"]

SCHEDULES = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
REPORTERS = ("none", "tensorboard", "swanlab")


class LoraRun:
    """What persona and classifier training settings share (both dataclasses extend it): the checks of the
    optimizer, schedule, batch, LoRA and held-out split, `target` and `to_dict`. A subclass names its config
    `SECTION` (for errors such as "train.rank must be >= 1") and its `SCHEDULES`."""

    SECTION: ClassVar[str]
    SCHEDULES: ClassVar[tuple[str, ...]]

    def need(self, ok: bool, name: str, message: str) -> None:
        """Raise the section's precise error about field `name` unless `ok`."""
        if not ok:
            raise ValueError(f"{self.SECTION}.{name} {message}, got {getattr(self, name)!r}")

    def check_run(self) -> None:
        """The shared checks; turns a comma-separated target_modules string into a list."""
        cfg, need = cast(Any, self), self.need
        if isinstance(cfg.target_modules, str):
            cfg.target_modules = [m.strip() for m in cfg.target_modules.split(",") if m.strip()]
        need(cfg.epochs > 0, "epochs", "must be > 0")
        need(cfg.max_steps >= 0, "max_steps", "must be >= 0")
        need(cfg.learning_rate > 0, "learning_rate", "must be > 0")
        need(cfg.schedule in self.SCHEDULES, "schedule", f"must be one of {', '.join(self.SCHEDULES)}")
        need(0 <= cfg.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        need(cfg.weight_decay >= 0, "weight_decay", "must be >= 0")
        need(cfg.batch_size >= 1, "batch_size", "must be >= 1")
        need(cfg.rank >= 1, "rank", "must be >= 1")
        need(cfg.alpha >= 1, "alpha", "must be >= 1")
        need(0 <= cfg.dropout < 1, "dropout", "must be in [0, 1)")
        need(
            bool(cfg.target_modules) and all(isinstance(m, str) and m for m in cfg.target_modules),
            "target_modules",
            "must name at least one module (or all-linear)",
        )
        need(0 <= cfg.eval_ratio < 0.5, "eval_ratio", "must be in [0, 0.5)")
        need(cfg.save_steps >= 1, "save_steps", "must be >= 1")
        need(cfg.save_total_limit >= 1, "save_total_limit", "must be >= 1")
        need(cfg.logging_steps >= 1, "logging_steps", "must be >= 1")

    @property
    def target(self) -> str | list[str]:
        """What peft's LoraConfig.target_modules expects."""
        modules = cast(Any, self).target_modules
        return "all-linear" if modules == ["all-linear"] else list(modules)

    def to_dict(self) -> dict[str, Any]:
        return asdict(cast(Any, self))


@dataclass
class TrainConfig(LoraRun):
    """How a persona adapter is trained. Every field has a CLI flag of the same name (`--eval-ratio` ...)."""

    SECTION: ClassVar[str] = "train"
    SCHEDULES: ClassVar[tuple[str, ...]] = SCHEDULES

    epochs: float = setting(3.0, "Passes over the training data (ignored when max_steps > 0).")
    max_steps: int = setting(0, "Stop after this many optimizer steps; 0 = use epochs.")
    learning_rate: float = setting(2e-4, "Peak learning rate (AdamW).")
    schedule: str = setting("cosine", f"Learning-rate schedule: {', '.join(SCHEDULES)}.")
    warmup_ratio: float = setting(0.03, "Fraction of the steps spent warming up.")
    weight_decay: float = setting(0.0, "AdamW weight decay.")
    batch_size: int = setting(16, "Examples per device per step (dynamic padding keeps it cheap).")
    grad_accum: int = setting(1, "Gradient accumulation steps.")
    max_length: int = setting(
        1024,
        "Most tokens per example; longer ones lose their oldest turns, then the head of the prompt, never the reply.",
    )
    rank: int = setting(8, "LoRA rank r.")
    alpha: int = setting(16, "LoRA alpha (scale = alpha / rank).")
    dropout: float = setting(0.05, "LoRA dropout.")
    target_modules: list[str] = setting(
        factory=lambda: ["all-linear"],
        help="Modules that get LoRA: all-linear, or names such as q_proj,v_proj (ChatGLM: query_key_value).",
    )
    eval_ratio: float = setting(0.05, "Held-out fraction for eval loss / perplexity; 0 = none.")
    eval_steps: int = setting(0, "Evaluate every N steps during training; 0 = only before/after.")
    early_stopping: int = setting(
        0, "Stop when eval loss has not improved for N evaluations (needs eval_steps); 0 = off."
    )
    save_steps: int = setting(200, "Write a resumable checkpoint every N steps.")
    save_total_limit: int = setting(2, "Checkpoints kept per run.")
    seed: int = setting(42, "Seed for the split, shuffling and LoRA init.")
    last_turn_only: bool = setting(False, "Supervise only the last assistant turn.")
    packing: bool = setting(
        True,
        "Pack random batches into rows of <= max_length tokens without cross-example attention "
        "(off: length-grouped padding; always off for trust_remote_code models).",
    )
    sparse_logits: bool = setting(
        True, "Compute the vocabulary projection only at supervised positions (same loss, less compute and memory)."
    )
    speedups: bool = setting(
        True,
        "On the CPU: attention per packed example, LoRA dropout masks from 16-bit draws, the LoRA update fused into "
        "its layer's output (the same maths, faster; off: peft and sdpa as they are).",
    )
    cpu_processes: int = setting(
        0,
        "On a CPU: processes that share each batch (one per core, DDP; the batch and the steps stay the same); "
        "0 = one per core torch may use (OMP_NUM_THREADS), at most 4, a divisor of batch_size.",
    )
    group_by_length: bool = setting(True, "Batch examples of similar length (less padding).")
    gradient_checkpointing: bool = setting(False, "Trade compute for memory (large models).")
    qlora: bool = setting(False, "4-bit NF4 base + LoRA (CUDA only).")
    precision: str = setting(
        "auto",
        "auto (GPU: bf16 or fp16; CPU: bf16 with AMX in one process, else fp32), fp32, bf16, fp16. bf16 on a CPU "
        "(AMX or AVX512-BF16): the frozen base layers in bf16, LoRA weights, optimizer and loss in fp32.",
    )
    strict: bool = setting(False, "Fail on the first bad record instead of skipping it.")
    dedupe: bool = setting(True, "Drop exact duplicate conversations.")
    report_to: str = setting("none", f"Metrics logger: {', '.join(REPORTERS)}.")
    logging_steps: int = setting(10, "Log loss and tokens/s every N steps.")
    num_workers: int = setting(0, "DataLoader worker processes.")
    memory: bool = setting(
        True,
        "Write the character's memory (memory.jsonl in the persona folder) from the training conversations: "
        "each user->assistant exchange one entry, retrieved at chat time; false = keep the folder's memory as "
        "it was.",
    )

    def __post_init__(self) -> None:
        need = self.need
        self.check_run()
        need(self.grad_accum >= 1, "grad_accum", "must be >= 1")
        need(self.max_length >= 16, "max_length", "must be >= 16")
        need(self.eval_steps >= 0, "eval_steps", "must be >= 0")
        need(self.early_stopping >= 0, "early_stopping", "must be >= 0")
        need(
            not self.early_stopping or (self.eval_steps and self.eval_ratio),
            "early_stopping",
            "needs eval_steps > 0 and eval_ratio > 0",
        )
        need(self.precision in ("auto", "fp32", "bf16", "fp16"), "precision", "must be auto, fp32, bf16 or fp16")
        need(self.report_to in REPORTERS, "report_to", f"must be one of {', '.join(REPORTERS)}")
        need(self.num_workers >= 0, "num_workers", "must be >= 0")
        need(self.cpu_processes >= 0, "cpu_processes", "must be >= 0 (0 = auto)")
        need(
            not self.cpu_processes or self.batch_size % self.cpu_processes == 0,
            "cpu_processes",
            f"must divide batch_size ({self.batch_size}): each process takes an equal share of every batch",
        )
