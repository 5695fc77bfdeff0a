"""`rolechat train-classifier`, `rolechat classify` and `rolechat eval-persona`.

Text-classifier adapters (LoRA + head on a BERT-family encoder or a Qwen-family decoder) are trained from
CSV / TSV / JSONL files and live under $ROLECHAT_HOME/classifiers; `eval-persona` measures whether a
persona adapter speaks like its character, against the base model under the same system prompt.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import typer

from rolechat.cli.common import build, console, err_console, fail, file_data
from rolechat.cli.options import Overrides, config_flags


def _configs(overrides: dict[str, Any] | None = None):
    return build("classify", overrides or {}), build("llm", {})


def classify_overrides(config: Overrides) -> dict[str, Any]:
    """`rolechat train --task classify`: the [train] flags of the fields both sections have (`--epochs`, `--lr`,
    `--rank` ...) and `--base` as classify.model; the rest comes from the config file and environment."""
    import dataclasses

    from rolechat.finetune.classify_config import ClassifyConfig

    shared = {f.name for f in dataclasses.fields(ClassifyConfig)}
    merged = {k: v for k, v in config.get("train", {}).items() if k in shared}
    merged.update(config.get("classify", {}))
    if config.get("llm", {}).get("model") and "model" not in merged:
        merged["model"] = config["llm"]["model"]  # --base
    return merged


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def run_classifier_training(
    data: Path | None,
    name: str,
    overrides: dict[str, Any],
    *,
    out: Path | None = None,
    description: str = "",
    resume: bool = False,
    overwrite: bool = False,
    json_out: bool = False,
) -> None:
    """The body of `rolechat train-classifier` (and of `rolechat train --task classify`)."""
    from rolechat.finetune.classifier import ClassifierError, check_name
    from rolechat.finetune.data import DataError

    try:
        check_name(name)
    except ClassifierError as exc:
        fail(str(exc))
    cfg, llm_cfg = _configs(overrides)
    if data is None and not resume:
        fail("--data is required (except with --resume)")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from rolechat.finetune.classify_train import classify_progress_path, train_classifier
    from rolechat.finetune.model import TrainError
    from rolechat.llm.loader import LoadError

    err_console.print(f"progress: {classify_progress_path(name)}", highlight=False)
    try:
        result = train_classifier(
            data, name, cfg, llm_cfg, out=out, description=description, resume=resume, overwrite=overwrite
        )
    except (DataError, TrainError, LoadError, ClassifierError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail(f"interrupted; continue with: rolechat train-classifier --name {name} --resume", code=130)
    m = result.metrics
    if json_out:
        console.print_json(
            json.dumps(
                {"output": str(result.output), "labels": result.manifest.labels, "metrics": m}, ensure_ascii=False
            )
        )
        return
    console.print(f"[bold green]classifier {name}[/] -> {result.output}", highlight=False)
    console.print(
        f"labels {', '.join(result.manifest.labels)} · base {result.manifest.base_model} "
        f"({result.manifest.architecture}) · steps {m['steps']} · {m['train_runtime_s']} s",
        highlight=False,
    )
    console.print(
        f"held-out {m['eval_rows']} rows: accuracy {_fmt(m['accuracy_before'])} -> {_fmt(m['accuracy_after'])} · "
        f"macro-F1 {_fmt(m['macro_f1_before'])} -> {_fmt(m['macro_f1_after'])}",
        highlight=False,
    )
    if (result.output / "confusion.png").is_file():
        console.print(f"confusion matrix: {result.output / 'confusion.png'}", highlight=False)
    console.print(f'classify with it: rolechat classify --adapter {name} "文本"', highlight=False)


def _texts(texts: list[str], file: Path | None, text_column: str) -> list[str]:
    from rolechat.finetune.classify_data import read_texts
    from rolechat.finetune.data import DataError

    out = list(texts)
    if file is not None:
        try:
            out += read_texts(file, text_column)
        except DataError as exc:
            fail(str(exc))
    if not out or out == ["-"]:
        if sys.stdin.isatty() and out != ["-"]:
            fail('give texts as arguments, --file FILE, or on stdin (rolechat classify --adapter NAME "文本")')
        out = [line.strip() for line in sys.stdin if line.strip()]
    return out


def _eval_table(report: dict[str, Any]) -> None:
    from rich.table import Table

    rows = [
        ("rouge_l", "ROUGE-L (jieba tokens)"),
        ("embedding_cosine", "embedding cosine"),
        ("character_score", "character score (judge)"),
        ("catchphrase", f"ends with {report['catchphrase']!r}" if report["catchphrase"] else "catchphrase"),
        ("break_character", "breaks character ↓"),
        ("stopped", "stops by itself"),
        ("distinct_1", "distinct-1"),
        ("distinct_2", "distinct-2"),
        ("mean_chars", "mean reply length (chars)"),
        ("perplexity", "perplexity under the base model ↓"),
    ]
    table = Table(title=f"{report['persona']} vs {report['base_model']} · {report['prompts']} prompts")
    table.add_column("metric")
    table.add_column(report["persona"], justify="right")
    table.add_column("base", justify="right")
    p, b = report["metrics"]["persona"], report["metrics"]["base"]
    for key, label in rows:
        if key in report["skipped"] or (key == "perplexity" and key not in p):
            continue
        fmt = (lambda v: "-" if v is None else f"{v:.1f}") if key in ("mean_chars", "perplexity") else _fmt
        table.add_row(label, fmt(p[key]), fmt(b[key]))
    console.print(table)
    if report.get("fluency_ratio") is not None:
        console.print(f"fluency ratio (perplexity, persona ÷ base): {report['fluency_ratio']:.2f}", highlight=False)
    for key, why in report["skipped"].items():
        console.print(f"[dim]{key} skipped: {why}[/]", highlight=False)
    console.print(f"[dim]prompts: {report['source']}[/]", highlight=False)


def _embedder(llm_file: dict[str, Any]):
    """(embed function, '') with rag.embedder's model when it reads Chinese (the default multilingual-e5-small
    does), else (None, why not). Replies and references are compared with each other, so both are embedded as
    queries: e5's model card prescribes "query: " on both sides of a similarity task (ChatHaruhi's protocol
    compares the two texts' embeddings)."""
    from rolechat import settings as rc
    from rolechat.rag.config import RAGConfig
    from rolechat.rag.embedder import shared_embedder
    from rolechat.rag.embedder_spec import resolve_spec

    rag_cfg = rc.build(RAGConfig, "rag", llm_file, {})
    try:
        emb = shared_embedder(resolve_spec(rag_cfg.embedder, rag_cfg.embedder_backend), rag_cfg.batch_size)
        share = emb.known_share("今天的天气很好，我们一起去公园散步，顺便买一些水果。")
    except rc.ConfigError as exc:
        return None, str(exc)
    if share < 0.9:
        return None, (
            f"rag.embedder {emb.name} reads only {share:.0%} of Chinese tokens (the rest are unknown); "
            "use the default multilingual-e5-small or another Chinese embedder"
        )
    return (lambda texts: emb.embed_queries(texts).tolist()), ""


