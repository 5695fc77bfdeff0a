"""`rolechat train` (persona LoRA training, or a data lint with --dry-run) and `rolechat merge`."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import typer

from rolechat.cli.common import build, console, err_console, fail
from rolechat.cli.options import Overrides, config_flags


def _configs(config: Overrides):
    return build("train", config["train"]), build("llm", config["llm"])


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
        _print_listed(
            f"[yellow]{s['system_mismatch']} record(s) have their own, different system prompt[/] and are trained "
            "under the persona's (--strict refuses them):",
            s["system_mismatch_first"],
        )
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
        _print_listed(
            f"[red]train/infer parity: {s['parity']} example(s) would not be trained on the ids inference "
            "feeds the model[/]",
            s["parity_first"],
        )
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


def _print_listed(header: str, lines: list[str]) -> None:
    """A finding of the lint and the first records it concerns, indented under it."""
    console.print(header, highlight=False)
    for line in lines:
        console.print(f"  {line}", highlight=False)


def _character(name_or_file: str, persona, system, display_name, description):
    """A --character's card, avatar and the persona fields it fills (explicit flags win)."""
    from rolechat.conversation.card import system_prompt
    from rolechat.conversation.cardfile import read_avatar, read_card
    from rolechat.conversation.characters import character_roots, find_character, persona_name
    from rolechat.conversation.lorebook import CardError

    path = Path(name_or_file).expanduser()
    try:
        if path.is_file():
            char, avatar = read_card(path, build("chat").card_max_bytes), read_avatar(path)
        else:
            entry, char = find_character(name_or_file, character_roots(build("llm").persona_dirs))
            avatar = entry.avatar.read_bytes() if entry.avatar else None
            persona = persona or entry.name
    except (CardError, ValueError) as exc:
        fail(str(exc))
    notes = char.creator_notes.strip().splitlines()
    return (
        char.to_card("v3" if char.spec == "chara_card_v3" else "v2"),
        avatar,
        persona or persona_name(char),
        system if system is not None else system_prompt(char),
        display_name or char.display_name,
        description or (notes[0][:120] if notes else ""),
    )


def _print_result(persona: str, result) -> None:
    m = result.metrics
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


_DATA = typer.Option(
    None, "--data", "-d", help="Alpaca / ShareGPT / OpenAI JSON or JSONL (classify: CSV / TSV / JSONL)."
)
_PERSONA = typer.Option(
    None, "--persona", "-p", "--name", help="Persona (folder) name (default: the --character's name)."
)
_TASK = typer.Option(
    "persona",
    "--task",
    help="persona (a LoRA persona) or classify (a text classifier, as `rolechat train-classifier`: the "
    "[train] flags it shares, --epochs, --lr, --batch-size ..., and --base apply; its own settings such as "
    "classify.text_column come from the config file or ROLECHAT_CLASSIFY_*).",
)
_CHARACTER = typer.Option(
    None,
    "--character",
    help="Train for a character: a card file (.png/.json) or an imported character's name. Its system "
    "prompt and name go into the persona, its card is kept with the adapter.",
)
_SYSTEM = typer.Option(None, "--system", help="System prompt (default: the --character's, else the dataset's).")
_DISPLAY_NAME = typer.Option("", "--display-name", help="Name shown in the app (default: --persona).")
_DESCRIPTION = typer.Option("", "--description", help="One line about the persona.")
_DRY_RUN = typer.Option(False, "--dry-run", help="Lint the data (counts, lengths, label mask); no training.")
_RESUME = typer.Option(False, "--resume", help="Continue the persona's interrupted run from its last checkpoint.")
_OVERWRITE = typer.Option(False, "--overwrite", help="Replace an existing persona / stale checkpoints.")
_OUT = typer.Option(None, "--out", help="Adapter folder (default: $ROLECHAT_HOME/personas/NAME).")
_JSON = typer.Option(
    False,
    "--json",
    help="Print the result (or lint) as one JSON document; with --eval-persona the report is its 'eval_persona' key.",
)
_EVAL_PERSONA = typer.Option(
    False, "--eval-persona", help="Afterwards, compare the persona with the base model (rolechat eval-persona)."
)


@config_flags("train", "llm", aliases={"train.learning_rate": ["--lr"], "llm.model": ["--base"]})
def train(
    data: Path | None = _DATA,
    persona: str | None = _PERSONA,
    task: str = _TASK,
    character: str | None = _CHARACTER,
    system: str | None = _SYSTEM,
    display_name: str = _DISPLAY_NAME,
    description: str = _DESCRIPTION,
    dry_run: bool = _DRY_RUN,
    resume: bool = _RESUME,
    overwrite: bool = _OVERWRITE,
    out: Path | None = _OUT,
    json_out: bool = _JSON,
    eval_persona: bool = _EVAL_PERSONA,
    config: Overrides | None = None,
) -> None:
    """Train a persona LoRA adapter; it appears in chat, the API and the app at once."""
    if task not in ("persona", "classify"):
        fail(f"--task must be persona or classify, got {task!r}")
    if task == "classify":
        _train_classifier(data, persona, config or {}, out, description, resume, overwrite, json_out)
        return
    card, avatar = None, None
    if character is not None:
        card, avatar, persona, system, display_name, description = _character(
            character, persona, system, display_name, description
        )
    persona = _checked_persona(persona)
    cfg, llm_cfg = _configs(config)
    if data is None and not resume:
        fail("--data is required (except with --resume)")
    if dry_run:
        _lint(data, cfg, llm_cfg, system, json_out)
        return
    _split_over_processes(_run_config(persona, cfg, resume), llm_cfg)
    fields = {"system": system, "display_name": display_name, "description": description, "card": card}
    result = _train_persona(data, persona, cfg, llm_cfg, out=out, resume=resume, overwrite=overwrite, **fields)
    if os.environ.get("RANK", "0") != "0":  # torchrun / accelerate launch: the main process reports
        return
    if avatar is not None and not (result.output / "avatar.png").exists():
        (result.output / "avatar.png").write_bytes(avatar)
    _report(persona, result, json_out, eval_persona, (config or {}).get("llm") or {})


