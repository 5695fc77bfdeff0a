"""Knowledge-base commands: `index`, `kb list|show|delete|reembed`, `search`, `eval-retrieval`, `ask`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from rolechat.cli.chat import SHOW_PROMPT_OPTION, USER_DESCRIPTION_OPTION, USER_NAME_OPTION
from rolechat.cli.common import build, console, err_console, fail, print_parts
from rolechat.cli.options import Overrides, config_flags

kb_app = typer.Typer(help="List, inspect and delete knowledge bases.", no_args_is_help=True)

KB_OPTION = typer.Option(..., "--kb", help="Knowledge base name (Chinese names are fine).")
JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON.")


def _config(overrides: dict[str, Any] | None = None):
    return build("rag", overrides)


def _open(name: str, overrides: dict[str, Any] | None = None, must_exist: bool = True):
    from rolechat.rag import KnowledgeBase

    try:
        kb = KnowledgeBase(name, _config(overrides))
    except ValueError as exc:
        fail(str(exc))
    if must_exist and not kb.exists():
        from rolechat.rag import list_kbs

        known = ", ".join(list_kbs()) or "none yet"
        fail(f"no knowledge base named {name!r} (known: {known}); create it with `rolechat index PATH --kb {name}`")
    return kb


def _print_json(data: Any) -> None:
    console.print_json(json.dumps(data, ensure_ascii=False, default=str))


def _progress_bar():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}", style="dim"),
        console=err_console,
        transient=True,
    )


def _print_report(report) -> None:
    from rich.table import Table

    s = report.summary()
    if report.rebuilt:
        err_console.print(f"[yellow]{report.rebuilt}[/]", highlight=False)
    if report.reread:
        err_console.print(f"[yellow]{report.reread}[/]", highlight=False)
    if report.repaired:
        err_console.print(f"[yellow]repaired: removed {report.repaired} records left by an interrupted run[/]")
    console.print(
        f"[bold]{report.kb}[/]: {s['indexed']} indexed, {s['updated']} updated, {s['unchanged']} unchanged, "
        f"{s['removed']} removed, {s['skipped']} skipped, {s['failed']} failed · chunks +{report.chunks_added} "
        f"-{report.chunks_removed} ({report.chunks_embedded} embedded, {report.chunks_total} total) · "
        f"{report.seconds:.1f} s",
        highlight=False,
    )
    problems = [f for f in report.files if f.status in ("skipped", "failed")]
    if problems:
        table = Table("status", "file", "reason", title="not indexed")
        for f in problems:
            table.add_row(f.status, f.path, f.reason)
        console.print(table)
    encodings = sorted({f.encoding for f in report.files if f.encoding and f.status in ("indexed", "updated")})
    if encodings:
        console.print(f"encodings: {', '.join(encodings)}", highlight=False)


@config_flags("rag")
def index(
    paths: list[Path] = typer.Argument(..., help="Files and folders to index (folders recursively)."),
    kb: str = KB_OPTION,
    as_json: bool = JSON_OPTION,
    config: Overrides | None = None,
) -> None:
    """Index files and folders into a knowledge base: incremental, safe to interrupt and re-run."""
    from rolechat.rag import Progress

    base = _open(kb, config["rag"], must_exist=False)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        fail(f"no such file or folder: {', '.join(missing)}")
    with _progress_bar() as bar:
        files = bar.add_task("scanning", total=None, detail="")
        embed = bar.add_task("embedding", total=None, detail="", visible=False)

        def on_progress(p: Progress) -> None:
            if p.phase == "scan":
                bar.update(files, total=p.total, completed=p.done, detail=Path(p.detail).name)
            elif p.phase == "embed":
                bar.update(embed, visible=True, total=p.total, completed=p.done)
            elif p.phase == "done":
                bar.update(files, completed=p.total)

        try:
            report = base.index(paths, progress=on_progress)
        except ValueError as exc:
            fail(str(exc))
    if as_json:
        _print_json(report.to_dict())
    else:
        _print_report(report)


@kb_app.command("list")
@config_flags("rag")
def kb_list(as_json: bool = JSON_OPTION, config: Overrides | None = None) -> None:
    """List knowledge bases with their document and chunk counts."""
    from rolechat.rag import KnowledgeBase, list_kbs

    cfg = _config(config["rag"])
    rows = []
    for name in list_kbs():
        base = KnowledgeBase(name, cfg, embeddings=False)
        rows.append(
            {
                "name": name,
                "documents": len(base.documents()),
                "chunks": base.chunk_count(),
                "embedder": base.embedder_info()["name"],
            }
        )
        base.close()
    if as_json:
        _print_json(rows)
        return
    if not rows:
        console.print("no knowledge bases yet; create one with `rolechat index PATH --kb NAME`")
    for row in rows:
        console.print(
            f"{row['name']}\t{row['documents']} documents\t{row['chunks']} chunks\t{row['embedder']}", highlight=False
        )


@kb_app.command("show")
@config_flags("rag")
def kb_show(
    name: str = typer.Argument(..., help="Knowledge base name."),
    as_json: bool = JSON_OPTION,
    config: Overrides | None = None,
) -> None:
    """Show a knowledge base's settings and documents (chunk counts, encodings)."""
    from rich.table import Table

    base = _open(name, config["rag"])
    base._embeddings = False  # reading only: never load the embedder
    docs = base.documents()
    data = {
        "name": name,
        "path": str(base.path),
        "embedder": base.embedder_info(),
        "settings": base.stored_settings(),
        "chunks": base.chunk_count(),
        "documents": [d.__dict__ for d in docs],
    }
    if as_json:
        _print_json(data)
        return
    console.print(f"[bold]{name}[/] · {len(docs)} documents · {data['chunks']} chunks · {base.path}", highlight=False)
    emb = data["embedder"]
    console.print(
        f"  embedder: {emb.get('label') or emb['name']} · {emb['dimension'] or '?'} dimensions · prefixes: "
        f"{emb['prefix'] or 'none'}",
        highlight=False,
    )
    for key, value in data["settings"].items():
        console.print(f"  {key}: {value}", highlight=False)
    table = Table("document", "type", "encoding", "chunks")
    for d in docs:
        table.add_row(d.path, d.kind, d.encoding, str(d.chunks))
    console.print(table)


