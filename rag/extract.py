"""Extractive answers: the sentence(s) of the retrieved chunks that answer a question, quoted verbatim.

A model too small to copy facts out of passages (the built-in demo model) states wrong facts with confidence
when asked to answer from them. An extractive answer cannot invent anything: it quotes the sentences of the
retrieved chunks that best match the question, each with its citation number, or says plainly that the
knowledge base holds no answer (and shows the closest sources) when even the best sentence matches too little.

    found = extract("冲泡云雾毛尖的水温是多少？", docs, embeddings=kb.embeddings, idf=kb.bm25.idf)
    found.grounded, found.confidence, found.text     # text: the lead-in, then 「sentence」[n] lines

Each sentence of the chunks is scored against the question by two judges:

- dense: the cosine between the question's and the sentence's embeddings (the knowledge base's embedder,
  multilingual-e5-small by default, which reads Chinese);
- lexical: the IDF-weighted share of the question's terms (`lexical.query_terms`) the sentence holds, the
  chunk's heading path counting too (a question names its subject; the sentence under a heading often
  does not), plus BM25 over the candidate sentences.

The sentences are ranked by DENSE_RANK x dense + LEXICAL_RANK x lexical + BM25_SHARE x BM25 + RANK_SHARE / the chunk's
retrieval rank, and the best one is quoted with the next best of the same chunk (an answer often takes two
sentences, and a question reworded away from the text is often nearest to the sentence before the answer).

Whether to answer at all is `confidence` = DENSE_SHARE x the best sentence's cosine + (1 - DENSE_SHARE) x its
chunk's coverage (the IDF-weighted share of the question's terms found anywhere in the chunk, heading included):
below `threshold` the answer is "not in the knowledge base". The chunk's coverage, not the sentence's, because a
question asked in other words shares few terms with the answering sentence but names the subject its chunk is
about, while a question the documents do not answer names something (a 保质期, an owner) that no retrieved chunk
holds. The weights and the default threshold were calibrated on cmrc2018 with unanswerable questions plus the demo
benchmark's questions (docs/benchmarks.md, "Extractive answers"; bench/bench_extract.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rolechat.rag.lexical import bm25_scores, query_terms, tokenize
from rolechat.rag.ranking import chunk_body

__all__ = [
    "Extract",
    "Sentence",
    "extract",
    "rank_sentences",
    "split_sentences",
    "DENSE_SHARE",
    "THRESHOLD",
    "LEAD_IN",
    "NO_ANSWER",
]

DENSE_SHARE = 0.8  # weight of the sentence's cosine in `confidence`, the rest its chunk's coverage (calibrated)
THRESHOLD = 0.77  # default rag.extract_threshold (bench/bench_extract.py; docs/benchmarks.md says how it was set)
MAX_CANDIDATES = 16  # sentences embedded per question (the lexically best ones)
MIN_CHARS = 4  # shorter "sentences" (list markers, a lone heading word) are never an answer
TITLE_CHARS = 24  # a line this short without any punctuation is a title, not an answer
HEADING_SHARE = 1.0  # a question term found only in the heading path counts this much
DENSE_RANK = 0.75  # weight of the sentence's cosine in the ranking
LEXICAL_RANK = 0.25  # weight of the sentence's term share in the ranking (not in the confidence)
BM25_SHARE = 0.1  # weight of normalised sentence BM25 in the ranking (not in the confidence)
RANK_SHARE = 0.2  # weight of 1 / the chunk's retrieval rank in the ranking (not in the confidence)

LEAD_IN = "知识库原文摘录（抽取式回答，未经模型改写）："
NO_ANSWER = "知识库里没有找到这个问题的答案（抽取式回答）。最接近的资料："

_SENTENCE = re.compile(r"[^。！？!?；;\n]*(?:[。！？!?；;]+[”’」』）)]*|\n|$)")
_PUNCT = re.compile(r"[，。：；！？、,.:;!?]")
_MARKUP = re.compile(r"^\s*(?:#{1,6}\s+|[-*+>]\s+|\d{1,3}[.、)]\s*|\|)+")


@dataclass
class Sentence:
    """A candidate sentence: its text, the citation number of its chunk, and its scores."""

    text: str
    citation: int
    rank: int = 1  # its chunk's place in the retrieved list (1 = best)
    cover: float = 0.0  # IDF-weighted share of the question's terms found in the sentence
    heading: float = 0.0  # ... found only in its chunk's heading path
    dense: float = 0.0
    bm25: float = 0.0
    chunk_cover: float = 0.0  # IDF-weighted share of the question's terms found anywhere in its chunk

    @property
    def lexical(self) -> float:
        return self.cover + HEADING_SHARE * self.heading

    @property
    def confidence(self) -> float:
        return DENSE_SHARE * self.dense + (1 - DENSE_SHARE) * self.chunk_cover

    @property
    def score(self) -> float:
        return DENSE_RANK * self.dense + LEXICAL_RANK * self.lexical + BM25_SHARE * self.bm25 + RANK_SHARE / self.rank


@dataclass
class Extract:
    """The outcome: `text` is the reply; `grounded` False when the knowledge base does not answer."""

    text: str
    grounded: bool
    confidence: float
    sentences: list[Sentence] = field(default_factory=list)  # the quoted ones, best first (or the best tried)


def split_sentences(text: str) -> list[str]:
    """Sentences of `text` verbatim (closing punctuation and quotes kept), blank ones left out."""
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def _parts(doc: Any) -> tuple[str, str]:
    """(heading path, text without it) of a retrieved chunk."""
    headings = (doc.metadata.get("headings") or "").strip()
    return headings, chunk_body(doc.page_content, headings)


def _candidates(docs: Sequence[Any]) -> list[tuple[Sentence, str]]:
    out = []
    for rank, doc in enumerate(docs, 1):
        citation = int(doc.metadata.get("citation", rank))
        headings, body = _parts(doc)
        for line in split_sentences(body):
            if line.lstrip().startswith("#"):  # a heading line is context, not an answer
                continue
            bare = _MARKUP.sub("", line).strip(" |")
            if len(bare) < MIN_CHARS or (len(bare) <= TITLE_CHARS and not _PUNCT.search(bare)):
                continue  # too short to answer, or a title line (no punctuation at all)
            out.append((Sentence(line, citation, rank), headings.lower()))
    return out


def _local_idf(terms: Iterable[str], texts: Sequence[str]) -> dict[str, float]:
    total = len(texts)
    out = {}
    for term in terms:
        df = sum(term in t for t in texts)
        out[term] = math.log(1 + (total - df + 0.5) / (df + 0.5))
    return out


def _bm25(terms: list[str], texts: list[str]) -> list[float]:
    """BM25 of each text over the candidates as the corpus, over the best one's."""
    scores = bm25_scores(terms, [tokenize(text) for text in texts])
    top = max(scores, default=0.0) or 1.0
    return [score / top for score in scores]


