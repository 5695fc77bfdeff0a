"""BM25 has one path: scoring a handful of texts once (`bm25_scores`) gives what a knowledge base's index gives."""

from __future__ import annotations

import math

import pytest

from rolechat.rag.lexical import BM25Index, bm25_scores

TEXTS = [["云雾", "毛尖", "水温"], ["毛尖", "产地"], ["门票", "门票", "学生", "半价"], []]


def lucene(term: str, text: list[str], corpus: list[list[str]], k1: float = 1.2, b: float = 0.75) -> float:
    df = sum(term in t for t in corpus)
    idf = math.log(1 + (len(corpus) - df + 0.5) / (df + 0.5))
    average = sum(map(len, corpus)) / len(corpus)
    tf = text.count(term)
    return idf * tf / (tf + k1 * (1 - b + b * len(text) / average))


def test_scores_are_lucenes_bm25_with_each_query_term_counted_once():
    scores = bm25_scores(["毛尖", "门票", "毛尖", "不在"], TEXTS)
    expected = [lucene("毛尖", t, TEXTS) + lucene("门票", t, TEXTS) for t in TEXTS]
    assert scores == pytest.approx(expected, rel=1e-5)
    assert scores[2] > 0 and scores[3] == 0


def test_the_scores_are_the_knowledge_base_indexs(tmp_path):
    index = BM25Index(tmp_path / "bm25")
    index.build([(str(n), " ".join(text)) for n, text in enumerate(TEXTS)])
    found = dict(index.search_terms(["毛尖", "门票"], k=len(TEXTS)))
    scores = bm25_scores(["毛尖", "门票"], TEXTS)
    assert {str(n): s for n, s in enumerate(scores) if s > 0} == pytest.approx(found)


def test_texts_without_a_known_term_or_without_any_token_score_zero():
    assert bm25_scores(["茶"], TEXTS) == [0.0] * len(TEXTS)
    assert bm25_scores(["茶"], [[], []]) == [0.0, 0.0]
    assert bm25_scores([], TEXTS[:2]) == [0.0, 0.0]
    assert bm25_scores(["茶"], []) == []
