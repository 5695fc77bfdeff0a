"""A persona training run: data -> encoded examples -> LoRA training (HF Trainer) -> adapter folder.

`prepare` does everything up to the model (data validation, tokenization, split) and is all that
`rolechat train --dry-run` needs. `train` runs the whole thing. It uses `transformers.Trainer`, so the
same code runs on one CPU, one GPU, or several GPUs under `accelerate launch` / `torchrun` (DDP): only
the main process writes files. The adapter is written into a staging folder and renamed into place at
the end, so a crash never leaves a half persona; checkpoints in `runs_dir()/<persona>/` let `--resume`
continue after a kill (the run folder is `finetune.runs`', shared with classifier training).
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import random
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
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
from rolechat.finetune.processes import device_batch
from rolechat.finetune.progress import ProgressLog, progress_callback
from rolechat.finetune.runs import (
    RunFolder,
    RunResult,
    check_free,
    data_record,
    failures_reported,
    fit,
    require_data,
    run_folder,
    run_metrics,
    schedule_args,
)
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


def run_dir(persona: str) -> Path:
    """Checkpoints, progress file and run record of one persona's training (see finetune.runs)."""
    return run_folder(persona).path


def progress_path(persona: str) -> Path:
    """Where a run's JSON-lines progress goes (see finetune.progress for the format)."""
    return run_folder(persona).progress_path


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
class TrainResult(RunResult):
    """A finished persona run: where the adapter went, its PersonaManifest and what it measured."""

    @property
    def persona(self) -> str:
        return self.name


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

    bs = device_batch(cfg, world)
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
    return math.ceil(math.ceil(n_train / (device_batch(cfg, world) * world)) / cfg.grad_accum)


def supervised_tokens(rows: Sequence[dict[str, list[int]]]) -> int:
    """Tokens that carry loss (a supervised next token), as the Trainer counts them: labels[1:] != -100."""
    return sum(sum(1 for label in r["labels"][1:] if label != -100) for r in rows)


