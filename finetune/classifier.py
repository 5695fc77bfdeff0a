"""Text-classifier adapters: the manifest (`classifier.json`), loading, and batched prediction.

A classifier folder under `$ROLECHAT_HOME/classifiers/NAME` holds a peft LoRA adapter whose saved modules
include the classification head (`classifier` for BERT-family encoders, `score` for decoders), plus
`classifier.json` naming the base model and the labels. The CLI, the app and the API all classify through
`Classifier`:

    clf = Classifier.load("sentiment")                 # base model + adapter + head, in eval mode
    clf.predict(["这本书太好看了", "质量很差"])          # [Prediction(label='1', score=0.97, ...), ...]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rolechat import settings as rc
from rolechat.llm.manifest import Entry, Manifest, is_folder_name

__all__ = [
    "MANIFEST",
    "ClassifierError",
    "ClassifierManifest",
    "ClassifierEntry",
    "Classifier",
    "Prediction",
    "check_name",
    "classifier_path",
    "discover_classifiers",
    "encode_texts",
    "load_base_classifier",
]

log = logging.getLogger(__name__)

MANIFEST = "classifier.json"
HEADS = ("pre_classifier", "classifier", "score")  # DistilBERT's two layers, BERT/RoBERTa, decoders


class ClassifierError(ValueError):
    """A classifier folder, manifest or name is unusable; the message names the file or field."""


def check_name(name: str) -> str:
    if not is_folder_name(name):
        raise ClassifierError(f"invalid classifier name {name!r}: use letters, digits, '_' or '-' (max 64)")
    return name


def classifier_path(name: str) -> Path:
    """A classifier's folder: `name` itself when it is a folder with a manifest, else classifiers_dir()/name."""
    direct = Path(name).expanduser()
    if (direct / MANIFEST).is_file():
        return direct
    return rc.classifiers_dir() / check_name(name)


@dataclass
class ClassifierManifest(Manifest):
    """What a classifier is, saved as classifier.json beside its adapter (read and written by `llm.manifest`,
    as persona manifests are)."""

    FILE, ERROR, MISSING = MANIFEST, ClassifierError, "train it with rolechat train-classifier"
    REQUIRED = ("name", "labels")

    name: str
    labels: list[str]
    base_model: str = ""
    base_source: str = ""
    base_fingerprint: str = ""
    architecture: str = ""  # "encoder" or "decoder"
    heads: list[str] = field(default_factory=list)
    pooling: str = "head"  # "head": the model's own classification head; "mean": finetune/pooling.py
    text_prefix: str = ""  # put before every text, in training and in prediction (e5 reads "query: ")
    text_column: str = "text"
    label_column: str = "label"
    max_length: int = 256
    description: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    format_version: int = 1

    def __post_init__(self) -> None:
        check_name(self.name)
        if (
            not isinstance(self.labels, list)
            or len(self.labels) < 2
            or not all(isinstance(x, str) for x in self.labels)
        ):
            raise ClassifierError(f"{MANIFEST}: field 'labels' must list at least two label names")
        if len(set(self.labels)) != len(self.labels):
            raise ClassifierError(f"{MANIFEST}: field 'labels' has duplicates")

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}


@dataclass
class ClassifierEntry(Entry):
    """One classifier folder as found on disk: usable (`manifest` set) or broken (`error` set)."""

    manifest: ClassifierManifest | None = None


