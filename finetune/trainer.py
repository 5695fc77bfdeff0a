"""A persona training run: data -> encoded examples -> LoRA training (HF Trainer) -> adapter folder.

`prepare` does everything up to the model (data validation, tokenization, split) and is all that
`rolechat train --dry-run` needs. `train` runs the whole thing. It uses `transformers.Trainer`, so the
same code runs on one CPU, one GPU, or several GPUs under `accelerate launch` / `torchrun` (DDP): only
the main process writes files. The adapter is written into a staging folder and renamed into place at
the end, so a crash never leaves a half persona; checkpoints in `runs_dir()/<persona>/` let `--resume`
continue after a kill.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rolechat import settings as rc
from rolechat.finetune.batching import (
    ExampleDataset,
    LengthGroupedSampler,
    PackCollator,
    PadCollator,
    pack_rows,
    padding_fraction,
)
from rolechat.finetune.config import TrainConfig
from rolechat.finetune.data import Conversation, DataError, Dataset, load_dataset
from rolechat.finetune.encode import EncodeStats, Example, encode_conversations
from rolechat.finetune.model import TrainError, check_device, evaluate_loss, load_trainable, perplexity, precision
from rolechat.finetune.progress import ProgressLog, plot_loss, progress_callback, read_progress
from rolechat.llm.memoryfile import (
    MEMORY_FILE,
    TRAIN_SOURCE,
    MemoryEntry,
    MemoryFileError,
    read_memory,
    write_memory,
)
from rolechat.llm.personas import AVATAR, MANIFEST, PersonaError, PersonaManifest, check_name
from rolechat.llm.templates import ChatFormat

__all__ = ["Prepared", "TrainResult", "held_out", "prepare", "train", "run_dir", "progress_path"]

log = logging.getLogger(__name__)

RUN_FILE = "run.json"


def run_dir(persona: str) -> Path:
    """Checkpoints, progress file and run record of one persona's training."""
    return rc.runs_dir() / persona


def progress_path(persona: str) -> Path:
    """Where a run's JSON-lines progress goes (see finetune.progress for the format)."""
    return run_dir(persona) / "progress.jsonl"


@dataclass
class Prepared:
    """Validated, rendered, tokenized and split data for one persona, plus what it took to get there."""

    data: Dataset
    system: str
    source: str
    model_id: str
    fmt: ChatFormat
    tokenizer: Any
    train: list[Example]
    eval: list[Example]
    stats: EncodeStats
    other_systems: list[Conversation] = field(default_factory=list)

    @property
    def thinking(self) -> str:
        """How replies meet the template's think block: "none", or "closed empty" for thinking-only templates."""
        return "closed empty" if self.fmt.thinking_only else "none"

    def summary(self) -> dict[str, Any]:
        return {
            **self.data.summary(),
            **self.stats.summary(),
            "train_examples": len(self.train),
            "eval_examples": len(self.eval),
            "eval_records": sorted({e.record for e in self.eval}),
            "think_block": self.thinking,
            "system_mismatch": len(self.other_systems),
            "system_mismatch_first": [_describe_system(c) for c in self.other_systems[:3]],
        }


def _describe_system(conv: Conversation) -> str:
    own = conv.system if len(conv.system) <= 60 else conv.system[:59] + "…"
    return f"record {conv.record} (line {conv.line}): system {own!r}"


@dataclass
class TrainResult:
    """A finished run: where the adapter went and what it measured."""

    persona: str
    output: Path
    manifest: PersonaManifest
    metrics: dict[str, Any] = field(default_factory=dict)


