"""Extractive answers (`rag.answer_mode = extract`): calibrate the confidence threshold on cmrc2018, then check
the answers on question sets written for it.

    .venv/bin/python bench/bench_extract.py calibrate [--questions 200]    # needs ../shared/data/cmrc2018_trial.json
    .venv/bin/python bench/bench_extract.py check [--show]                  # the demo model, default settings

calibrate: the first half of cmrc2018's articles is indexed into a throw-away knowledge base (default settings,
the default embedder); questions about those articles are answerable (an answer is right when the quoted
sentences hold a gold answer text), questions about the other half are not (the knowledge base cannot answer
them: a right outcome is "no answer"). Every candidate sentence's scores are kept, so the weight of the dense
judge (DENSE_SHARE) and the threshold are chosen by grid search on the even-numbered questions and reported
on the odd-numbered ones.

check: `knowledge/` and two documents of bench/data/extract_docs/ (written for this check: nothing of them is
in the demo model's training data) are indexed as the app does, and the questions of
bench/data/extract_questions_*.jsonl (written apart from the documents' own wording) are asked through
`rolechat.conversation.Engine` with the default settings (answer_mode auto, which is extract on the demo
model), greedy: (a) the sample knowledge base, (b) the unseen documents: share of replies holding a gold fact;
(c) questions no document answers: share with grounded false.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "bench" / "data"
CMRC = ROOT.parent / "shared" / "data" / "cmrc2018_trial.json"
CORPUS = ROOT / "llm" / "demo" / "corpus"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _home() -> None:
    os.environ["ROLECHAT_HOME"] = tempfile.mkdtemp(prefix="rolechat-bench-extract-")
    from rolechat.settings import set_offline_env

    set_offline_env()


def calibrate(args) -> None:
    if not CMRC.is_file():
        sys.exit(f"{CMRC} not found: calibration needs the cmrc2018 trial split")
    _home()
    from rolechat.rag import KnowledgeBase
    from rolechat.rag import extract as ex

    data = json.loads(CMRC.read_text(encoding="utf-8"))
    half = len(data["data"]) // 2
    indexed, other = data["data"][:half], data["data"][half:]
    folder = Path(tempfile.mkdtemp(prefix="cmrc-half-"))
    path = folder / "cmrc_half.json"
    path.write_text(json.dumps({"version": data.get("version", ""), "data": indexed}, ensure_ascii=False), "utf-8")
    kb = KnowledgeBase("cmrc-half")
    t0 = time.perf_counter()
    kb.index([str(path)])
    print(f"indexed {half} articles in {time.perf_counter() - t0:.0f} s")

    def questions(articles):
        return [
            (qa["question"], [a["text"] for a in qa["answers"]])
            for art in articles
            for para in art["paragraphs"]
            for qa in para["qas"]
        ]

    n = args.questions
    answerable, absent = questions(indexed)[:n], questions(other)[:n]
    # the demo benchmark's own questions (bench_demo_answers.py; not the check's): paraphrases about knowledge/
    # and unseen_docs/, and questions neither answers, each asked of its own knowledge base
    kbs = {"cmrc": kb}
    for name, folder in (("knowledge", ROOT / "knowledge"), ("unseen", DATA / "unseen_docs")):
        kbs[name] = KnowledgeBase(name)
        kbs[name].index([str(folder)])
    dev = [
        ("answerable", name, item["question"], item["gold"])
        for name in ("knowledge", "unseen")
        for item in read_jsonl(DATA / f"demo_questions_{name}.jsonl")
    ]
    dev += [("absent", item["kb"], item["question"], []) for item in read_jsonl(DATA / "demo_questions_absent.jsonl")]
    asked = [
        (label, "cmrc", q, gold)
        for label, items in (("answerable", answerable), ("absent", absent))
        for q, gold in items
    ]
    rows = []
    t0 = time.perf_counter()
    for label, name, question, gold in asked + [(la, na, q, g) for la, na, q, g in dev]:
        kb = kbs[name if name in kbs else "knowledge"]
        retriever = kb.retriever()
        if True:
            docs = retriever.invoke(question)
            for i, d in enumerate(docs, 1):
                d.metadata["citation"] = i
            ranked = ex.rank_sentences(question, docs, kb.embeddings, kb.bm25.idf)
            rows.append(
                {
                    "set": "cmrc" if name == "cmrc" else "demo",
                    "label": label,
                    "question": question,
                    "sentences": [
                        [s.cover, s.heading, s.dense, s.bm25, s.rank, any(g and g in s.text for g in gold)]
                        for s in ranked
                    ],
                }
            )
    per_q = (time.perf_counter() - t0) / max(len(rows), 1)
    print(f"{len(rows)} questions, {per_q * 1000:.0f} ms each (retrieval + ranking)")
    if args.dump:
        args.dump.write_text(json.dumps(rows, ensure_ascii=False) + "\n", encoding="utf-8")
    grid(rows)
    for kb in kbs.values():
        kb.close()


def outcome(row: dict, share: float, threshold: float, heading: float = 1.0, rank: float = 0.05) -> tuple[bool, bool]:
    """(grounded, right) of one question at these settings (the top sentence and a close second quoted), as
    `rag.extract` decides with DENSE_SHARE = share, HEADING_SHARE = heading, RANK_SHARE = rank."""
    from rolechat.rag.extract import BM25_SHARE, SECOND_RATIO

    scored = []
    for cover, head, dense, bm25, place, hit in row["sentences"]:
        confidence = share * dense + (1 - share) * (cover + heading * head)
        scored.append((confidence, confidence + BM25_SHARE * bm25 + rank / place, hit))
    scored.sort(key=lambda t: t[1], reverse=True)
    if not scored or scored[0][0] < threshold:
        return False, row["label"] == "absent"
    quoted = [scored[0]] + [s for s in scored[1:2] if s[1] >= SECOND_RATIO * scored[0][1] and s[0] >= threshold]
    return True, row["label"] == "answerable" and any(s[2] for s in quoted)


def score(rows: list[dict], share: float, threshold: float, heading: float = 1.0, rank: float = 0.05) -> dict:
    ans = [r for r in rows if r["label"] == "answerable"]
    absent = [r for r in rows if r["label"] == "absent"]
    a_right = sum(outcome(r, share, threshold, heading, rank)[1] for r in ans)
    a_grounded = sum(outcome(r, share, threshold, heading, rank)[0] for r in ans)
    b_right = sum(outcome(r, share, threshold, heading, rank)[1] for r in absent)
    return {
        "answerable_right": a_right / max(len(ans), 1),
        "answerable_grounded": a_grounded / max(len(ans), 1),
        "absent_not_grounded": b_right / max(len(absent), 1),
        "balanced": (a_right / max(len(ans), 1) + b_right / max(len(absent), 1)) / 2,
    }


def grid(rows: list[dict]) -> None:
    """Tune on the even-numbered cmrc2018 questions plus the demo benchmark's, report on the odd-numbered cmrc2018
    ones (and, for the record, each part)."""
    cmrc = [r for r in rows if r.get("set", "cmrc") == "cmrc"]
    demo = [r for r in rows if r.get("set") == "demo"]
    tune, held = cmrc[0::2] + demo, cmrc[1::2]
    best = None
    for share in (0.0, 0.25, 0.5, 0.75, 1.0):
        for heading in (0.5, 1.0):
            for rank in (0.0, 0.05, 0.2):
                for t in [x / 100 for x in range(20, 96, 2)]:
                    s = score(tune, share, t, heading, rank)
                    if best is None or s["balanced"] > best[0]["balanced"]:
                        best = (s, share, t, heading, rank)
    s, share, t, heading, rank = best
    print(
        f"tuned on {len(tune)} questions: DENSE_SHARE={share} HEADING_SHARE={heading} RANK_SHARE={rank} "
        f"threshold={t}: {s}"
    )
    print(f"held out {len(held)} questions at those settings: {score(held, share, t, heading, rank)}")
    from rolechat.rag import extract as ex

    defaults = (ex.DENSE_SHARE, ex.THRESHOLD, ex.HEADING_SHARE, ex.RANK_SHARE)
    print(f"shipped defaults {defaults}: tuned half {score(tune, *defaults[:2], *defaults[2:])}")
    print(f"shipped defaults {defaults}: held-out half {score(held, *defaults[:2], *defaults[2:])}")
    if demo:
        print(f"shipped defaults {defaults}: demo questions alone {score(demo, *defaults[:2], *defaults[2:])}")
        print(f"tuned settings: demo questions alone {score(demo, share, t, heading, rank)}")
    for share_ in (0.0, 0.5, 1.0):
        bests = max(((score(tune, share_, x / 100)["balanced"], x / 100) for x in range(30, 96, 2)), key=lambda p: p[0])
        print(f"  DENSE_SHARE={share_}: best tuned balanced {bests[0]:.3f} at {bests[1]}")


def check(args) -> None:
    sets = {name: read_jsonl(DATA / f"extract_questions_{name}.jsonl") for name in ("knowledge", "unseen", "absent")}
    corpus = "\n".join(p.read_text(encoding="utf-8") for p in sorted(CORPUS.glob("*")) if p.is_file())
    for doc in sorted((DATA / "extract_docs").iterdir()):
        for sentence in re.split(r"[。\n]", doc.read_text(encoding="utf-8")):
            sentence = sentence.strip("# ")
            if len(sentence) >= 8 and sentence in corpus:
                sys.exit(f"{doc.name}: sentence is in the demo training corpus: {sentence}")
    _home()
    from rolechat.conversation import Engine
    from rolechat.llm import LLMConfig, load_runtime
    from rolechat.rag import KnowledgeBase

    for name, folder in (("knowledge", ROOT / "knowledge"), ("unseen", DATA / "extract_docs")):
        kb = KnowledgeBase(name)
        kb.index([str(folder)])
        kb.close()
    runtime = load_runtime(LLMConfig())
    engine = Engine(runtime)
    results = {}
    for name, items in sets.items():
        out = []
        for item in items:
            t0 = time.perf_counter()
            turn, stream = engine.reply(
                item["question"], knowledge_base=item.get("kb", name), params={"temperature": 0, "max_new_tokens": 200}
            )
            text = stream.join()
            if name == "absent":
                ok = not turn.grounded
            else:
                ok = bool(turn.grounded) and any(g in text for g in item["gold"])
            out.append(
                {
                    "question": item["question"],
                    "reply": text,
                    "mode": turn.answer_mode,
                    "ok": ok,
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            )
            if args.show:
                print(f"{'ok ' if ok else '-- '}[{name}] {item['question']} -> {text!r}")
        results[name] = out
    for label, name in (
        ("(a) sample knowledge base, fact in the answer", "knowledge"),
        ("(b) unseen documents, fact in the answer", "unseen"),
        ("(c) no document answers, grounded false", "absent"),
    ):
        rs = results[name]
        ok = sum(r["ok"] for r in rs)
        print(f"{label}: {ok}/{len(rs)} = {ok / len(rs):.0%} (modes: {sorted({r['mode'] for r in rs})})")
    rows = [r for rs in results.values() for r in rs]
    print(f"seconds per answer: {sum(r['seconds'] for r in rows) / len(rows):.2f}")
    engine.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("calibrate")
    c.add_argument("--questions", type=int, default=200, help="questions of each kind (answerable, absent)")
    c.add_argument("--dump", type=Path, default=None, help="write every question's sentence scores here")
    c.add_argument("--rows", type=Path, default=None, help="grid-search a dump again instead of indexing")
    k = sub.add_parser("check")
    k.add_argument("--show", action="store_true")
    args = ap.parse_args()
    if args.cmd == "calibrate" and args.rows:
        grid(json.loads(args.rows.read_text(encoding="utf-8")))
    elif args.cmd == "calibrate":
        calibrate(args)
    else:
        check(args)


if __name__ == "__main__":
    main()
