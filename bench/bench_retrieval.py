"""Retrieval quality and latency on a SQuAD-style QA file (default: ../shared/data/cmrc2018_trial.json).

Indexes the QA file itself into a fresh knowledge base, as `rolechat index FILE --kb NAME` does (its
paragraphs are the documents, under their article's title), then runs `rag.evaluation.evaluate` for dense,
BM25 and hybrid, as `rolechat eval-retrieval` does. `--paragraph-files` indexes every paragraph as a .txt
file of its own instead (no titles). Extra settings are RAGConfig fields:

    .venv/bin/python bench/bench_retrieval.py                      # defaults
    .venv/bin/python bench/bench_retrieval.py chunk_size=128 --variants 'coverage_power=1;fusion=rrf'
    .venv/bin/python bench/bench_retrieval.py --embedder-backend torch   # same, PyTorch runtime

`--variants` re-runs hybrid with other settings (HybridRetriever fields: coverage_power, fusion,
dense_weight, coverage_weight, sentence_weight, lead_weight, drop_question_words, ...; see rag/retrievers.py).
`--kb NAME` evaluates a knowledge base already indexed under $ROLECHAT_HOME instead (index once, then
compare rankings in seconds); `--half first|second` scores one half of the questions (tune on one, report
the other):

    ROLECHAT_HOME=/tmp/h rolechat index ../shared/data/cmrc2018_trial.json --kb cmrc
    ROLECHAT_HOME=/tmp/h .venv/bin/python bench/bench_retrieval.py --kb cmrc --modes hybrid \
        --variants 'coverage_weight=0,sentence_weight=0,lead_weight=0,drop_question_words=0'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_QA = ROOT.parent / "shared" / "data" / "cmrc2018_trial.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="*", help="RAGConfig overrides, key=value")
    parser.add_argument("--qa", type=Path, default=DEFAULT_QA)
    parser.add_argument(
        "--variants", default="", help="extra hybrid variants to compare, e.g. 'coverage_power=1;fusion=rrf'"
    )
    parser.add_argument("--embedder-backend", default=None)
    parser.add_argument(
        "--paragraph-files",
        action="store_true",
        help="index each paragraph as a .txt file of its own (no article titles)",
    )
    parser.add_argument("--kb", default="", help="evaluate this existing knowledge base (no indexing)")
    parser.add_argument("--modes", default="dense,bm25,hybrid", help="modes to score, comma-separated")
    parser.add_argument("--half", choices=("first", "second"), default=None, help="score one half of the questions")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.qa.is_file():
        sys.exit(f"QA file not found: {args.qa} (the shared data folder is absent)")

    home = os.environ.get("ROLECHAT_HOME", "") if args.kb else tempfile.mkdtemp(prefix="rolechat-bench-")
    if args.kb and not home:
        sys.exit("--kb needs ROLECHAT_HOME set to the home that holds the knowledge base")
    os.environ["ROLECHAT_HOME"] = home
    from rolechat.settings import set_offline_env

    set_offline_env()
    from rolechat.rag import KnowledgeBase, RAGConfig
    from rolechat.rag.evaluation import evaluate, load_qa, squad_paragraphs

    overrides = {}
    for item in args.settings:
        key, _, value = item.partition("=")
        field_type = type(getattr(RAGConfig(), key))
        overrides[key] = field_type(value)
    if args.embedder_backend:
        overrides["embedder_backend"] = args.embedder_backend
    cfg = RAGConfig(**overrides)

    paragraphs = [] if args.kb else squad_paragraphs(args.qa)  # --kb: any QA file (SQuAD-style or JSONL)
    source = args.qa
    if args.paragraph_files and not args.kb:
        source = Path(home) / "paragraphs"
        source.mkdir()
        for i, para in enumerate(paragraphs):
            (source / f"p{i:04d}.txt").write_text(para, encoding="utf-8")
    kb = KnowledgeBase(args.kb or "bench", cfg)
    start = time.perf_counter()
    if args.kb:
        if not kb.exists():
            sys.exit(f"no knowledge base {args.kb!r} under {home}")
        chunks = kb.chunk_count()
    else:
        chunks = kb.index([source]).chunks_total
    index_s = time.perf_counter() - start
    items = load_qa(args.qa)
    if args.half:
        middle = len(items) // 2
        kept = items[:middle] if args.half == "first" else items[middle:]
        kept_set = type(items)(kept)
        kept_set.unanswerable, kept_set.blank = items.unanswerable, items.blank
        items = kept_set
    depth = max(10, cfg.k)
    extra = {}
    for variant in filter(None, args.variants.split(";")):
        updates = {}
        for part in variant.split(","):
            key, _, value = part.partition("=")
            current = getattr(kb.retriever("hybrid", depth), key)
            if isinstance(current, bool):
                updates[key] = value.lower() in ("1", "true", "yes")
            else:
                updates[key] = value if isinstance(current, str) else float(value)
        extra[f"hybrid({variant})"] = kb.retriever("hybrid", depth).model_copy(update=updates)
    modes = tuple(m for m in args.modes.split(",") if m)
    results = [r.to_dict() for r in evaluate(kb, items, modes=modes, k=cfg.k, extra=extra)]
    out = {
        "qa": str(args.qa),
        "settings": overrides,
        "indexed": f"knowledge base {args.kb}" if args.kb else "paragraph files" if args.paragraph_files else "QA file",
        "half": args.half or "all",
        "documents": len(paragraphs),
        "questions": len(items),
        "left_out": {"unanswerable": items.unanswerable, "blank": items.blank},
        "chunks": chunks,
        "index_s": round(index_s, 1),
        "results": results,
    }
    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return
    print(
        f"{out['documents'] or '-'} paragraphs ({out['indexed']}) -> {out['chunks']} chunks, "
        f"indexed in {out['index_s']} s; "
        f"{out['questions']} questions ({out['half']}); settings "
        f"{overrides or 'defaults'}"
    )
    print(
        f"{'mode':24} {'hit@1':>6} {'hit@5':>6} {'hit@10':>6} {'MRR@10':>6} {'p50 ms':>7} {'p95 ms':>7} {'CPU ms':>7}"
    )
    for r in results:
        print(
            f"{r['mode']:24} {r['hit_at_1']:6.3f} {r['hit_at_5']:6.3f} {r['hit_at_10']:6.3f} {r['mrr_at_10']:6.3f} "
            f"{r['p50_ms']:7.1f} {r['p95_ms']:7.1f} {r['cpu_ms']:7.2f}"
        )


if __name__ == "__main__":
    main()
