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
- opens: the chunk opens its section (a Markdown heading's section, a SQuAD paragraph, a document without
  headings, a table row, a JSONL record): definitions and summaries come first. A small tie-breaker.

Sections are read off the manifest's existing columns (path, ord, headings, location and the file's kind), so
knowledge bases indexed before this ranking existed use it without being re-indexed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["RankWeights", "rank", "opens_section", "chunk_body", "LINE_KINDS"]

# Kinds whose sections are their heading paths (a file without headings is one section): Markdown, text, HTML
# and docx are read as one block with line locations, and a PDF page break is not a new topic. Every other kind
# is read as separate blocks (SQuAD paragraphs, rows, records, cues, JSON items): each block is a section.
LINE_KINDS = frozenset({"markdown", "text", "html", "docx", "pdf"})


@dataclass(frozen=True)
class RankWeights:
    coverage: float = 1.0
    sentence: float = 2.0
    lead: float = 0.15

    def active(self) -> bool:
        return bool(self.coverage or self.sentence or self.lead)


def opens_section(headings: str, location: str, before: tuple[str, str] | None, kind: str) -> bool:
    """Whether a chunk (its heading path and location) opens its section, given the (headings, location) of the
    chunk before it in its file (None for the file's first chunk)."""
    if before is None:
        return True
    if before[0] != headings:
        return True
    return kind not in LINE_KINDS and before[1] != location


# Sentence ends for ranking: cheaper than the splitter's rule (no look-arounds), and a sentence cut one
# character early or late matches the same terms.
_SENTENCE_END = re.compile(r"[。！？!?；;…\n]+|\. ")


def chunk_body(text: str, headings: str) -> str:
    """A chunk's text without the heading path the splitter writes on its first line."""
    prefix = f"{headings}\n" if headings else ""
    return text[len(prefix) :] if prefix and text.startswith(prefix) else text


def _best_sentence(body: str, terms: list[tuple[str, float]]) -> float:
    """The highest summed idf of `terms` found together in one sentence of `body`."""
    best = 0.0
    reachable = sum(w for _, w in terms)
    for sentence in _SENTENCE_END.split(body):
        if len(sentence) < 2:
            continue
        value = 0.0
        for term, weight in terms:
            if term in sentence:
                value += weight
        if value > best:
            best = value
            if best >= reachable:
                break
    return best


def rank(kb, terms: list[str], hits: list[tuple[str, float]], weights: RankWeights) -> list[tuple[str, float]]:
    """BM25 hits [(chunk_id, score)] for a question's BM25 `terms`, re-scored as the module docstring says, best
    first. `kb` provides `bm25` (idf), `manifest` (chunk rows) and `section_starts()`."""
    if not hits or not weights.active():
        return hits
    idf = kb.bm25.idf(set(terms))
    total = sum(idf.values()) or 1.0
    rows = {row.id: row for row in kb.manifest.chunks([cid for cid, _ in hits])}
    starts = kb.section_starts() if weights.lead else frozenset()
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
                rest = [(t, idf[t]) for t in present if t not in heading]
                best = _best_sentence(chunk_body(row.text, row.headings).lower(), rest) if rest else 0.0
                value += weights.sentence * (in_heading + best) / total
            if cid in starts:
                value += weights.lead
        scored.append((cid, value))
    scored.sort(key=lambda pair: pair[1], reverse=True)
    return scored