def _training_args(cfg: TrainConfig, out: Path, device: str, prec: str, n_train: int, has_eval: bool, world: int):
    from transformers import TrainingArguments

    steps_per_epoch = _steps_per_epoch(cfg, n_train, world)
    total = cfg.max_steps or math.ceil(steps_per_epoch * cfg.epochs)
    evaluating = bool(cfg.eval_steps and has_eval)
    return TrainingArguments(
        **{
            **schedule_args(cfg, out, total),
            "save_steps": cfg.eval_steps if cfg.early_stopping else cfg.save_steps,  # the best model's checkpoint
            "per_device_train_batch_size": device_batch(cfg, world),
        },
        per_device_eval_batch_size=device_batch(cfg, world),
        gradient_accumulation_steps=cfg.grad_accum,
        eval_strategy="steps" if evaluating else "no",
        eval_steps=cfg.eval_steps if evaluating else None,
        load_best_model_at_end=bool(cfg.early_stopping),
        metric_for_best_model="eval_loss" if cfg.early_stopping else None,
        greater_is_better=False,
        bf16=prec == "bf16" and device != "cpu",  # the CPU's bf16 is in the base layers (speedups.bf16_base)
        fp16=prec == "fp16",
        use_cpu=device == "cpu",
        report_to=[] if cfg.report_to == "none" else [cfg.report_to],
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


@dataclass
class PersonaFields:
    """What a persona's manifest says of it besides its training: the system prompt (None: the data's own, or the
    default), the names and the character card."""

    system: str | None = None
    display_name: str = ""
    description: str = ""
    card: dict[str, Any] | None = None

    def kept_from(self, previous: PersonaManifest | None) -> PersonaFields:
        """Training into a character's folder: the fields not given are the character's."""
        if previous is None:
            return self
        return PersonaFields(
            self.system if self.system is not None else previous.system_prompt,
            self.display_name or previous.display_name,
            self.description or previous.description,
            self.card if self.card is not None else previous.card,
        )

    @classmethod
    def recorded(cls, record: dict[str, Any]) -> PersonaFields:
        """The fields a run record holds (an older record may lack some)."""
        return cls(**{f.name: record[f.name] for f in fields(cls) if record.get(f.name) is not None})


@dataclass
class _Job:
    """One persona run's inputs: its data, its settings and the persona fields its manifest gets."""

    persona: str
    data: Any  # a loaded Dataset, or (resumed) the data file's path
    cfg: TrainConfig
    llm_cfg: Any
    final: Path  # the persona folder the adapter goes to
    fields: PersonaFields = field(default_factory=PersonaFields)
    last: str | None = None  # the checkpoint a resumed run continues from
    record: dict[str, Any] | None = None  # the run record (run.json), written when the run starts
    overwrite: bool = False  # the finished adapter may replace what is in `final`


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
    run = run_folder(persona)
    progress = run.progress_log(fresh=not resume, enabled=main)
    with failures_reported(progress):
        if resume:
            job = _resumed_job(persona, run, llm_cfg, out)
        else:
            given = PersonaFields(system, display_name, description, card)
            job = _fresh_job(persona, data, cfg, llm_cfg, out, given)
            _claim_folders(job, run, overwrite, main)
        return _train_job(job, run, progress, callbacks, show_progress)


def _persona_folder(persona: str, out: str | Path | None) -> Path:
    return Path(out).expanduser() if out else rc.personas_dir() / persona


def _resumed_job(persona: str, run: RunFolder, llm_cfg: Any, out: str | Path | None) -> _Job:
    """An interrupted run's job, from its run record: the data, settings and persona fields it started with."""
    last, record = run.resume()
    return _Job(
        persona,
        record["data"],
        TrainConfig(**record["config"]),
        _llm_config(llm_cfg, record["llm"]),
        _persona_folder(persona, record.get("out") or out),
        PersonaFields.recorded(record),
        last=last,
        record=record,
        overwrite=True,
    )


def _fresh_job(
    persona: str, data: Any, cfg: TrainConfig | None, llm_cfg: Any, out: str | Path | None, given: PersonaFields
) -> _Job:
    """A new run's job. The data is read now, so a bad file fails before torch loads. Training into a
    character's folder keeps its card, system prompt and names unless new ones are given."""
    cfg = cfg or TrainConfig()
    require_data(data)
    llm_cfg = _llm_config(llm_cfg, {})
    dataset = load_dataset(data, strict=cfg.strict, dedupe=cfg.dedupe)
    final = _persona_folder(persona, out)
    return _Job(persona, dataset, cfg, llm_cfg, final, given.kept_from(_character_manifest(final)))


def _claim_folders(job: _Job, run: RunFolder, overwrite: bool, main: bool) -> None:
    """Before a fresh run: an existing persona is replaced only with overwrite, except a prompt-only character
    (a card without an adapter), which gains one; an unfinished run's checkpoints also go only with overwrite."""
    prompt_only = _character_manifest(job.final) is not None and not (job.final / "adapter_config.json").exists()
    if not prompt_only:
        check_free(job.final, "persona folder", overwrite)
    if main:
        run.start_over(repr(job.persona), overwrite)
    job.overwrite = overwrite or prompt_only


def _train_job(
    job: _Job, run: RunFolder, progress: ProgressLog, callbacks: Sequence[Any], show_progress: bool
) -> TrainResult:
    """Check the settings against this machine, prepare the data with the base model's template, train."""
    _check_reporter(job.cfg.report_to)
    job.cfg = effective(job.cfg, job.llm_cfg)
    device = check_device(job.cfg, job.llm_cfg.device)
    from accelerate import PartialState

    state = PartialState(cpu=device == "cpu")  # on CPU, DDP (gloo) only starts when asked for
    prepared = prepare(job.data, job.cfg, job.llm_cfg, system=job.fields.system)
    return _run(prepared, job, run, progress, device=device, state=state, callbacks=callbacks, show=show_progress)


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


def _run(
    prepared: Prepared,
    job: _Job,
    run: RunFolder,
    progress: ProgressLog,
    *,
    device: str,
    state: Any,
    callbacks: Sequence[Any],
    show: bool,
) -> TrainResult:
    """Train on the prepared examples (continuing from `job.last`), measure, and publish the persona folder."""
    cfg, world = job.cfg, state.num_processes
    model, tokenizer = load_trainable(
        prepared.source,
        cfg,
        device=device,
        trust_remote_code=job.llm_cfg.trust_remote_code,
        local_rank=state.local_process_index,
    )
    rows = ExampleDataset(prepared.train), ExampleDataset(prepared.eval)
    eval_collator = PadCollator(tokenizer.pad_token_id)
    if job.record is None:
        before = evaluate_loss(model, rows[1].rows, eval_collator, cfg.batch_size)
        job.record = _run_record(job, prepared, before)
        if state.is_main_process:
            run.write_record(job.record)
    before = job.record["eval_loss_before"]
    prec = precision(cfg, device)
    args = _training_args(cfg, run.path, device, prec, len(rows[0]), bool(rows[1].rows), world)
    _announce(progress, job, prepared, rows, device=device, prec=prec, world=world, before=before)
    bar = progress_callback(progress, show and state.is_main_process, world=world)
    trainer = _make_trainer(model, tokenizer, args, rows, cfg, [bar, *callbacks], world)
    bar.tokens = lambda: (trainer.real_tokens, trainer.seen_tokens)
    output, runtime = fit(trainer, job.last)
    # Under FSDP / DeepSpeed ZeRO-3 the parameters are sharded: evaluate through the wrapper on every rank.
    after = evaluate_loss(trainer.model_wrapped if world > 1 else model, rows[1].rows, eval_collator, cfg.batch_size)
    metrics = _metrics(output, trainer, runtime, state, before, after, job.last)
    if after is not None:
        progress.write(
            "eval", phase="after", step=trainer.state.global_step, eval_loss=after, perplexity=perplexity(after)
        )
    manifest = _persona_manifest(job, prepared, model, metrics)
    _publish(trainer, job, run, prepared, manifest, metrics, progress, state)
    return TrainResult(job.persona, job.final, manifest, metrics)


def _run_record(job: _Job, prepared: Prepared, before: float | None) -> dict[str, Any]:
    """The run record (run.json): what --resume needs to continue this run as it started."""
    llm_cfg = job.llm_cfg
    return {
        "persona": job.persona,
        **data_record(prepared.data.path),
        **asdict(replace(job.fields, system=prepared.system)),
        "out": str(job.final),
        "config": job.cfg.to_dict(),
        "eval_loss_before": before,
        "llm": {
            "model": prepared.source,
            "template": llm_cfg.template,
            "device": llm_cfg.device,
            "trust_remote_code": llm_cfg.trust_remote_code,
        },
    }


def _announce(
    progress: ProgressLog,
    job: _Job,
    prepared: Prepared,
    rows: tuple[ExampleDataset, ExampleDataset],
    *,
    device: str,
    prec: str,
    world: int,
    before: float | None,
) -> None:
    """The progress file's "start" line (and the held-out loss before training, when there is a split)."""
    progress.write(
        "start",
        persona=job.persona,
        max_steps=None,
        resumed_from=job.last,
        device=device,
        precision=prec,
        examples={"train": len(rows[0]), "eval": len(rows[1])},
        padding_expected=expected_padding(rows[0].lengths, job.cfg, world),
        data=prepared.summary(),
    )
    if before is not None:
        progress.write("eval", phase="before", step=0, eval_loss=before, perplexity=perplexity(before))


def _make_trainer(
    model: Any,
    tokenizer: Any,
    args: Any,
    rows: tuple[ExampleDataset, ExampleDataset],
    cfg: TrainConfig,
    callbacks: list[Any],
    world: int,
) -> Any:
    """The counting Trainer over (train, eval) rows: packed or padded batches, early stopping when asked."""
    from transformers import EarlyStoppingCallback

    train_rows, eval_rows = rows
    sparse = cfg.sparse_logits and "logits_to_keep" in inspect.signature(model.get_base_model().forward).parameters
    collator = (
        PackCollator(sparse, max_row=cfg.max_length, pad_id=tokenizer.pad_token_id or 0)
        if cfg.packing
        else PadCollator(tokenizer.pad_token_id, sparse_logits=sparse)
    )
    if cfg.early_stopping:
        callbacks = [*callbacks, EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping)]
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=train_rows,
        eval_dataset=eval_rows if eval_rows.rows else None,
        data_collator=collator,
        callbacks=callbacks,
    )
    if args.train_sampling_strategy == "group_by_length":
        trainer.tokens_per_step = supervised_tokens(train_rows.rows) / _steps_per_epoch(cfg, len(train_rows), world)
    return trainer


