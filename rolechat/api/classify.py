"""`POST /v1/classify`: text classification with the classifier adapters under $ROLECHAT_HOME/classifiers.

    POST /v1/classify {"model": "sentiment", "input": ["这本书太好看了", "质量很差"]}
    -> {"object": "list", "model": "sentiment", "labels": [...],
        "data": [{"object": "classification", "index": 0, "label": "正面", "score": 0.97,
                  "probabilities": {"正面": 0.97, "负面": 0.03}}, ...]}

Loaded classifiers are kept (one base model + adapter each) and reloaded when their folder changes.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

__all__ = ["ClassifyRequest", "classify_router"]

MAX_INPUTS = 2048


class ClassifyRequest(BaseModel):
    model: str = Field(min_length=1, description="Classifier name (rolechat classify --list).")
    input: str | list[str] = Field(description="One text or a list of texts.")
    batch_size: int = Field(default=32, ge=1, le=512)


class _Cache:
    """Loaded classifiers by name, each with the modification time of its manifest."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.lock = threading.Lock()
        self.loaded: dict[str, tuple[float, Any]] = {}

    def get(self, name: str) -> Any:
        from rolechat.finetune.classifier import MANIFEST, Classifier, check_name, classifier_path

        path = classifier_path(check_name(name))  # a name, never a server path
        stamp = (path / MANIFEST).stat().st_mtime if (path / MANIFEST).is_file() else 0.0
        with self.lock:
            hit = self.loaded.get(name)
            if hit is None or hit[0] != stamp:
                self.loaded[name] = (stamp, Classifier.load(name, device=self.device))
            return self.loaded[name][1]


def classify_router(device: str = "auto") -> APIRouter:
    """The router; create_app includes it (with the API-key dependency)."""
    router = APIRouter()
    cache = _Cache(device)

    @router.post("/v1/classify")
    def classify(req: ClassifyRequest) -> dict[str, Any]:
        from rolechat.finetune.classifier import ClassifierError, discover_classifiers
        from rolechat.llm.loader import LoadError

        texts = [req.input] if isinstance(req.input, str) else list(req.input)
        if not texts:
            raise HTTPException(400, "input: give at least one text")
        if len(texts) > MAX_INPUTS:
            raise HTTPException(400, f"input: at most {MAX_INPUTS} texts per request, got {len(texts)}")
        for i, text in enumerate(texts):
            if not text.strip():
                raise HTTPException(400, f"input[{i}]: empty text")
        try:
            clf = cache.get(req.model)
        except ClassifierError as exc:
            known = [e.name for e in discover_classifiers() if e.ok]
            raise HTTPException(404, f"{exc} (available classifiers: {', '.join(known) or 'none'})") from None
        except (LoadError, OSError, RuntimeError, ValueError) as exc:  # the base model or adapter is unusable here
            raise HTTPException(409, f"classifier {req.model!r} could not be loaded: {exc}") from None
        preds = clf.predict(texts, batch_size=req.batch_size)
        return {
            "object": "list",
            "model": clf.name,
            "labels": clf.labels,
            "data": [
                {
                    "object": "classification",
                    "index": i,
                    "label": p.label,
                    "score": p.score,
                    "probabilities": p.probabilities,
                }
                for i, p in enumerate(preds)
            ],
        }

    return router
