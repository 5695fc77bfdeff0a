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


def test_the_index_built_chunk_by_chunk_is_the_one_bm25s_builds_from_the_split_strings(tmp_path):
    # `build` hands bm25s term ids and a vocabulary instead of every chunk's split strings (memory): the index it
    # saves must score every term of every chunk as bm25s's own path over the strings does, saved and loaded too
    from rolechat.rag.lexical import _index

    rows = [
        ("c1", "茶 毛尖 毛尖 云 雾 云雾"),
        ("c2", "毛尖 产地 信阳"),
        ("c3", ""),
        ("c4", "门票 门票 门票 学生 半价 the the"),
        ("c5", "信阳 毛尖 茶 茶 茶 云"),
    ]
    before = _index([tokens.split(" ") if tokens else [] for _, tokens in rows])  # the former path
    index = BM25Index(tmp_path / "bm25")
    index.build(iter(rows))
    loaded = BM25Index(tmp_path / "bm25")
    assert loaded.load() and loaded.digest == index.digest and loaded._ids == [cid for cid, _ in rows]
    terms = sorted({t for _, tokens in rows for t in tokens.split(" ") if t})
    for built in (index, loaded):
        assert set(built._vocab) == set(before.vocab_dict) == {*terms, ""}
        for term in terms:
            expected = {n: float(s) for n, s in enumerate(before.get_scores([term])) if s}
            got = {n: float(s) for n, s in enumerate(built._retriever.get_scores([term])) if s}
            assert got == expected and got, term
        assert built.search_terms(["毛尖", "茶", "门票"], k=5) == [
            (rows[int(n)][0], float(s))
            for n, s in zip(*(a[0] for a in before.retrieve([["毛尖", "茶", "门票"]], k=5, show_progress=False)))
            if s > 0
        ]
        assert built.idf(["毛尖"]) == pytest.approx({"毛尖": math.log(1 + (5 - 3 + 0.5) / (3 + 0.5))})


def test_the_manifest_hands_the_build_every_chunk_once_a_page_at_a_time(tmp_path):
    from rolechat.rag.manifest import ChunkRow, FileRow, Manifest

    manifest = Manifest(tmp_path / "manifest.sqlite")
    for path, n in (("a.md", 4), ("b.md", 3)):
        chunks = [ChunkRow(f"{path}{i}", path, i, "正文", "", "", f"词{i} {path}", f"v{i}") for i in range(n)]
        manifest.replace_file(FileRow(path, "sha", 1, "md", "utf-8", n), chunks)
    every = sorted((f"{p}{i}", f"词{i} {p}") for p, n in (("a.md", 4), ("b.md", 3)) for i in range(n))
    for page in (1, 2, 3, 7, 2000):  # pages that end on the last row, past it, and one page for all
        assert list(manifest.bm25_rows(page=page)) == every
    index = BM25Index(tmp_path / "bm25")
    index.build(manifest.bm25_rows(page=2))
    assert index._ids == [cid for cid, _ in every]
    assert sorted(cid for cid, _ in index.search_terms(["b.md"], k=7)) == ["b.md0", "b.md1", "b.md2"]
    manifest.close()
