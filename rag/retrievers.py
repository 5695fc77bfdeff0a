"""Retrievers over a knowledge base, as LangChain `BaseRetriever`s: dense (Chroma), BM25, and their fusion.

Hybrid fusion adds each leg's min-max normalised scores with per-leg weights. With the default
multilingual-e5-small the dense leg weighs 0.4 against BM25's 1: on cmrc2018 (chunk level, docs/benchmarks.md)
BM25 with its ranking (rag/ranking.py) already puts the answer first for ~97% of the questions and e5 for ~89%,
and a lighter dense leg breaks BM25's near-ties without overturning its clear wins (0.3-0.5 all beat either
leg alone; 1.0 is worse than BM25 alone). The dense leg's weight is also scaled by the share of the query the
embedder's vocabulary covers (non-[UNK] tokens) raised to a power, and below `min_coverage` (0.8) the dense
leg is skipped altogether: that protects knowledge bases built with the English-only all-MiniLM-L6-v2, which
reads a median 35% of cmrc2018's Chinese questions (e5 reads ~100%), so for them Chinese questions stay BM25's.

Each returned Document carries metadata: source, location, headings, chunk_id, score, found_by
("bm25", "dense" or "bm25+dense") and rank. An empty list means nothing relevant was found.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from rolechat.rag.ranking import RankWeights, rank

__all__ = ["DenseRetriever", "BM25Retriever", "HybridRetriever", "make_retriever", "fuse", "RRF_K", "COVERAGE_POWER"]

RRF_K = 60
COVERAGE_POWER = 3.0


def _documents(kb, scored: list[tuple[str, float]], found_by: str) -> list[Document]:
    rows = {c.id: c for c in kb.manifest.chunks([cid for cid, _ in scored])}
    files = kb.manifest.files(row.path for row in rows.values())
    docs = []
    for cid, score in scored:
        row = rows.get(cid)
        if row is None:  # in Chroma but not (any more) in the manifest: an interrupted run; skip it
            continue
        meta = row.metadata(files.get(row.path))
        meta.update(score=round(float(score), 4), found_by=found_by, rank=len(docs) + 1)
        docs.append(Document(page_content=row.text, metadata=meta, id=cid))
    return docs


class _KBRetriever(BaseRetriever):
    kb: Any
    k: int = 5
    model_config = ConfigDict(arbitrary_types_allowed=True)


class DenseRetriever(_KBRetriever):
    """Nearest chunks by cosine similarity of the configured embedder's vectors."""

    min_score: float = -1.0

    def scored(self, query: str, k: int) -> list[tuple[str, float]]:
        # Chroma returns what it has when asked for more; counting its records first cost 5-6 ms per query at
        # 30,000 chunks (docs/benchmarks.md "Scale curves"). An empty knowledge base is told by the manifest (one
        # row read), and its query is not embedded.
        if not self.kb.manifest.has_chunks():
            return []
        vector = self.kb.embeddings.embed_query(query)
        res = self.kb.collection.query(query_embeddings=[list(map(float, vector))], n_results=k, include=["distances"])
        if not res["ids"] or not res["ids"][0]:
            return []
        return [(cid, 1.0 - float(d)) for cid, d in zip(res["ids"][0], res["distances"][0])]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun):
        hits = [(c, s) for c, s in self.scored(query, self.k) if s >= self.min_score]
        return _documents(self.kb, hits, "dense")


class BM25Retriever(_KBRetriever):
    """jieba + bm25s lexical retrieval; only chunks sharing a query term are returned. The best `fetch_k`
    are re-ranked by coverage, sentence coverage and section openings (rag/ranking.py); zero weights keep
    plain BM25 order."""

    min_score: float = 0.0
    fetch_k: int = 30
    coverage_weight: float = 1.0
    sentence_weight: float = 2.0
    lead_weight: float = 0.15
    drop_question_words: bool = True

    def weights(self) -> RankWeights:
        return RankWeights(self.coverage_weight, self.sentence_weight, self.lead_weight)

    def scored(self, query: str, k: int) -> list[tuple[str, float]]:
        weights = self.weights()
        depth = max(k, self.fetch_k) if weights.active() else k
        terms = self.kb.bm25.terms(query, self.drop_question_words)
        hits = [(c, s) for c, s in self.kb.bm25.search_terms(terms, depth) if s > self.min_score]
        return rank(self.kb, terms, hits, weights)[:k]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun):
        return _documents(self.kb, self.scored(query, self.k), "bm25")


