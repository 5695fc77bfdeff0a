"""`POST /v1/classify`: text classification with the classifier adapters under $ROLECHAT_HOME/classifiers.

    POST /v1/classify {"model": "sentiment", "input": ["这本书太好看了", "质量很差"]}
    -> {"object": "list", "model": "sentiment", "labels": [...],
        "data": [{"object": "classification", "index": 0, "label": "正面", "score": 0.97,
                  "probabilities": {"正面": 0.97, "负面": 0.03}}, ...]}

Loaded classifiers are kept per app (one base model + adapter each) and reloaded when their manifest
changes. Errors leave in the API's OpenAI shape (rolechat.api.errors).
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from rolechat.api.errors import APIError
from rolechat.api.services import services

__all__ = ["ClassifyRequest", "router"]

MAX_INPUTS = 2048

router = APIRouter()


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field is refused by name, as in every other route

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


_CACHE_LOCK = threading.Lock()


def _cache(request: Request) -> _Cache:
    with _CACHE_LOCK:
        cache = getattr(request.app.state, "classifiers", None)
        if cache is None:
            runtime = services(request).runtime
            cache = _Cache(getattr(getattr(runtime, "cfg", None), "device", "auto"))
            request.app.state.classifiers = cache
        return cache


@router.post("/v1/classify")
def classify(req: ClassifyRequest, request: Request) -> dict[str, Any]:
    from rolechat.finetune.classifier import ClassifierError, discover_classifiers
    from rolechat.llm.loader import LoadError

    texts = [req.input] if isinstance(req.input, str) else list(req.input)
    if not texts:
        raise APIError(400, "give at least one text", param="input")
    if len(texts) > MAX_INPUTS:
        raise APIError(400, f"at most {MAX_INPUTS} texts per request, got {len(texts)}", param="input")
    for i, text in enumerate(texts):
        if not text.strip():
            raise APIError(400, f"input[{i}] is empty", param=f"input.{i}")
    entries = {e.name: e for e in discover_classifiers()}
    if req.model not in entries:  # a name, never a server path, and the answer names no folder
        known = ", ".join(name for name, e in entries.items() if e.ok) or "none"
        message = f"No classifier {req.model!r}; available classifiers: {known}."
        raise APIError(404, message, param="model", code="model_not_found")
    try:
        clf = _cache(request).get(req.model)
    except (ClassifierError, LoadError, OSError, RuntimeError, ValueError) as exc:  # unusable here
        raise APIError(409, f"classifier {req.model!r} could not be loaded: {exc}", param="model") from None
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