def run_persona_eval(
    persona: str,
    data: Path | None = None,
    *,
    max_new_tokens: int = 96,
    limit: int = 0,
    judge: str | None = None,
    train_judge: bool = False,
    catchphrase: str | None = None,
    save: bool = True,
    json_out: bool = False,
    llm_overrides: dict[str, Any] | None = None,
    emit: bool = True,
) -> dict[str, Any]:
    """The body of `rolechat eval-persona` (and of `rolechat train --eval-persona`): prints the report (a table, or
    JSON with `json_out`) unless `emit` is False, and returns it."""
    from rolechat.finetune.persona_eval import evaluate_persona

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg, llm_cfg = build("classify", {}), build("llm", llm_overrides or {})
    rt, manifest, entry = _load_persona(persona, llm_cfg)
    items, dataset, held, source = _eval_prompts(manifest, entry, data)
    if limit:
        items = items[:limit]
    clf, judge_skip = _judge(persona, judge, train_judge, dataset, held, cfg, llm_cfg)
    if catchphrase is None and dataset is not None:  # the habit of all its training replies, not just the held-out
        from rolechat.finetune.persona_eval import detect_catchphrase

        catchphrase = detect_catchphrase(
            [m["content"] for c in dataset.conversations for m in c.messages if m["role"] == "assistant"]
        )
    embed, embed_skip = _embedder(file_data())
    with err_console.status("generating…") as status:
        report = evaluate_persona(
            rt,
            persona,
            items,
            max_new_tokens=max_new_tokens,
            judge=clf,
            judge_skip=judge_skip,
            embed=embed,
            embed_skip=embed_skip,
            catchphrase=catchphrase,
            source=source,
            on_reply=lambda done, total: status.update(f"generating… {done}/{total}"),
        )
    if save:
        report["saved"] = _save_summary(report, manifest, entry)
    if emit:
        _emit_report(report, json_out)
    return report