def _metrics(
    output: Any, trainer: Any, runtime: float, state: Any, before: float | None, after: float | None, last: str | None
) -> dict[str, Any]:
    """What the run measured: the common run metrics, tokens/s and padding, held-out loss and perplexity."""
    real, seen = _sum_over_ranks(state, [trainer.real_tokens, trainer.seen_tokens])
    return {
        **run_metrics(output, trainer, runtime),
        "real_tokens": real,
        "tokens_per_s": round(real / runtime, 1) if runtime else None,
        "padding_fraction": round(1 - real / seen, 4) if seen else 0.0,
        "eval_loss_before": before,
        "eval_loss_after": after,
        "perplexity_before": perplexity(before),
        "perplexity_after": perplexity(after),
        "resumed_from": Path(last).name if last else None,
    }


def _persona_manifest(job: _Job, prepared: Prepared, model: Any, metrics: dict[str, Any]) -> PersonaManifest:
    from rolechat.llm.loader import fingerprint

    return PersonaManifest(
        name=job.persona,
        display_name=job.fields.display_name or job.persona,
        system_prompt=prepared.system,
        base_model=prepared.model_id,
        base_fingerprint=fingerprint(model.config),
        template=job.llm_cfg.template,
        stop=list(prepared.fmt.stop_strings),
        enable_thinking=False,
        description=job.fields.description,
        data=prepared.summary(),
        hyperparameters=job.cfg.to_dict(),
        metrics=metrics,
        card=dict(job.fields.card or {}),
    )


def _publish(
    trainer: Any,
    job: _Job,
    run: RunFolder,
    prepared: Prepared,
    manifest: PersonaManifest,
    metrics: dict[str, Any],
    progress: ProgressLog,
    state: Any,
) -> None:
    """Save the adapter into the staging folder (every rank takes part), then, on the main process, add the
    character's avatar and memory and publish the folder."""
    main = state.is_main_process
    if main:
        run.fresh_staging()
    state.wait_for_everyone()
    trainer.save_model(str(run.staging))  # every rank: gathers sharded (FSDP/ZeRO-3) weights; main writes
    if main:
        staging, final = run.staging, job.final
        (staging / "training_args.bin").unlink(missing_ok=True)
        if (final / AVATAR).is_file():  # a character's picture stays with it
            shutil.copy2(final / AVATAR, staging / AVATAR)
        write_training_memory(staging, final, prepared.data if job.cfg.memory else None)
        step, title = trainer.state.global_step, job.persona
        run.publish(final, manifest, metrics, progress, step=step, title=title, overwrite=job.overwrite)
    state.wait_for_everyone()