def prepare(data: str | Path | Dataset, cfg: TrainConfig, llm_cfg: Any, *, system: str | None = None) -> Prepared:
    """Validate the data (before any heavy import), then render and tokenize it with the base model's template."""
    dataset = data if isinstance(data, Dataset) else load_dataset(data, strict=cfg.strict, dedupe=cfg.dedupe)
    system = dataset.dataset_system if system is None else system
    other = dataset.other_systems(system)
    if other and cfg.strict:
        first = other[0]
        raise DataError(
            f"{dataset.path}:{first.line}: record {first.record}: its system prompt {first.system!r} differs from "
            f"the persona's {system!r}; it would be trained under the persona's ({len(other)} such record(s); "
            "--strict refuses them: remove their system field, or train them as a persona of their own)"
        )
    from transformers import AutoTokenizer

    from rolechat.llm.loader import resolve_model
    from rolechat.llm.templates import TemplateError, resolve_format

    resolved = resolve_model(llm_cfg.model, llm_cfg.default_hub_model)
    tokenizer = AutoTokenizer.from_pretrained(resolved.source, trust_remote_code=llm_cfg.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        fmt = resolve_format(tokenizer, llm_cfg.template)
    except TemplateError as exc:
        raise TrainError(f"{resolved.model_id}: {exc}") from None
    convs = dataset.conversations
    order = list(range(len(convs)))
    held = held_out(len(convs), cfg.eval_ratio, cfg.seed)
    examples, stats = encode_conversations(
        tokenizer,
        fmt,
        [convs[i] for i in sorted(set(order) - held)] + [convs[i] for i in sorted(held)],
        system,
        max_length=cfg.max_length,
        last_turn_only=cfg.last_turn_only,
    )
    held_records = {convs[i].record for i in held}
    train = [e for e in examples if e.record not in held_records]
    evals = [e for e in examples if e.record in held_records]
    if not train:
        raise TrainError(
            f"{data}: no example left to train on ({stats.skipped_too_long} longer than "
            f"--max-length {cfg.max_length}, {stats.template_errors} not renderable)"
        )
    return Prepared(dataset, system, resolved.source, resolved.model_id, fmt, tokenizer, train, evals, stats, other)


def held_out(n: int, eval_ratio: float, seed: int) -> set[int]:
    """Indices (into the usable conversations) of the held-out split: a seeded shuffle's first share.

    `rolechat eval-persona` calls it again with the seed and ratio saved in the persona's manifest to
    find the same prompts the adapter never trained on."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_eval = max(round(n * eval_ratio), 1) if eval_ratio and n >= 10 else 0
    return set(order[:n_eval])


def expected_padding(lengths: Sequence[int], cfg: TrainConfig, world: int = 1) -> float:
    """Padding fraction the training batches will have (packing: the fill of its bounded rows)."""
    import torch

    bs = cfg.batch_size
    if cfg.group_by_length and not cfg.packing:
        order = list(LengthGroupedSampler(lengths, bs * world, seed=cfg.seed))
    else:
        order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    batches = [order[i : i + bs] for i in range(0, len(order), bs)]
    if not cfg.packing:
        return padding_fraction(lengths, batches)
    rows: list[int] = []  # packing: each batch's rows (their lengths), padded to its longest row
    row_batches: list[list[int]] = []
    for batch in batches:
        packed = pack_rows([lengths[i] for i in batch], cfg.max_length)
        row_batches.append(list(range(len(rows), len(rows) + len(packed))))
        rows += [sum(lengths[batch[i]] for i in row) for row in packed]
    return padding_fraction(rows, row_batches)


def start_over(folder: Path, what: str, overwrite: bool) -> None:
    """Before a fresh run: refuse while an unfinished run of `what` left checkpoints, unless overwrite removes them."""
    if not any(folder.glob("checkpoint-*")):
        return
    if not overwrite:
        raise TrainError(
            f"an unfinished run of {what} has checkpoints in {folder}; pass --resume to continue it or "
            "--overwrite to start over"
        )
    for old in folder.glob("checkpoint-*"):
        shutil.rmtree(old, ignore_errors=True)


def _data_hash(path: str | Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]


def _trainer_class():
    from transformers import Trainer

    class CountingTrainer(Trainer):
        """Counts real (non-padding) and total tokens of every training batch, for tokens/s and padding."""

        real_tokens = 0
        seen_tokens = 0
        tokens_per_step = 0.0  # set for length-grouped batches: see get_batch_samples

        def get_batch_samples(self, epoch_iterator, num_batches, device):
            """With length-grouped batches, divide each step's summed token loss by the epoch's average
            supervised tokens per step, not by the step's own count. Otherwise a batch of eight short replies
            weighs as much as a batch of eight long ones, and short replies' tokens count several times more
            than in random batches: the held-out (token-weighted) loss comes out worse. With a constant
            divisor every token counts the same in every batch, as in random batches."""
            samples, counted = super().get_batch_samples(epoch_iterator, num_batches, device)
            if counted is None or not self.tokens_per_step:
                return samples, counted
            import torch

            if torch.is_tensor(counted):
                return samples, torch.full_like(counted, self.tokens_per_step, dtype=torch.float32)
            return samples, self.tokens_per_step

        def _get_train_sampler(self, train_dataset=None):
            if self.args.train_sampling_strategy != "group_by_length":
                return super()._get_train_sampler(train_dataset)
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            return LengthGroupedSampler(
                dataset.lengths, self.args.train_batch_size * self.args.world_size, seed=self.args.seed
            )

        def training_step(self, model, inputs, num_items_in_batch=None):
            real = inputs.pop("num_real_tokens", None)  # packed rows say it; padded batches have a mask
            ids = inputs["input_ids"]
            mask = inputs.get("attention_mask")
            self.seen_tokens += ids.numel()
            self.real_tokens += int(real if real is not None else mask.sum() if mask is not None else ids.numel())
            return super().training_step(model, inputs, num_items_in_batch)

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            inputs.pop("num_real_tokens", None)
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    return CountingTrainer


def effective(cfg: TrainConfig, llm_cfg: Any) -> TrainConfig:
    """The settings a run really uses: packing needs transformers' own model code (it builds the
    block-diagonal mask from position ids); remote-code models (ChatGLM3) train with padded batches."""
    if cfg.packing and getattr(llm_cfg, "trust_remote_code", False):
        log.warning(
            "packing is off for trust_remote_code models (their attention would cross examples): "
            "length-grouped padded batches instead"
        )
        return replace(cfg, packing=False)
    return cfg


def _steps_per_epoch(cfg: TrainConfig, n_train: int, world: int) -> int:
    return math.ceil(math.ceil(n_train / (cfg.batch_size * world)) / cfg.grad_accum)


def supervised_tokens(rows: Sequence[dict[str, list[int]]]) -> int:
    """Tokens that carry loss (a supervised next token), as the Trainer counts them: labels[1:] != -100."""
    return sum(sum(1 for label in r["labels"][1:] if label != -100) for r in rows)


def _training_args(cfg: TrainConfig, out: Path, device: str, prec: str, n_train: int, has_eval: bool, world: int):
    from transformers import TrainingArguments

    steps_per_epoch = _steps_per_epoch(cfg, n_train, world)
    total = cfg.max_steps or math.ceil(steps_per_epoch * cfg.epochs)
    evaluating = bool(cfg.eval_steps and has_eval)
    save_steps = cfg.eval_steps if cfg.early_stopping else cfg.save_steps
    return TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.schedule,
        warmup_steps=math.ceil(total * cfg.warmup_ratio),
        weight_decay=cfg.weight_decay,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="steps" if evaluating else "no",
        eval_steps=cfg.eval_steps if evaluating else None,
        load_best_model_at_end=bool(cfg.early_stopping),
        metric_for_best_model="eval_loss" if cfg.early_stopping else None,
        greater_is_better=False,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=prec == "bf16",
        fp16=prec == "fp16",
        use_cpu=device == "cpu",
        report_to=[] if cfg.report_to == "none" else [cfg.report_to],
        disable_tqdm=True,
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=cfg.num_workers,
        dataloader_pin_memory=device != "cpu",
        train_sampling_strategy="group_by_length" if cfg.group_by_length and not cfg.packing else "random",
        ddp_find_unused_parameters=False,
        **(
            {"activation_checkpointing": True, "activation_checkpointing_kwargs": {"use_reentrant": False}}
            if cfg.gradient_checkpointing
            else {}
        ),
    )


def _check_reporter(name: str) -> None:
    import importlib.util

    module = {"tensorboard": "tensorboard", "swanlab": "swanlab"}.get(name)
    if module and importlib.util.find_spec(module) is None:
        raise TrainError(f"--report-to {name}: the {module} package is not installed (pip install {module})")


def _place(staging: Path, final: Path, overwrite: bool) -> None:
    """Move the finished adapter folder into place; an existing persona is replaced only with overwrite."""
    if final.exists():
        if not overwrite:
            raise TrainError(f"{final} already exists; pass --overwrite to replace it")
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        shutil.move(str(staging), str(final))
        shutil.rmtree(old, ignore_errors=True)
    else:
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(final))


def train(
    data: str | Path | None,
    persona: str,
    cfg: TrainConfig | None = None,
    llm_cfg: Any = None,
    *,
    system: str | None = None,
    display_name: str = "",
    description: str = "",
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Sequence[Any] = (),
    show_progress: bool = True,
    card: dict[str, Any] | None = None,
) -> TrainResult:
    """Train persona `persona` on `data` and write its adapter folder (personas_dir()/<persona> or `out`).

    With `resume=True` the run continues from its last checkpoint with the data and settings it was
    started with (`data`, `cfg`, `system` may then be None). Failures are written to the progress file
    before they propagate. `card` (a character card dict) goes into the manifest; training into a folder
    that already holds a character keeps its card, avatar, system prompt and names unless given new ones,
    and a prompt-only character (a card without an adapter) needs no --overwrite to gain an adapter.
    """
    check_name(persona)
    main = os.environ.get("RANK", "0") == "0"  # torchrun / accelerate launch set RANK; one process otherwise
    folder = run_dir(persona)
    record_path = folder / RUN_FILE
    progress = ProgressLog(folder / "progress.jsonl", enabled=main, fresh=not resume)
    try:
        if resume:
            last, run = _resume_point(folder, record_path)
            cfg, data, system = TrainConfig(**run["config"]), run["data"], run["system"]
            display_name, description = run.get("display_name", ""), run.get("description", "")
            card = run.get("card") or None
            out = run.get("out") or out
            llm_cfg = _llm_config(llm_cfg, run["llm"])
            if _data_hash(data) != run["data_hash"]:
                raise TrainError(f"{data} changed since the run started; start over with --overwrite")
        else:
            last, run = None, None
            cfg = cfg or TrainConfig()
            if data is None:
                raise TrainError("--data is required (except with --resume)")
            llm_cfg = _llm_config(llm_cfg, {})
            data = load_dataset(data, strict=cfg.strict, dedupe=cfg.dedupe)  # fail on bad data before torch loads
        final = Path(out).expanduser() if out else rc.personas_dir() / persona
        previous = _character_manifest(final)
        if previous is not None and not resume:
            card = card if card is not None else previous.card
            system = system if system is not None else previous.system_prompt
            display_name = display_name or previous.display_name
            description = description or previous.description
        prompt_only = previous is not None and not (final / "adapter_config.json").exists()
        if not resume and final.exists() and not overwrite and not prompt_only:
            raise TrainError(f"persona folder {final} already exists; pass --overwrite to replace it")
        if not resume and main:
            start_over(folder, repr(persona), overwrite)
        _check_reporter(cfg.report_to)
        cfg = effective(cfg, llm_cfg)
        device = check_device(cfg, llm_cfg.device)
        from accelerate import PartialState

        state = PartialState(cpu=device == "cpu")  # on CPU, DDP (gloo) only starts when asked for
        prepared = prepare(data, cfg, llm_cfg, system=system)
        result = _run(
            prepared,
            persona,
            cfg,
            llm_cfg,
            device=device,
            state=state,
            progress=progress,
            last=last,
            run=run,
            final=final,
            data=data,
            display_name=display_name,
            description=description,
            overwrite=overwrite or resume or prompt_only,
            callbacks=callbacks,
            show_progress=show_progress,
            card=card,
        )
        return result
    except BaseException as exc:
        message = str(exc) or type(exc).__name__
        if isinstance(exc, KeyboardInterrupt):
            message = "interrupted (resume with --resume)"
        progress.write("error", status="failed", step=progress.step, error=message)
        raise


def write_training_memory(staging: Path, final: Path, dataset: Dataset | None) -> int:
    """The new folder's memory.jsonl (format: `rolechat.llm.memoryfile`): entries of the old folder that
    training did not write are kept, then, with a `dataset`, each of its user->assistant exchanges. Without a
    dataset (train.memory = false) the old file is kept as it was. Returns the number of entries written."""
    old = final / MEMORY_FILE
    if dataset is None:
        if old.is_file():
            shutil.copy2(old, staging / MEMORY_FILE)
        return 0
    try:
        kept = [e for e in read_memory(old) if not e.source.startswith(TRAIN_SOURCE)] if old.is_file() else []
    except MemoryFileError as exc:
        log.warning("%s; its entries are not carried over", exc)
        kept = []
    name = Path(dataset.path).name
    learned = [
        MemoryEntry(
            reply=reply["content"].strip(), query=said["content"].strip(), source=f"{TRAIN_SOURCE}{name}:{c.line}"
        )
        for c in dataset.conversations
        for said, reply in zip(c.messages, c.messages[1:])
        if said["role"] == "user" and reply["role"] == "assistant" and reply["content"].strip()
    ]
    entries = kept + learned
    if entries:
        write_memory(staging / MEMORY_FILE, entries)
    return len(learned)


def _character_manifest(final: Path) -> PersonaManifest | None:
    """The manifest of a character (a persona with a card) already in `final`, else None."""
    if not (final / MANIFEST).is_file():
        return None
    try:
        manifest = PersonaManifest.load(final)
    except PersonaError:
        return None
    return manifest if manifest.card else None


def _sum_over_ranks(state: Any, values: list[int]) -> list[int]:
    if state.num_processes == 1:
        return values
    import torch
    from accelerate.utils import reduce

    return [int(v) for v in reduce(torch.tensor(values, device=state.device), reduction="sum").tolist()]


def _llm_config(llm_cfg: Any, saved: dict[str, Any]) -> Any:
    from rolechat.llm.config import LLMConfig

    if llm_cfg is None:
        llm_cfg = LLMConfig()
    for key, value in saved.items():
        setattr(llm_cfg, key, value)
    return llm_cfg


def _resume_point(folder: Path, record_path: Path) -> tuple[str, dict[str, Any]]:
    from transformers.trainer_utils import get_last_checkpoint

    if not record_path.is_file():
        raise TrainError(f"nothing to resume: {record_path} not found (start the run without --resume)")
    last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    if last is None:
        raise TrainError(
            f"nothing to resume: no checkpoint in {folder} yet (they are written every --save-steps steps)"
        )
    return last, json.loads(record_path.read_text(encoding="utf-8"))


def _run(
    prepared: Prepared,
    persona: str,
    cfg: TrainConfig,
    llm_cfg: Any,
    *,
    device: str,
    state: Any,
    progress: ProgressLog,
    last: str | None,
    run: dict[str, Any] | None,
    final: Path,
    data: str | Path,
    display_name: str,
    description: str,
    overwrite: bool,
    callbacks: Sequence[Any],
    show_progress: bool,
    card: dict[str, Any] | None = None,
) -> TrainResult:
    from transformers import EarlyStoppingCallback
    from transformers.trainer_callback import PrinterCallback

    main, world = state.is_main_process, state.num_processes
    folder = run_dir(persona)
    model, tokenizer = load_trainable(
        prepared.source,
        cfg,
        device=device,
        trust_remote_code=llm_cfg.trust_remote_code,
        local_rank=state.local_process_index,
    )
    from rolechat.llm.loader import fingerprint

    train_rows, eval_rows = ExampleDataset(prepared.train), ExampleDataset(prepared.eval)
    sparse = cfg.sparse_logits and "logits_to_keep" in inspect.signature(model.get_base_model().forward).parameters
    collator = (
        PackCollator(sparse, max_row=cfg.max_length, pad_id=tokenizer.pad_token_id or 0)
        if cfg.packing
        else PadCollator(tokenizer.pad_token_id, sparse_logits=sparse)
    )
    eval_collator = PadCollator(tokenizer.pad_token_id)
    if run is None:
        before = evaluate_loss(model, eval_rows.rows, eval_collator, cfg.batch_size)
        path = prepared.data.path
        run = {
            "persona": persona,
            "data": str(Path(path).resolve()),
            "data_hash": _data_hash(path),
            "system": prepared.system,
            "display_name": display_name,
            "description": description,
            "card": card or {},
            "out": str(final),
            "config": cfg.to_dict(),
            "eval_loss_before": before,
            "llm": {
                "model": prepared.source,
                "template": llm_cfg.template,
                "device": llm_cfg.device,
                "trust_remote_code": llm_cfg.trust_remote_code,
            },
        }
        if main:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / RUN_FILE).write_text(json.dumps(run, ensure_ascii=False, indent=2), encoding="utf-8")
    before = run["eval_loss_before"]
    prec = precision(cfg, device)
    args = _training_args(cfg, folder, device, prec, len(train_rows), bool(eval_rows.rows), world)
    pad_expected = expected_padding(train_rows.lengths, cfg, world)
    progress.write(
        "start",
        persona=persona,
        max_steps=None,
        resumed_from=last,
        device=device,
        precision=prec,
        examples={"train": len(train_rows), "eval": len(eval_rows)},
        padding_expected=pad_expected,
        data=prepared.summary(),
    )
    if before is not None:
        progress.write("eval", phase="before", step=0, eval_loss=before, perplexity=perplexity(before))
    bar = progress_callback(progress, show_progress and main, world=world)
    extra = [bar, *callbacks]
    if cfg.early_stopping:
        extra.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping))
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=train_rows,
        eval_dataset=eval_rows if eval_rows.rows else None,
        data_collator=collator,
        callbacks=extra,
    )
    if args.train_sampling_strategy == "group_by_length":
        trainer.tokens_per_step = supervised_tokens(train_rows.rows) / _steps_per_epoch(cfg, len(train_rows), world)
    bar.tokens = lambda: (trainer.real_tokens, trainer.seen_tokens)
    trainer.remove_callback(PrinterCallback)  # our bar and progress file replace the raw log dicts
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=last)
    runtime = time.perf_counter() - started
    # Under FSDP / DeepSpeed ZeRO-3 the parameters are sharded: evaluate through the wrapper on every rank.
    after = evaluate_loss(trainer.model_wrapped if world > 1 else model, eval_rows.rows, eval_collator, cfg.batch_size)
    real, seen = _sum_over_ranks(state, [trainer.real_tokens, trainer.seen_tokens])
    metrics = {
        "train_loss": output.training_loss,
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0.0, 4),
        "train_runtime_s": round(runtime, 2),
        "real_tokens": real,
        "tokens_per_s": round(real / runtime, 1) if runtime else None,
        "padding_fraction": round(1 - real / seen, 4) if seen else 0.0,
        "eval_loss_before": before,
        "eval_loss_after": after,
        "perplexity_before": perplexity(before),
        "perplexity_after": perplexity(after),
        "resumed_from": Path(last).name if last else None,
    }
    if after is not None:
        progress.write(
            "eval", phase="after", step=trainer.state.global_step, eval_loss=after, perplexity=perplexity(after)
        )
    manifest = PersonaManifest(
        name=persona,
        display_name=display_name or persona,
        system_prompt=prepared.system,
        base_model=prepared.model_id,
        base_fingerprint=fingerprint(model.config),
        template=llm_cfg.template,
        stop=list(prepared.fmt.stop_strings),
        enable_thinking=False,
        description=description,
        data=prepared.summary(),
        hyperparameters=cfg.to_dict(),
        metrics=metrics,
        card=dict(card or {}),
    )
    staging = folder / "staging"
    if main:
        shutil.rmtree(staging, ignore_errors=True)
    state.wait_for_everyone()
    trainer.save_model(str(staging))  # every rank: gathers sharded (FSDP/ZeRO-3) weights; main writes
    if main:
        (staging / "training_args.bin").unlink(missing_ok=True)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        plot_loss(read_progress(progress.path), staging / "loss.png", title=persona if persona.isascii() else "")
        if (final / AVATAR).is_file():  # a character's picture stays with it
            shutil.copy2(final / AVATAR, staging / AVATAR)
        write_training_memory(staging, final, prepared.data if cfg.memory else None)
        manifest.save(staging)  # last: discover() only lists folders with a manifest
        _place(staging, final, overwrite)
        for ckpt in folder.glob("checkpoint-*"):
            shutil.rmtree(ckpt, ignore_errors=True)
        progress.write("done", status="done", step=trainer.state.global_step, output=final, metrics=metrics)
    state.wait_for_everyone()
    return TrainResult(persona, final, manifest, metrics)