def _load_persona(persona: str, llm_cfg: Any) -> tuple[Any, Any, Any]:
    """(runtime, manifest, folder entry) of the persona to evaluate; the base model is refused."""
    from rolechat.llm.loader import LoadError
    from rolechat.llm.personas import PersonaError
    from rolechat.llm.runtime import load_runtime

    try:
        with err_console.status("loading the model…"):
            rt = load_runtime(llm_cfg)
        manifest = rt.manifest(persona)
    except (LoadError, PersonaError) as exc:
        fail(str(exc))
    if manifest is None:
        fail("pick a persona to evaluate, not the base model")
    return rt, manifest, next(e for e in rt.personas() if e.name == persona)


def _eval_prompts(manifest: Any, entry: Any, data: Path | None) -> tuple[list, Any, set, str]:
    """(prompts, the persona's training data or None, its held-out records, where the prompts come from):
    `data` when given, else the held-out split of the data the persona was trained on."""
    from rolechat.finetune.data import DataError, load_dataset
    from rolechat.finetune.persona_eval import EvalError, held_out_items, items_from

    items, source = [], ""
    try:
        items, dataset, held = held_out_items(manifest, entry.path)
        source = f"held-out split of {dataset.path} ({len(items)} prompts)"
    except (EvalError, DataError) as exc:
        if data is None:
            fail(str(exc))
        dataset, held = None, set()
    if data is not None:
        try:
            user_data = load_dataset(data)
        except DataError as exc:
            fail(str(exc))
        items, source = items_from(user_data), f"{data} ({len(user_data.conversations)} prompts)"
    return items, dataset, held, source


def _judge(persona: str, judge: str | None, train_judge: bool, dataset, held, cfg, llm_cfg) -> tuple[Any, str]:
    """(the character judge classifier or None, why it is skipped): `judge`, else PERSONA-judge, trained
    first with `train_judge`. A missing default judge only skips the score; a named one is an error."""
    from rolechat.finetune.classifier import Classifier, ClassifierError
    from rolechat.finetune.data import DataError
    from rolechat.finetune.model import TrainError
    from rolechat.finetune.persona_eval import EvalError, judge_name
    from rolechat.finetune.persona_eval import train_judge as fit_judge
    from rolechat.llm.loader import LoadError

    judge_ref = judge or judge_name(persona)
    try:
        if train_judge:
            if dataset is None:
                fail("--train-judge needs the persona's training data, which was not found")
            err_console.print(f"training the character judge {judge_name(persona)}…", highlight=False)
            fit_judge(persona, dataset, held, cfg, llm_cfg)
            judge_ref = judge_name(persona)
        return Classifier.load(judge_ref, device=llm_cfg.device), ""
    except ClassifierError as exc:
        if judge or train_judge:
            fail(str(exc))
        return None, f"no judge classifier {judge_ref!r} (train one with --train-judge)"
    except (EvalError, DataError, TrainError, LoadError) as exc:
        fail(str(exc))


def _save_summary(report: dict[str, Any], manifest: Any, entry: Any) -> str:
    """Keep the report's summary in the persona's manifest; says where, or why not."""
    from rolechat.finetune.persona_eval import summarize
    from rolechat.llm.demo import SAMPLE_PERSONAS_DIR

    if entry.path.resolve().parent == SAMPLE_PERSONAS_DIR.resolve():
        return "not saved: the shipped sample persona is read-only"
    manifest.evaluation = summarize(report)
    try:
        manifest.save(entry.path)
    except OSError as exc:
        return f"not saved: {exc}"
    return str(entry.path / "persona.json")


def _emit_report(report: dict[str, Any], json_out: bool) -> None:
    if json_out:
        console.print_json(json.dumps(report, ensure_ascii=False))
        return
    _eval_table(report)
    if report.get("saved"):
        console.print(f"[dim]summary: {report['saved']}[/]", highlight=False)


_DATA = typer.Option(None, "--data", "-d", help="CSV / TSV / JSONL with text and label columns.")
_NAME = typer.Option(..., "--name", "-n", help="Classifier (folder) name.")
_OUT = typer.Option(None, "--out", help="Folder (default: $ROLECHAT_HOME/classifiers/NAME).")
_DESCRIPTION = typer.Option("", "--description", help="One line about the classifier.")
_RESUME = typer.Option(False, "--resume", help="Continue the interrupted run from its last checkpoint.")
_OVERWRITE = typer.Option(False, "--overwrite", help="Replace an existing classifier / stale checkpoints.")


