"""Retrieval evaluation: hit@1/5/10, MRR@10 and latency, for dense, BM25 and hybrid side by side.

QA files: SQuAD-style JSON ({"data": [{"paragraphs": [{"context", "qas": [{"question", "answers"}]}]}]})
or JSONL with `question` plus `answer` (a string or list of strings) and/or `source` (a file name or
path suffix). Index a SQuAD-style file itself to evaluate on it: its paragraphs are the documents. A hit
is a retrieved chunk that contains an answer text or comes from the named source.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rolechat.rag.loaders import squad_paragraphs as parse_paragraphs

__all__ = ["QAItem", "QASet", "load_qa", "squad_paragraphs", "evaluate", "ModeResult"]


@dataclass
class QAItem:
    question: str
    answers: list[str] = field(default_factory=list)
    source: str = ""


class QASet(list):
    """The questions of a QA file (a list of `QAItem`), and how many were left out: unanswerable ones (no
    answer text, SQuAD 2.0) and blank ones (cmrc2018's trial set has a question that is an empty string)."""

    unanswerable: int = 0
    blank: int = 0


def _answer_texts(value) -> list[str]:
    """ "a", ["a", "b"], {"text": "a"} or [{"text": "a"}, ...] (SQuAD's form) -> unique non-empty texts."""
    values = value if isinstance(value, list) else [value]
    texts = [v.get("text", "") if isinstance(v, dict) else v for v in values if v is not None]
    return list(dict.fromkeys(str(t).strip() for t in texts if str(t).strip()))


def load_qa(path: Path) -> QASet:
    """Questions from a SQuAD-style JSON file (SQuAD 1/2, CMRC 2018, DRCD, ...) or a JSONL file. SQuAD 2.0's
    unanswerable questions (no answer text) cannot be scored by hits, and blank questions cannot be asked: both
    are left out, and counted."""
    text = Path(path).read_text(encoding="utf-8-sig")
    stripped = text.lstrip()
    items = QASet()
    if stripped.startswith("{") and '"data"' in stripped[:2000]:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
        articles = data.get("data")
        if not isinstance(articles, list):
            raise ValueError(f"{path}: 'data' must be a list of articles")
        for a, article in enumerate(articles):
            for p, para in enumerate(article.get("paragraphs", []) if isinstance(article, dict) else []):
                for q, qa in enumerate(para.get("qas", []) if isinstance(para, dict) else []):
                    where = f"{path}: data[{a}].paragraphs[{p}].qas[{q}]"
                    if not isinstance(qa, dict) or not isinstance(qa.get("question"), str):
                        raise ValueError(f"{where}: needs a 'question'")
                    answers = _answer_texts(qa.get("answers", []))
                    if not qa["question"].strip():
                        items.blank += 1
                        continue
                    if not answers:
                        items.unanswerable += 1
                        continue
                    items.append(QAItem(qa["question"].strip(), answers))
        return items
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: line {number}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not row.get("question"):
            raise ValueError(f"{path}: line {number}: needs a 'question' field")
        answers = _answer_texts(row.get("answer", row.get("answers", [])))
        if not answers and not row.get("source"):
            raise ValueError(f"{path}: line {number}: needs 'answer' and/or 'source'")
        items.append(QAItem(row["question"], answers, row.get("source", "")))
    return items


def squad_paragraphs(path: Path) -> list[str]:
    """The paragraphs of a SQuAD-style file (to index them as documents), as `rolechat index` reads them."""
    found = parse_paragraphs(json.loads(Path(path).read_text(encoding="utf-8-sig")))
    if found is None:
        raise ValueError(f"{path}: not a SQuAD-style file")
    return [text for text, _, _ in found]


@dataclass
class ModeResult:
    mode: str
    questions: int
    hit_at_1: float
    hit_at_5: float
    hit_at_10: float
    mrr_at_10: float
    p50_ms: float
    p95_ms: float
    hit_at_k: float = 0.0
    k: int = 5
    cpu_ms: float = 0.0  # mean CPU time per question: unlike wall time, barely moved by other jobs on the machine

    def to_dict(self) -> dict:
        return asdict(self)


def _is_hit(doc, item: QAItem) -> bool:
    text = doc.page_content
    if item.answers and any(a in text for a in item.answers):
        return True
    source = doc.metadata.get("source", "")
    return bool(item.source) and (
        source == item.source or source.endswith("/" + item.source.lstrip("/")) or Path(source).name == item.source
    )


def evaluate(
    kb, items: list[QAItem], modes=("dense", "bm25", "hybrid"), k: int = 5, extra: dict | None = None
) -> list[ModeResult]:
    """Score each mode (and each extra {label: retriever}, which should return at least 10 documents)."""
    depth = max(10, k)
    results = []
    candidates = [(mode, kb.retriever(mode, depth)) for mode in modes] + list((extra or {}).items())
    for mode, retriever in candidates:
        retriever.invoke(items[0].question if items else "warm up")  # load models/indexes outside the timing
        ranks, latencies = [], []
        cpu_start = time.process_time()
        for item in items:
            start = time.perf_counter()
            docs = retriever.invoke(item.question)
            latencies.append((time.perf_counter() - start) * 1000)
            ranks.append(next((i for i, d in enumerate(docs[:depth], 1) if _is_hit(d, item)), None))
        n = max(len(items), 1)
        cpu_ms = round((time.process_time() - cpu_start) * 1000 / n, 2)

        def hit(at: int, ranks: list[int | None] = ranks, n: int = n) -> float:
            return round(sum(1 for r in ranks if r is not None and r <= at) / n, 4)

        lat = sorted(latencies) or [0.0]
        results.append(
            ModeResult(
                mode,
                len(items),
                hit(1),
                hit(5),
                hit(10),
                round(sum(1 / r for r in ranks if r is not None and r <= 10) / n, 4),
                round(statistics.median(lat), 2),
                round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 2),
                hit(k),
                k,
                cpu_ms,
            )
        )
    return results