def _embed(embeddings: Any, question: str, texts: list[str]) -> np.ndarray:
    """Cosines of `texts` (passages) to `question` (a query), with the knowledge base's embedder."""
    if hasattr(embeddings, "embed_array"):
        q = embeddings.embed_array([question], query=True)[0]
        m = embeddings.embed_array(texts)
    else:  # any LangChain Embeddings
        q = np.asarray(embeddings.embed_query(question), dtype=np.float32)
        m = np.asarray(embeddings.embed_documents(texts), dtype=np.float32)
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    m = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    return m @ q


def rank_sentences(
    question: str,
    docs: Sequence[Any],
    embeddings: Any = None,
    idf: Callable[[Iterable[str]], dict[str, float]] | None = None,
) -> list[Sentence]:
    """Every candidate sentence of `docs`, scored against `question`, best first."""
    found = _candidates(docs)
    if not found:
        return []
    texts = [s.text.lower() for s, _ in found]
    terms = list(dict.fromkeys(query_terms(question)))
    weights = _local_idf(terms, texts)
    if idf is not None:
        weights.update({t: w for t, w in idf(terms).items() if t in weights})
    total = sum(weights.values()) or 1.0
    for (sentence, heading), text in zip(found, texts):
        for term, weight in weights.items():
            if term in text:
                sentence.cover += weight / total
            elif term in heading:
                sentence.heading += weight / total
    for (sentence, _), value in zip(found, _bm25(terms, texts)):
        sentence.bm25 = value
    chunks = [(doc.page_content + " " + (doc.metadata.get("headings") or "")).lower() for doc in docs]
    covered = [sum(w for t, w in weights.items() if t in text) / total for text in chunks]
    for sentence, _ in found:
        sentence.chunk_cover = covered[sentence.rank - 1]
    sentences = sorted(
        (s for s, _ in found), key=lambda s: s.lexical + BM25_SHARE * s.bm25 + RANK_SHARE / s.rank, reverse=True
    )
    sentences = sentences[:MAX_CANDIDATES]
    if embeddings is not None:
        for sentence, cosine in zip(sentences, _embed(embeddings, question, [s.text for s in sentences])):
            sentence.dense = float(cosine)
    else:  # no embedder: the lexical judge alone decides
        for sentence in sentences:
            sentence.dense = min(sentence.lexical, 1.0)
    sentences.sort(key=lambda s: s.score, reverse=True)
    return sentences


def closest_sources(docs: Sequence[Any], limit: int = 3, chars: int = 80) -> list[str]:
    """ "[n] file（location）：opening…" lines of the best-ranked chunks."""
    lines = []
    for n, doc in enumerate(docs[:limit], 1):
        _, body = _parts(doc)
        text = " ".join(body.split())
        name = Path(doc.metadata.get("source", "?")).name
        location = doc.metadata.get("location", "")
        more = "…" if len(text) > chars else ""
        lines.append(f"[{doc.metadata.get('citation', n)}] {name}（{location}）：{text[:chars]}{more}")
    return lines


def _position(sentence: Sentence, docs: Sequence[Any]) -> int:
    return docs[sentence.rank - 1].page_content.find(sentence.text)


def extract(
    question: str,
    docs: Sequence[Any],
    embeddings: Any = None,
    idf: Callable[[Iterable[str]], dict[str, float]] | None = None,
    threshold: float = THRESHOLD,
) -> Extract:
    """The extractive answer to `question` from retrieved `docs` (LangChain Documents, ranked, with
    `metadata["citation"]`); see the module docstring."""
    ranked = rank_sentences(question, docs, embeddings, idf)
    best = ranked[0] if ranked else None
    if best is None or best.confidence < threshold:
        text = "\n".join([NO_ANSWER, *closest_sources(docs)]) if docs else NO_ANSWER
        return Extract(text, False, best.confidence if best else 0.0, ranked[:1])
    chosen = [best]
    for other in ranked[1:]:  # the next best sentence of the same chunk, in the document's order
        if other.rank == best.rank:
            chosen.append(other)
            break
    in_order = sorted(chosen, key=lambda s: _position(s, docs))
    lines = [LEAD_IN, *(f"「{s.text}」[{s.citation}]" for s in in_order)]
    return Extract("\n".join(lines), True, best.confidence, chosen)
