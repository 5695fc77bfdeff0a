"""Ranking BM25's candidates with what the knowledge base keeps about each chunk: its heading path, its
sentences, and its place in its section.

BM25 scores a chunk on its own words. On cmrc2018 (docs/benchmarks.md) the answer-bearing chunk was among
the top five for 97% of the questions but first for only 89%, and 77 of the 114 misses at rank 1 were the
right section's wrong chunk: a neighbour repeating the subject's name and a common word of the question
outscored the chunk that states the fact. A section-level score cannot tell two chunks of one section
apart; what does is *which* of the question's words a chunk holds, and whether they occur together. Each
candidate's score becomes

    bm25 / best bm25  +  coverage_weight x coverage  +  sentence_weight x sentence coverage  +  lead_weight x opens

- coverage: the IDF-weighted share of the question's distinct terms the chunk contains (the coordination
  factor of Lucene's classic scoring): matching more of the question beats repeating some of it.
- sentence coverage: the same share for the chunk's best single sentence together with its heading path.
  A question paraphrases the sentence that answers it, often naming the subject only through the heading
  ("它位于…" under "南宁市第二中学"), so the chunk holding that sentence is the one to read first.
- opens: the chunk opens its section (a Markdown heading's section, a SQuAD paragraph, a PDF page, a table
  row, a JSONL record): definitions and summaries come first. A small tie-breaker among near-equals.

Sections are read off the manifest's existing columns (path, ord, headings, location and the file's kind), so
knowledge bases indexed before this ranking existed use it without being re-indexed.
"""

from __future__ import annotations

from dataclasses import dataclass

from rolechat.rag.manifest import ChunkRow
from rolechat.rag.splitting import sentences

__all__ = ["RankWeights", "rank", "opens_section", "LINE_KINDS"]

# Kinds read as one block whose chunks carry line (or paragraph) locations: their sections are their heading
# paths. Every other kind is read as separate blocks (pages, rows, records, paragraphs, cues): a block is a section.
LINE_KINDS = frozenset({"markdown", "text", "html", "docx"})


@dataclass(frozen=True)
class RankWeights:
    coverage: float = 1.0
    sentence: float = 2.0
    lead: float = 0.15

    def active(self) -> bool:
        return bool(self.coverage or self.sentence or self.lead)


def opens_section(row: ChunkRow, before: tuple[str, str] | None, kind: str) -> bool:
    """Whether `row` is the first chunk of its section, given the (headings, location) of the chunk before it."""
    if before is None:
        return True
    headings, location = before
    if headings != row.headings:
        return True
    return kind not in LINE_KINDS and location != row.location


def _body(row: ChunkRow) -> str:
    prefix = f"{row.headings}\n" if row.headings else ""
    return row.text[len(prefix) :] if prefix and row.text.startswith(prefix) else row.text


def rank(kb, terms: list[str], hits: list[tuple[str, float]], weights: RankWeights) -> list[tuple[str, float]]:
    """BM25 hits [(chunk_id, score)] for a question's BM25 `terms`, re-scored as the module docstring says, best
    first."""
    if not hits or not weights.active():
        return hits
    distinct = set(terms)
    idf = kb.bm25.idf(distinct)
    total = sum(idf.values()) or 1.0
    manifest = kb.manifest
    rows = {row.id: row for row in manifest.chunks([cid for cid, _ in hits])}
    before = manifest.predecessors(list(rows)) if weights.lead else {}
    kinds = {path: f.kind for path, f in manifest.files().items()} if weights.lead else {}
    top = max(score for _, score in hits) or 1.0
    scored = []
    for cid, score in hits:
        value = score / top
        row = rows.get(cid)
        if row is not None:
            # in the text (CJK characters, bigrams and words are substrings); Latin words must be whole tokens
            text = row.text.lower()
            present = [t for t in idf if t in text and (not t.isascii() or f" {t} " in f" {row.tokens} ")]
            value += weights.coverage * sum(idf[t] for t in present) / total
            if weights.sentence:
                heading = row.headings.lower()
                in_heading = sum(idf[t] for t in present if t in heading)
                rest = [t for t in present if t not in heading]
                best = 0.0
                for sentence in sentences(_body(row).lower()) if rest else ():
                    best = max(best, sum(idf[t] for t in rest if t in sentence))
                value += weights.sentence * (in_heading + best) / total
            if weights.lead and opens_section(row, before.get(cid), kinds.get(row.path, "")):
                value += weights.lead
        scored.append((cid, value))
    scored.sort(key=lambda pair: pair[1], reverse=True)
    return scored