@config_flags("classify")
def train_classifier_cmd(
    data: Path | None = _DATA,
    name: str = _NAME,
    out: Path | None = _OUT,
    description: str = _DESCRIPTION,
    resume: bool = _RESUME,
    overwrite: bool = _OVERWRITE,
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    config: Overrides | None = None,
) -> None:
    """Train a text classifier (LoRA + classification head): accuracy and macro-F1 before and after."""
    run_classifier_training(
        data,
        name,
        (config or {}).get("classify", {}),
        out=out,
        description=description,
        resume=resume,
        overwrite=overwrite,
        json_out=json_out,
    )


def classify(
    texts: list[str] | None = typer.Argument(None, help="Texts to classify ('-' or none: read stdin)."),
    adapter: str | None = typer.Option(None, "--adapter", "-a", help="Classifier name (or folder)."),
    file: Path | None = typer.Option(None, "--file", "-f", help="Texts: one per line, or a CSV/TSV/JSONL text column."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Texts per forward pass."),
    list_all: bool = typer.Option(False, "--list", help="List the classifiers and exit."),
    json_out: bool = typer.Option(False, "--json", help="JSON lines: label, score and every label's probability."),
) -> None:
    """Classify texts with a trained classifier adapter."""
    from rolechat.finetune.classifier import Classifier, ClassifierError
    from rolechat.llm.loader import LoadError

    if list_all:
        _list_classifiers(json_out)
        return
    if not adapter:
        fail("--adapter NAME is required (rolechat classify --list shows them)")
    cfg, llm_cfg = _configs()
    items = _texts(texts or [], file, cfg.text_column)
    if not items:
        fail("no texts to classify")
    try:
        clf = Classifier.load(adapter, device=llm_cfg.device, trust_remote_code=llm_cfg.trust_remote_code)
    except (ClassifierError, LoadError) as exc:
        fail(str(exc))
    preds = clf.predict(items, batch_size=batch_size)
    if json_out:
        for text, p in zip(items, preds):
            probs = {k: round(v, 6) for k, v in p.probabilities.items()}
            row = {"text": text, "label": p.label, "score": round(p.score, 6), "probabilities": probs}
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    for text, p in zip(items, preds):
        short = text if len(text) <= 60 else text[:59] + "…"
        console.print(f"[bold]{p.label}[/] {p.score:.3f}  {short}", highlight=False)


def _list_classifiers(json_out: bool) -> None:
    """`rolechat classify --list`: every classifier folder, broken ones with the reason."""
    from rolechat.finetune.classifier import discover_classifiers

    entries = discover_classifiers()
    if json_out:
        rows = [
            {
                "name": e.name,
                "path": str(e.path),
                "ok": e.ok,
                "error": e.error,
                "labels": e.manifest.labels if e.manifest else [],
                "accuracy": e.manifest.metrics.get("accuracy_after") if e.manifest else None,
            }
            for e in entries
        ]
        console.print_json(json.dumps(rows, ensure_ascii=False))
        return
    for e in entries:
        if e.ok:
            acc = (e.manifest.metrics or {}).get("accuracy_after")
            labels = ", ".join(e.manifest.labels)
            console.print(f"{e.name}  labels: {labels}  accuracy {_fmt(acc)}", highlight=False)
        else:
            console.print(f"[red]{e.name}[/]  {e.error}", highlight=False)
    if not entries:
        console.print("no classifiers yet: rolechat train-classifier --data FILE --name NAME")


def eval_persona(
    persona: str = typer.Option(..., "--persona", "-p", help="Persona to evaluate."),
    data: Path | None = typer.Option(
        None, "--data", "-d", help="Prompts with reference replies (default: the persona's held-out split)."
    ),
    max_new_tokens: int = typer.Option(96, "--max-new-tokens", min=1, help="Length limit of each reply."),
    limit: int = typer.Option(0, "--limit", min=0, help="Evaluate at most N prompts (0 = all)."),
    judge: str | None = typer.Option(None, "--judge", help="Character judge classifier (default: PERSONA-judge)."),
    train_judge: bool = typer.Option(
        False, "--train-judge", help="Train the judge first: the persona's replies vs the lines spoken to it."
    ),
    catchphrase: str | None = typer.Option(
        None, "--catchphrase", help="Ending to count (default: found in the reference replies)."
    ),
    save: bool = typer.Option(True, "--save/--no-save", help="Save a summary into the persona's manifest."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Does the persona speak like its character? Persona vs base model on held-out prompts."""
    run_persona_eval(
        persona,
        data,
        max_new_tokens=max_new_tokens,
        limit=limit,
        judge=judge,
        train_judge=train_judge,
        catchphrase=catchphrase,
        save=save,
        json_out=json_out,
    )


def register(app: typer.Typer) -> None:
    app.command("train-classifier")(train_classifier_cmd)
    app.command()(classify)
    app.command("eval-persona")(eval_persona)