@kb_app.command("delete")
@config_flags("rag")
def kb_delete(
    name: str = typer.Argument(..., help="Knowledge base name."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    config: Overrides | None = None,
) -> None:
    """Delete a knowledge base (its index only; your documents are untouched)."""
    from rolechat.rag import delete_kb

    _open(name, config["rag"])
    if not yes and not typer.confirm(f"delete knowledge base {name!r}?"):
        raise typer.Exit(1)
    delete_kb(name, _config(config["rag"]))
    console.print(f"deleted {name}", highlight=False)


@kb_app.command("reembed")
@config_flags("rag")
def kb_reembed(
    name: str = typer.Argument(..., help="Knowledge base name."),
    as_json: bool = JSON_OPTION,
    config: Overrides | None = None,
) -> None:
    """Embed a knowledge base again with another embedder (--embedder, --embedder-backend; default: the default
    embedder). No file is read or split again; safe to interrupt and re-run."""
    from rolechat.rag import Progress
    from rolechat.rag.embedder_spec import resolve_spec

    base = _open(name, config["rag"])
    try:
        spec = resolve_spec(base.cfg.embedder, base.cfg.embedder_backend)
    except ValueError as exc:
        fail(str(exc))
    recorded = base.recorded_embedder()
    if recorded is not None and recorded.same_vectors(spec):
        console.print(f"{name} is already embedded with {spec.label}", highlight=False)
        return
    with _progress_bar() as bar:
        task = bar.add_task("embedding", total=None, detail=spec.label)

        def on_progress(p: Progress) -> None:
            bar.update(task, total=p.total, completed=p.done)

        try:
            report = base.reembed(spec, progress=on_progress)
        except ValueError as exc:
            fail(str(exc))
    if as_json:
        _print_json(report.to_dict())
        return
    console.print(
        f"[bold]{name}[/]: {report.before} -> {report.after} · {report.chunks} chunks ({report.embedded} embedded "
        f"now) · {report.seconds:.1f} s",
        highlight=False,
    )
    if report.truncated:
        err_console.print(
            f"[yellow]{report.truncated} chunks are longer than the new embedder reads; their ends are not "
            "embedded (index again with a smaller rag.chunk_size to split them)[/]",
            highlight=False,
        )


def _hit_dict(doc) -> dict:
    m = doc.metadata
    return {
        "rank": m.get("rank"),
        "score": m.get("score"),
        "found_by": m.get("found_by"),
        "source": m.get("source"),
        "location": m.get("location"),
        "headings": m.get("headings"),
        "text": doc.page_content,
    }


@config_flags("rag", aliases={"rag.k": ["-k"]})
def search(
    query: str = typer.Argument(..., help="What to look for."),
    kb: str = KB_OPTION,
    as_json: bool = JSON_OPTION,
    config: Overrides | None = None,
) -> None:
    """Show the chunks a question retrieves: source file, location, score and which retriever found them."""
    base = _open(kb, config["rag"])
    try:
        docs = base.search(query, k=base.cfg.k, mode=base.cfg.mode)
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        _print_json([_hit_dict(d) for d in docs])
        return
    if not docs:
        console.print("nothing relevant found")
    for d in docs:
        h = _hit_dict(d)
        console.print(
            f"[bold]{h['rank']}.[/] {h['source']} ({h['location']}) · score {h['score']} · {h['found_by']}",
            highlight=False,
        )
        text = " ".join(d.page_content.split())
        console.print(f"   {text[:200]}{'…' if len(text) > 200 else ''}", highlight=False, markup=False)


@config_flags("rag")
def eval_retrieval(
    kb: str = KB_OPTION,
    qa: Path = typer.Option(..., "--qa", help="SQuAD-style JSON or JSONL with question + answer and/or source."),
    k: int = typer.Option(5, "-k", help="Also report hit@k for this k."),
    as_json: bool = JSON_OPTION,
    config: Overrides | None = None,
) -> None:
    """Score dense, BM25 and hybrid retrieval on a QA file: hit@1/5/10, MRR@10, latency p50/p95."""
    from rolechat.rag.evaluation import evaluate, load_qa

    base = _open(kb, config["rag"])
    if not qa.is_file():
        fail(f"QA file not found: {qa}")
    try:
        items = load_qa(qa)
    except ValueError as exc:
        fail(str(exc))
    if not items:
        fail(f"{qa} has no answerable questions" if items.unanswerable or items.blank else f"{qa} has no questions")
    try:
        results = evaluate(base, items, k=k)
    except ValueError as exc:  # the knowledge base's embedder is not the configured one, a bad setting
        fail(str(exc))
    if as_json:
        _print_json(
            {
                "kb": kb,
                "qa": str(qa),
                "questions": len(items),
                "left_out": {"unanswerable": items.unanswerable, "blank": items.blank},
                "results": [r.to_dict() for r in results],
            }
        )
        return
    if items.unanswerable or items.blank:
        err_console.print(
            f"left out: {items.unanswerable} unanswerable questions (no answer text), {items.blank} blank questions",
            highlight=False,
        )
    from rich.table import Table

    table = Table(
        "mode",
        "hit@1",
        "hit@5",
        "hit@10",
        f"hit@{k}",
        "MRR@10",
        "p50 ms",
        "p95 ms",
        title=f"{kb}: {len(items)} questions from {qa.name}",
    )
    for r in results:
        table.add_row(
            r.mode,
            f"{r.hit_at_1:.3f}",
            f"{r.hit_at_5:.3f}",
            f"{r.hit_at_10:.3f}",
            f"{r.hit_at_k:.3f}",
            f"{r.mrr_at_10:.3f}",
            f"{r.p50_ms:.1f}",
            f"{r.p95_ms:.1f}",
        )
    console.print(table)


@config_flags("llm", "rag", "chat", aliases={"rag.k": ["-k"]})
def ask(
    question: str = typer.Argument(..., help="The question."),
    kb: str = KB_OPTION,
    persona: str | None = typer.Option(None, "--persona", "-p", help="Answer in this persona's voice."),
    user_name: str = USER_NAME_OPTION,
    user_description: str = USER_DESCRIPTION_OPTION,
    show_prompt: bool = SHOW_PROMPT_OPTION,
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print one JSON object: question, answer, mode (extract or generate), grounded (false when nothing in "
        "the knowledge base answers), confidence (extract), sources (file, location, score).",
    ),
    config: Overrides | None = None,
) -> None:
    """Answer a question from a knowledge base: streams the answer, then lists the sources it cites.

    rag.answer_mode picks how: generate (the model writes it), extract (the passages' best sentences, quoted) or
    auto (extract on the demo model and on models marked llm.too_small); the answer says which."""
    from rolechat.cli.chat import demo_hint, engine_or_fail, load_runtime_or_fail, user_persona

    base = _open(kb, config["rag"])  # an unknown knowledge base fails here, before the model loads
    base.close()
    rt = load_runtime_or_fail(config["llm"])
    demo_hint(rt.info)
    from rolechat.conversation.session import Session

    engine = engine_or_fail(rt, base.cfg, config["chat"])
    session = Session(engine, persona=persona, user=user_persona(user_name, user_description), knowledge_base=kb)
    session.say(question)
    try:
        reply = session.reply()
        turn = reply.turn
    except ValueError as exc:  # an unknown or broken persona, a bad mode, a prompt that cannot fit
        fail(str(exc))
    if show_prompt:
        print_parts(turn)
    if as_json:
        text = reply.stream.join()
        engine.close()
        _print_json(
            {
                "question": question,
                "kb": kb,
                "persona": persona or "base",
                "answer": text,
                "mode": turn.answer_mode,
                "grounded": engine.grounded(turn, text),
                "confidence": turn.confidence,
                "sources": [
                    {k: row[k] for k in ("n", "file", "source", "location", "score", "found_by")}
                    for row in turn.sources or []
                ],
            }
        )
        return
    for piece in reply.stream:
        console.print(piece, end="", markup=False, highlight=False, soft_wrap=True)
    console.print()
    engine.close()
    err_console.print(f"answer mode: {turn.answer_mode} (rag.answer_mode = {base.cfg.answer_mode})", highlight=False)
    if turn.sources:
        console.print("[bold]sources[/]")
        for row in turn.sources:
            console.print(f"  [{row['n']}] {row['source']} ({row['location']})", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("index")(index)
    app.command("search")(search)
    app.command("eval-retrieval")(eval_retrieval)
    app.command("ask")(ask)
    app.add_typer(kb_app, name="kb")
