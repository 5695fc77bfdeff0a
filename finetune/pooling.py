"""A classifier that reads the mean of an encoder's token states: how sentence encoders such as multilingual-e5
were trained to be read (their `1_Pooling` folder says so), where `AutoModelForSequenceClassification` would read
the first token through a pooler the encoder never trained (e5's checkpoint has none worth reading).

    model = MeanPooledClassifier(AutoModel.from_pretrained(folder), num_labels=2)
    model(input_ids=ids, attention_mask=mask, labels=y).loss

The head is `classifier` (dropout, then one linear layer), the name `rolechat.finetune` saves beside the LoRA
weights; the encoder stays whatever model it was given.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.modeling_outputs import SequenceClassifierOutput

__all__ = ["MeanPooledClassifier", "is_mean_pooled"]


def is_mean_pooled(folder: Any) -> bool:
    """True for a sentence-transformers folder whose pooling is the mean over tokens (e5, MiniLM, bge-m3 ...)."""
    import json
    from pathlib import Path

    try:
        config = json.loads((Path(folder) / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(config.get("pooling_mode_mean_tokens"))


class MeanPooledClassifier(torch.nn.Module):
    """An encoder, the mean of its last hidden states over the real tokens, dropout and a linear head."""

    def __init__(self, encoder: Any, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(encoder.config.hidden_size, num_labels)

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.encoder.get_input_embeddings()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