def _normalised(hits: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Min-max scale a leg's scores to [0, 1] (best = 1); a single hit scores 1."""
    if not hits:
        return []
    high = max(s for _, s in hits)
    low = min(s for _, s in hits)
    span = high - low
    return [(cid, (s - low) / span if span > 0 else 1.0) for cid, s in hits]


def fuse(
    legs: dict[str, list[tuple[str, float]]],
    weights: dict[str, float],
    k: int,
    method: str = "score",
    rrf_k: int = RRF_K,
) -> list[tuple[str, float, str]]:
    """Fuse ranked legs into [(chunk_id, fused score, found_by)], best first.

    `score`: weighted sum of each leg's min-max normalised scores, so a leg with weight w can only
    reorder candidates whose other scores differ by less than w. `rrf`: weighted reciprocal-rank
    fusion, where adjacent ranks differ by only ~1/(rrf_k+r)^2 and even a tiny weight reorders them.
    """
    scores: dict[str, float] = {}
    found: dict[str, list[str]] = {}
    for leg, hits in legs.items():
        weight = weights.get(leg, 1.0)
        scaled = (
            _normalised(hits) if method == "score" else [(c, 1.0 / (rrf_k + r)) for r, (c, _) in enumerate(hits, 1)]
        )
        for cid, value in scaled:
            scores[cid] = scores.get(cid, 0.0) + weight * value
            found.setdefault(cid, []).append(leg)
    best = sorted(scores, key=lambda c: scores[c], reverse=True)[:k]
    return [(cid, scores[cid], "+".join(sorted(found[cid]))) for cid in best]


class HybridRetriever(_KBRetriever):
    """BM25 and dense candidates fused by weighted RRF, optionally reordered by a cross-encoder."""

    fetch_k: int = 30
    fusion: str = "score"
    dense_weight: float = 1.0
    bm25_weight: float = 1.0
    min_dense_score: float = 0.3
    min_bm25_score: float = 0.0
    coverage_power: float = COVERAGE_POWER
    min_coverage: float = 0.8
    coverage_weight: float = 1.0
    sentence_weight: float = 2.0
    lead_weight: float = 0.15
    drop_question_words: bool = True
    reranker: Any = None

    def dense_weight_for(self, query: str) -> float:
        """dense_weight x coverage^power, or 0 when the embedder reads less than min_coverage of the query."""
        share = getattr(self.kb.embeddings, "known_share", None)
        coverage = share(query) if share else 1.0
        if coverage < self.min_coverage:
            return 0.0
        return self.dense_weight * coverage**self.coverage_power

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun):
        fetch = max(self.fetch_k, self.k)
        bm25 = BM25Retriever(
            kb=self.kb,
            min_score=self.min_bm25_score,
            fetch_k=fetch,
            coverage_weight=self.coverage_weight,
            sentence_weight=self.sentence_weight,
            lead_weight=self.lead_weight,
            drop_question_words=self.drop_question_words,
        ).scored(query, fetch)
        dense_w = self.dense_weight_for(query)
        dense = DenseRetriever(kb=self.kb).scored(query, fetch) if dense_w > 0 else []
        trusted_dense = bool(dense) and dense[0][1] >= self.min_dense_score and dense_w >= 0.5 * self.dense_weight
        if not bm25 and not trusted_dense:
            return []  # nothing relevant: let the caller say so instead of inventing context
        fused = fuse(
            {"bm25": bm25, "dense": dense},
            {"bm25": self.bm25_weight, "dense": dense_w},
            fetch if self.reranker is not None else self.k,
            method=self.fusion,
        )
        docs = []
        by_leg = {cid: label for cid, _, label in fused}
        for doc in _documents(self.kb, [(cid, score) for cid, score, _ in fused], "hybrid"):
            doc.metadata["found_by"] = by_leg[doc.id]
            docs.append(doc)
        if self.reranker is not None and docs:
            scores = self.reranker.predict([(query, d.page_content) for d in docs], show_progress_bar=False)
            docs = [d for _, d in sorted(zip(scores, docs), key=lambda p: -float(p[0]))][: self.k]
            for rank, (doc, score) in enumerate(zip(docs, sorted(map(float, scores), reverse=True)), 1):
                doc.metadata.update(rank=rank, rerank_score=round(score, 4))
        return docs


_RERANKERS: dict[str, Any] = {}


def _reranker(name: str):
    if name not in _RERANKERS:
        from sentence_transformers import CrossEncoder

        from rolechat.rag.embedder import resolve_model_path

        _RERANKERS[name] = CrossEncoder(str(resolve_model_path(name)), device="cpu")
    return _RERANKERS[name]


def make_retriever(kb, mode: str, k: int) -> BaseRetriever:
    """The retriever of `mode` over `kb`, its settings taken from the knowledge base's RAGConfig."""
    cfg = kb.cfg
    if mode == "dense":
        return DenseRetriever(kb=kb, k=k)
    if mode == "bm25":
        return _configured(BM25Retriever, cfg, kb=kb, k=k, min_score=cfg.min_bm25_score)
    if mode == "hybrid":
        reranker = _reranker(cfg.reranker) if cfg.reranker else None
        return _configured(HybridRetriever, cfg, kb=kb, k=k, reranker=reranker)
    raise ValueError(f"unknown retrieval mode {mode!r}; use dense, bm25 or hybrid")


def _configured(kind: type[BaseRetriever], cfg: Any, **given: Any) -> BaseRetriever:
    """A retriever of `kind` whose settings named as in RAGConfig (fetch_k, fusion, the weights and floors)
    come from `cfg`; `given` sets the rest (and wins)."""
    same = {name: getattr(cfg, name) for name in kind.model_fields if name not in given and hasattr(cfg, name)}
    return kind(**same, **given)