def discover_classifiers(root: str | Path | None = None) -> list[ClassifierEntry]:
    """Every classifier folder under `root` (default classifiers_dir()), broken ones marked, sorted by name."""
    root = Path(root) if root is not None else rc.classifiers_dir()
    entries = []
    if not root.is_dir():
        return entries
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            manifest = ClassifierManifest.load(folder)
        except ClassifierError as exc:
            entries.append(ClassifierEntry(folder.name, folder, error=str(exc)))
            continue
        weights = any((folder / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin"))
        error = None if weights else f"{folder}: adapter weights missing"
        entries.append(ClassifierEntry(manifest.name, folder, manifest, error))
    return entries


@dataclass
class Prediction:
    """One text's label, its probability, and every label's probability."""

    label: str
    score: float
    probabilities: dict[str, float]


def load_base_classifier(
    source: str,
    labels: Sequence[str],
    *,
    device: str = "cpu",
    trust_remote_code: bool = False,
    pooling: str = "head",
) -> tuple[Any, Any, str]:
    """(model with a fresh head of len(labels) outputs, tokenizer, "encoder"|"decoder") in fp32 on `device`.
    `pooling="mean"`: the encoder's mean token state feeds the head (`MeanPooledClassifier`)."""
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    from rolechat.llm.loader import LoadError

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise LoadError(f"could not load model {source!r}: {exc}") from exc
    if tokenizer.pad_token is None:  # decoders (Qwen, Llama) pick the last non-pad token: pad must be set
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    # Weights the checkpoint lacks (the head; a pooler an MLM checkpoint never had) are initialised at
    # random: under a fixed seed, so training and every later load start from the very same values.
    with rc.quiet_loading(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            if pooling == "mean":
                from rolechat.finetune.pooling import MeanPooledClassifier

                encoder = AutoModel.from_pretrained(source, dtype=torch.float32, trust_remote_code=trust_remote_code)
                model = MeanPooledClassifier(encoder, len(labels))
            else:
                model = AutoModelForSequenceClassification.from_pretrained(
                    source,
                    num_labels=len(labels),
                    id2label=dict(enumerate(labels)),
                    label2id={label: i for i, label in enumerate(labels)},
                    dtype=torch.float32,
                    trust_remote_code=trust_remote_code,
                )
        except (OSError, ValueError) as exc:
            raise LoadError(f"{source!r} cannot be loaded for sequence classification: {exc}") from exc
    model.config.pad_token_id = tokenizer.pad_token_id
    if tokenizer.padding_side != "right":  # the decoder head finds the last real token from the right
        tokenizer.padding_side = "right"
    model.to(device)
    # decoders' *ForSequenceClassification heads are `score` and read the last non-pad token (Qwen, Llama,
    # Mistral, GPT-2); encoders' are `classifier` over the first token / pooler (BERT, RoBERTa) or the mean
    return model, tokenizer, "decoder" if hasattr(model, "score") else "encoder"


def encode_texts(
    tokenizer: Any, texts: Sequence[str], max_length: int, architecture: str = "encoder"
) -> list[list[int]]:
    """Token ids of each text (with the model's own [CLS]/[SEP] if it adds them), cut to `max_length`.

    A decoder's head reads the hidden state of the last token, so each text ends with the end-of-sequence
    token (unless it doubles as padding): the head then always reads the same position, one that has
    attended to the whole text, instead of whatever character the text happens to end with.
    Texts are plain text: a '<|im_end|>' or '[SEP]' typed by a user is split like any other characters."""
    eos = tokenizer.eos_token_id
    append = architecture == "decoder" and eos is not None and eos != tokenizer.pad_token_id
    limit = max_length - 1 if append else max_length
    enc = tokenizer(list(texts), truncation=True, max_length=limit, split_special_tokens=True)
    return [ids + [eos] for ids in enc["input_ids"]] if append else enc["input_ids"]


class Classifier:
    """A loaded classifier adapter on its base model."""

    def __init__(self, manifest: ClassifierManifest, model: Any, tokenizer: Any, path: Path) -> None:
        self.manifest = manifest
        self.model = model
        self.tokenizer = tokenizer
        self.path = path
        self.labels = list(manifest.labels)

    @property
    def name(self) -> str:
        return self.manifest.name

    @classmethod
    def load(cls, name: str, *, device: str = "auto", trust_remote_code: bool = False) -> Classifier:
        """Load classifier `name` (a name under classifiers_dir() or a folder) with its base model."""
        from peft import PeftModel

        from rolechat.llm.loader import fingerprint, pick_device

        path = classifier_path(name)
        if not path.is_dir():
            known = ", ".join(e.name for e in discover_classifiers()) or "none yet"
            raise ClassifierError(f"classifier {name!r} not found in {path.parent} (available: {known})")
        manifest = ClassifierManifest.load(path)
        source = _base_source(manifest)
        model, tokenizer, _ = load_base_classifier(
            source,
            manifest.labels,
            device=pick_device(device),
            trust_remote_code=trust_remote_code,
            pooling=manifest.pooling,
        )
        if manifest.base_fingerprint and fingerprint(model.config) != manifest.base_fingerprint:
            raise ClassifierError(
                f"classifier {manifest.name!r} was trained on {manifest.base_model!r}; {source!r} has another "
                "architecture or size"
            )
        with rc.quiet_loading():
            model = PeftModel.from_pretrained(model, str(path))
        model.eval()
        return cls(manifest, model, tokenizer, path)

    def logits(self, texts: Sequence[str], batch_size: int = 32) -> Any:
        """Raw logits (len(texts) x len(labels), float32 on the CPU), in the order of `texts`."""
        import torch

        if not texts:
            return torch.zeros((0, len(self.labels)))
        prefix = self.manifest.text_prefix
        texts = [prefix + t for t in texts] if prefix else list(texts)
        ids = encode_texts(self.tokenizer, texts, self.manifest.max_length, self.manifest.architecture)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths together: little padding
        out = torch.empty((len(ids), len(self.labels)))
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                batch = self.tokenizer.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt")
                batch = {k: v.to(device) for k, v in batch.items()}
                out[chunk] = self.model(**batch).logits.float().cpu()
        return out

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> list[Prediction]:
        """Label and probabilities for each text, batched."""
        probs = self.logits(texts, batch_size).softmax(-1).tolist()
        out = []
        for row in probs:
            best = max(range(len(row)), key=row.__getitem__)
            out.append(Prediction(self.labels[best], row[best], dict(zip(self.labels, row))))
        return out


def _base_source(manifest: ClassifierManifest) -> str:
    """Where the classifier's base weights are now: the recorded folder, the demo model, or a cached hub id."""
    from rolechat import encoder
    from rolechat.llm.demo import DEMO_MODEL_ID, demo_model_path
    from rolechat.llm.loader import LoadError, resolve_model

    if manifest.base_source and Path(manifest.base_source).is_dir():  # a rebuilt demo model's folder too
        return manifest.base_source
    if manifest.base_model == encoder.NAME:  # its copy was in a cache since cleared, or the HF model came
        try:
            return str(encoder.model_folder())
        except ValueError as exc:
            raise ClassifierError(
                f"classifier {manifest.name!r}: its base model is not available here: {exc}"
            ) from None
    if manifest.base_model == DEMO_MODEL_ID:  # the shipped demo model, wherever this install put it
        return str(demo_model_path())
    try:
        return resolve_model(manifest.base_model).source
    except LoadError as exc:
        raise ClassifierError(f"classifier {manifest.name!r}: its base model is not available here: {exc}") from None