def _run_config(persona: str, cfg, resume: bool):
    """The settings the run trains with: a resumed run's are in its run record (its batch decides how many
    processes may share it), not in this command's flags. Without a readable record, one process (which
    then says why there is nothing to resume)."""
    if not resume:
        return cfg
    from rolechat.finetune.config import TrainConfig
    from rolechat.finetune.runs import run_folder

    try:
        return TrainConfig(**run_folder(persona).read_record()["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return TrainConfig(cpu_processes=1)


def _split_over_processes(cfg, llm_cfg) -> None:
    """On a CPU with several cores, run this same command as several processes that share each batch
    (finetune.processes), wait for them and exit with their status; otherwise return and train here."""
    import sys

    if "train" not in sys.argv[1:]:  # called in-process (not as the `rolechat train` command): train here
        return
    import torch

    from rolechat.finetune.processes import cpu_processes, run_workers
    from rolechat.llm.loader import LoadError, pick_device

    try:
        device = pick_device(llm_cfg.device)
    except LoadError as exc:
        fail(str(exc))
    threads = torch.get_num_threads()
    processes = cpu_processes(cfg, device, threads)
    if processes > 1:
        raise typer.Exit(run_workers(sys.argv[1:], processes, threads))


def _train_classifier(data, name, config: Overrides, out, description, resume, overwrite, json_out) -> None:
    """`rolechat train --task classify`: `rolechat train-classifier` with the [train] flags both share."""
    from rolechat.cli.classify import classify_overrides, run_classifier_training

    if name is None:
        fail("--name is required with --task classify")
    run_classifier_training(
        data,
        name,
        classify_overrides(config),
        out=out,
        description=description,
        resume=resume,
        overwrite=overwrite,
        json_out=json_out,
    )


def _checked_persona(persona: str | None) -> str:
    from rolechat.llm.personas import PersonaError, check_name

    if persona is None:
        fail("--persona is required (or --character, whose name it then takes)")
    try:
        return check_name(persona)
    except PersonaError as exc:
        fail(str(exc))


def _lint(data, cfg, llm_cfg, system, json_out: bool) -> None:
    """--dry-run: validate, render and tokenize the data as training would, and show what training would see."""
    from rolechat.finetune.data import DataError
    from rolechat.finetune.model import TrainError
    from rolechat.finetune.trainer import effective, prepare
    from rolechat.llm.loader import LoadError

    cfg = effective(cfg, llm_cfg)
    try:
        prepared = prepare(data, cfg, llm_cfg, system=system)
    except (DataError, TrainError, LoadError) as exc:
        fail(str(exc))
    if not json_out:
        _print_lint(prepared, cfg, data)
        return
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


def _train_persona(data, persona: str, cfg, llm_cfg, **options: Any):
    """Run the training (finetune.trainer.train); its errors end the command with their message."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from rolechat.finetune.data import DataError
    from rolechat.finetune.model import TrainError
    from rolechat.finetune.trainer import progress_path
    from rolechat.finetune.trainer import train as run_training
    from rolechat.llm.loader import LoadError
    from rolechat.llm.personas import PersonaError

    if os.environ.get("RANK", "0") == "0":
        err_console.print(f"progress: {progress_path(persona)}", highlight=False)
    try:
        return run_training(data, persona, cfg, llm_cfg, **options)
    except (DataError, TrainError, LoadError, PersonaError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail(f"interrupted; continue with: rolechat train --persona {persona} --resume", code=130)


def _report(persona: str, result, json_out: bool, eval_persona: bool, llm: dict[str, Any]) -> None:
    """The trained persona (a summary, or one JSON document), then with --eval-persona its evaluation."""
    doc: dict[str, Any] = {"output": str(result.output), "metrics": result.metrics}
    if not json_out:
        _print_result(persona, result)
    if eval_persona:
        from rolechat.cli.classify import run_persona_eval

        try:
            doc["eval_persona"] = run_persona_eval(
                persona,
                json_out=json_out,
                llm_overrides=llm,
                max_new_tokens=llm.get("max_new_tokens") or 96,
                emit=not json_out,  # with --json, one document: the report goes under "eval_persona"
            )
        except typer.Exit:  # the check failed (its error is on stderr); the trained persona is still reported
            if json_out:
                doc["eval_persona"] = None
                console.print_json(json.dumps(doc, ensure_ascii=False))
            raise
    if json_out:
        console.print_json(json.dumps(doc, ensure_ascii=False))


@config_flags("llm", aliases={"llm.model": ["--base"]})
def merge(
    persona: str = typer.Option(..., "--persona", "-p", help="Persona to merge into its base model."),
    out: Path = typer.Option(..., "--out", help="Folder for the merged model (+ tokenizer, chat template)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder."),
    config: Overrides | None = None,
) -> None:
    """Merge a persona adapter into a full-precision copy of its base model (for vLLM, llama.cpp, ...)."""
    from rolechat.finetune.merge import MergeError, merge_persona
    from rolechat.llm.loader import LoadError
    from rolechat.llm.personas import PersonaError

    llm_cfg = build("llm", config["llm"])
    try:
        with err_console.status("merging…"):
            path = merge_persona(persona, out, llm_cfg, overwrite=overwrite)
    except (MergeError, LoadError, PersonaError) as exc:
        fail(str(exc))
    console.print(f"[bold green]merged[/] {persona} -> {path}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(merge)
