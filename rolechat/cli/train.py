"""`rolechat train` (persona LoRA training, or a data lint with --dry-run) and `rolechat merge`."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import typer

from rolechat.cli.common import console, err_console, fail, file_data


def _configs(train_overrides: dict[str, Any], base: str | None):
    from rolechat import settings as rc
    from rolechat.finetune.config import TrainConfig
    from rolechat.llm.config import LLMConfig

    data = file_data()
    try:
        cfg = rc.build(TrainConfig, "train", data, train_overrides)
    except ValueError as exc:
        fail(f"invalid training setting: {exc}")
    try:
        llm_cfg = rc.build(LLMConfig, "llm", data, {"model": base})
    except ValueError as exc:
        fail(f"invalid [llm] setting: {exc}")
    return cfg, llm_cfg


def _print_lint(prepared, cfg, data) -> None:
    from rolechat.finetune.encode import show_example
    from rolechat.finetune.trainer import expected_padding
    from rolechat.llm.templates import EMPTY_THINK

    s = prepared.summary()
    length = s["length"]
    console.print(
        f"[bold]{data}[/]: {s['records']} records, {s['conversations']} conversations used "
        f"({s['skipped']} bad skipped, {s['duplicates_removed']} exact duplicates removed), "
        f"formats {s['formats']}",
        highlight=False,
    )
    for issue in prepared.data.issues[:10]:
        console.print(f"  [yellow]skipped[/] {issue}", highlight=False)
    if len(prepared.data.issues) > 10:
        console.print(f"  … and {len(prepared.data.issues) - 10} more", highlight=False)
    console.print(
        f"base model {prepared.model_id} · template {prepared.fmt.name} · end of turn {prepared.fmt.eot!r}",
        highlight=False,
    )
    console.print(f"system prompt: {prepared.system or '(none)'}", highlight=False)
    if s["system_mismatch"]:
        console.print(
            f"[yellow]{s['system_mismatch']} record(s) have their own, different system prompt[/] and are trained "
            "under the persona's (--strict refuses them):",
            highlight=False,
        )
        for line in s["system_mismatch_first"]:
            console.print(f"  {line}", highlight=False)
    if prepared.fmt.thinking_only:
        console.print(
            "thinking-only template (its generation prompt opens a think block): trained in its own format, "
            f"each reply after a closed empty think block {EMPTY_THINK!r}, as inference renders it",
            highlight=False,
        )
    console.print(
        f"examples {s['examples']} (train {s['train_examples']}, eval {s['eval_examples']}) · "
        f"tokens {s['tokens']:,} · supervised {s['supervised_tokens']:,} "
        f"({s['supervised_ratio']:.1%})",
        highlight=False,
    )
    console.print(
        f"length min {length['min']} · p50 {length['p50']} · p90 {length['p90']} · p99 {length['p99']} · "
        f"max {length['max']} · mean {length['mean']} (max-length {cfg.max_length})",
        highlight=False,
    )
    console.print(
        f"truncated {s['truncated']} (oldest turns dropped {s['turns_dropped']}) · skipped as too long "
        f"{s['skipped_too_long']} · lost end-of-turn {s['eot_lost']} · unrenderable "
        f"{s['template_errors']}",
        highlight=False,
    )
    if s["parity"]:
        console.print(
            f"[red]train/infer parity: {s['parity']} example(s) would not be trained on the ids inference "
            "feeds the model[/]",
            highlight=False,
        )
        for line in s["parity_first"]:
            console.print(f"  {line}", highlight=False)
    else:
        console.print("train/infer parity: every example matches the inference prompt", highlight=False)
    pad = expected_padding([len(e.input_ids) for e in prepared.train], cfg)  # cfg: effective() settings
    console.print(
        f"expected padding {pad:.1%} (batch {cfg.batch_size}, "
        f"{'packing' if cfg.packing else 'length-grouped' if cfg.group_by_length else 'random'} batches)",
        highlight=False,
    )
    example = prepared.train[0]
    console.rule("first example (supervised tokens inside ⟦ ⟧, highlighted)")
    text = show_example(prepared.tokenizer, example)
    from rich.text import Text

    rendered = Text()
    for i, part in enumerate(text.replace("⟧", "⟦").split("⟦")):
        rendered.append(("⟦" + part + "⟧") if i % 2 else part, style="bold green" if i % 2 else "dim")
    console.print(rendered)
    console.rule()


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        data: Path | None = typer.Option(None, "--data", "-d", help="Alpaca / ShareGPT / OpenAI JSON or JSONL."),
        persona: str = typer.Option(..., "--persona", "-p", help="Persona (folder) name."),
        system: str | None = typer.Option(None, "--system", help="System prompt (default: the dataset's)."),
        display_name: str = typer.Option("", "--display-name", help="Name shown in the app (default: --persona)."),
        description: str = typer.Option("", "--description", help="One line about the persona."),
        base: str | None = typer.Option(
            None, "--base", help="Base model folder or cached hub id (default: llm.model)."
        ),
        epochs: float | None = typer.Option(None, "--epochs", help="Passes over the data."),
        max_steps: int | None = typer.Option(None, "--max-steps", help="Optimizer steps (overrides --epochs)."),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Lint the data (counts, lengths, label mask); no training."
        ),
        resume: bool = typer.Option(
            False, "--resume", help="Continue the persona's interrupted run from its last checkpoint."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing persona / stale checkpoints."),
        out: Path | None = typer.Option(None, "--out", help="Adapter folder (default: $ROLECHAT_HOME/personas/NAME)."),
        strict: bool | None = typer.Option(None, "--strict/--no-strict", help="Fail on the first bad record."),
        last_turn_only: bool | None = typer.Option(
            None, "--last-turn-only/--all-turns", help="Supervise only the last reply."
        ),
        eval_ratio: float | None = typer.Option(None, "--eval-ratio", help="Held-out fraction (0 = none)."),
        eval_steps: int | None = typer.Option(
            None, "--eval-steps", help="Evaluate every N steps (0 = before/after only)."
        ),
        early_stopping: int | None = typer.Option(None, "--early-stopping", help="Patience in evaluations (0 = off)."),
        lr: float | None = typer.Option(None, "--lr", help="Learning rate."),
        schedule: str | None = typer.Option(None, "--schedule", help="linear, cosine, constant, ..."),
        warmup_ratio: float | None = typer.Option(None, "--warmup-ratio", help="Warmup fraction of the steps."),
        rank: int | None = typer.Option(None, "--rank", help="LoRA rank."),
        alpha: int | None = typer.Option(None, "--alpha", help="LoRA alpha."),
        dropout: float | None = typer.Option(None, "--dropout", help="LoRA dropout."),
        target_modules: str | None = typer.Option(None, "--target-modules", help="all-linear or q_proj,v_proj,..."),
        batch_size: int | None = typer.Option(None, "--batch-size", help="Examples per device per step."),
        grad_accum: int | None = typer.Option(None, "--grad-accum", help="Gradient accumulation steps."),
        max_length: int | None = typer.Option(None, "--max-length", help="Most tokens per example."),
        seed: int | None = typer.Option(None, "--seed", help="Random seed."),
        packing: bool | None = typer.Option(
            None, "--packing/--no-packing", help="Pack examples into rows (no padding)."
        ),
        sparse_logits: bool | None = typer.Option(
            None, "--sparse-logits/--no-sparse-logits", help="Logits only where the loss is (default on)."
        ),
        group_by_length: bool | None = typer.Option(
            None, "--group-by-length/--no-group-by-length", help="Length-grouped batches."
        ),
        gradient_checkpointing: bool | None = typer.Option(
            None, "--gradient-checkpointing/--no-gradient-checkpointing", help="Save memory, spend compute."
        ),
        qlora: bool | None = typer.Option(None, "--qlora/--no-qlora", help="4-bit base (CUDA only)."),
        precision: str | None = typer.Option(None, "--precision", help="auto, fp32, bf16, fp16."),
        save_steps: int | None = typer.Option(None, "--save-steps", help="Checkpoint every N steps."),
        logging_steps: int | None = typer.Option(None, "--logging-steps", help="Log every N steps."),
        report_to: str | None = typer.Option(None, "--report-to", help="none, tensorboard or swanlab."),
        json_out: bool = typer.Option(False, "--json", help="Print the result (or lint) as JSON."),
    ) -> None:
        """Train a persona LoRA adapter; it appears in chat, the API and the app at once."""
        from rolechat.finetune.data import DataError
        from rolechat.llm.personas import PersonaError, check_name

        try:
            check_name(persona)
        except PersonaError as exc:
            fail(str(exc))
        overrides = {
            "epochs": epochs,
            "max_steps": max_steps,
            "learning_rate": lr,
            "schedule": schedule,
            "warmup_ratio": warmup_ratio,
            "batch_size": batch_size,
            "grad_accum": grad_accum,
            "max_length": max_length,
            "rank": rank,
            "alpha": alpha,
            "dropout": dropout,
            "target_modules": target_modules.split(",") if target_modules else None,
            "eval_ratio": eval_ratio,
            "eval_steps": eval_steps,
            "early_stopping": early_stopping,
            "save_steps": save_steps,
            "seed": seed,
            "last_turn_only": last_turn_only,
            "packing": packing,
            "sparse_logits": sparse_logits,
            "group_by_length": group_by_length,
            "gradient_checkpointing": gradient_checkpointing,
            "qlora": qlora,
            "precision": precision,
            "strict": strict,
            "report_to": report_to,
            "logging_steps": logging_steps,
        }
        cfg, llm_cfg = _configs(overrides, base)
        if data is None and not resume:
            fail("--data is required (except with --resume)")
        if dry_run:
            from rolechat.finetune.model import TrainError
            from rolechat.finetune.trainer import effective, prepare
            from rolechat.llm.loader import LoadError

            cfg = effective(cfg, llm_cfg)
            try:
                prepared = prepare(data, cfg, llm_cfg, system=system)
            except (DataError, TrainError, LoadError) as exc:
                fail(str(exc))
            if json_out:
                from rolechat.finetune.encode import show_example

                lint = {
                    **prepared.summary(),
                    "model_id": prepared.model_id,
                    "template": prepared.fmt.name,
                    "system": prepared.system or "",
                    "issues": [str(i) for i in prepared.data.issues[:20]],
                    "example": show_example(prepared.tokenizer, prepared.train[0]) if prepared.train else "",
                }
                console.print_json(json.dumps(lint, ensure_ascii=False))
            else:
                _print_lint(prepared, cfg, data)
            return
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        from rolechat.finetune.model import TrainError
        from rolechat.finetune.trainer import progress_path
        from rolechat.finetune.trainer import train as run_training
        from rolechat.llm.loader import LoadError

        err_console.print(f"progress: {progress_path(persona)}", highlight=False)
        try:
            result = run_training(
                data,
                persona,
                cfg,
                llm_cfg,
                system=system,
                display_name=display_name,
                description=description,
                out=out,
                resume=resume,
                overwrite=overwrite,
            )
        except (DataError, TrainError, LoadError, PersonaError) as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail(f"interrupted; continue with: rolechat train --persona {persona} --resume", code=130)
        if os.environ.get("RANK", "0") != "0":  # torchrun / accelerate launch: the main process reports
            return
        m = result.metrics
        if json_out:
            console.print_json(json.dumps({"output": str(result.output), "metrics": m}, ensure_ascii=False))
            return
        fmt = lambda v: "-" if v is None else f"{v:.4f}"
        console.print(f"[bold green]persona {persona}[/] -> {result.output}", highlight=False)
        console.print(
            f"steps {m['steps']} · {m['train_runtime_s']} s · {m['tokens_per_s']:,} real tokens/s · "
            f"padding {m['padding_fraction']:.1%} · eval loss {fmt(m['eval_loss_before'])} -> "
            f"{fmt(m['eval_loss_after'])} (perplexity {fmt(m['perplexity_before'])} -> "
            f"{fmt(m['perplexity_after'])})",
            highlight=False,
        )
        console.print(f"chat with it: rolechat chat --persona {persona}", highlight=False)

    @app.command()
    def merge(
        persona: str = typer.Option(..., "--persona", "-p", help="Persona to merge into its base model."),
        out: Path = typer.Option(..., "--out", help="Folder for the merged model (+ tokenizer, chat template)."),
        base: str | None = typer.Option(None, "--base", help="Base model (default: llm.model, else the persona's)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder."),
    ) -> None:
        """Merge a persona adapter into a full-precision copy of its base model (for vLLM, llama.cpp, ...)."""
        from rolechat.finetune.merge import MergeError, merge_persona
        from rolechat.llm.loader import LoadError
        from rolechat.llm.personas import PersonaError

        _, llm_cfg = _configs({}, base)
        try:
            with err_console.status("merging…"):
                path = merge_persona(persona, out, llm_cfg, overwrite=overwrite)
        except (MergeError, LoadError, PersonaError) as exc:
            fail(str(exc))
        console.print(f"[bold green]merged[/] {persona} -> {path}", highlight=False)
