"""Ranking BM25's candidates with the chunk's structure: coverage, sentence coverage, section openings."""

import math

import pytest

from rolechat.rag import KnowledgeBase, RAGConfig
from rolechat.rag.lexical import query_terms, tokenize
from rolechat.rag.ranking import RankWeights, opens_section, rank
from rolechat.settings import ConfigError
from tests.test_rag_retrieval import BlindEmbedding

PLAIN = {"coverage_weight": 0.0, "sentence_weight": 0.0, "lead_weight": 0.0}

# A definition opens its section; a later, shorter chunk of the same section names the subject twice, so plain
# BM25 (term frequency, length normalisation) puts it first for "什么是放线菌酮？".
DRUGS = {
    "drug.md": "# 放线菌酮\n"
    "放线菌酮是一种具苦味的化合物，由灰色链霉菌产生，在真核生物中抑制蛋白质的合成，常用于细胞实验。\n"
    "过去农业上用放线菌酮杀真菌，碱可以破坏放线菌酮。\n",
    "salt.md": "# 食盐\n食盐是氯化钠，是一种调味品。\n",
    "acid.md": "# 次磷酸\n次磷酸是一种无机酸，是强还原剂。\n",
}


def build(tmp_path, docs, name="kb", **settings):
    folder = tmp_path / name
    folder.mkdir()
    for file, text in docs.items():
        (folder / file).write_text(text, encoding="utf-8")
    cfg = RAGConfig(chunk_size=60, chunk_overlap=0, **settings)
    kb = KnowledgeBase(name, cfg, embeddings=BlindEmbedding())
    kb.index([folder])
    return kb


def test_the_chunk_that_opens_its_section_comes_first_where_plain_bm25_put_a_neighbour(tmp_path):
    kb = build(tmp_path, DRUGS)
    section = [c for c in kb.manifest.chunks() if c.headings == "放线菌酮"]
    assert len(section) == 2  # the definition and the later chunk are separate chunks of one section
    question = "什么是放线菌酮？"
    for mode in ("bm25", "hybrid"):
        plain = kb.retriever(mode, 3).model_copy(update=PLAIN).invoke(question)
        ranked = kb.retriever(mode, 3).invoke(question)
        assert plain[0].page_content.startswith("放线菌酮\n过去农业上"), mode  # old order: the neighbour first
        assert ranked[0].page_content.startswith("放线菌酮\n放线菌酮是一种"), mode  # new: the definition
        assert {d.id for d in plain} == {d.id for d in ranked}  # the same candidates, reordered
    assert kb.search(question, k=1)[0].page_content.startswith("放线菌酮\n放线菌酮是一种")  # the defaults


def test_chunk_holding_the_questions_words_in_one_sentence_wins_a_tie(tmp_path):
    kb = build(
        tmp_path,
        {
            "tea.md": "# 云雾山茶园\n绿茶在清明前采摘。每年秋天修剪茶树。茶园用山泉浇灌。\n",
            "farm.md": "# 云雾山茶园\n茶园的绿茶用山泉水浇灌，清明前采摘。\n",
        },
    )
    terms = kb.bm25.terms("云雾山茶园的绿茶用什么水浇灌？")
    rows = kb.manifest.chunks()
    scattered = next(r for r in rows if "修剪" in r.text)
    together = next(r for r in rows if "山泉水浇灌" in r.text)
    tie = [(scattered.id, 5.0), (together.id, 5.0)]
    assert [c for c, _ in rank(kb, terms, tie, RankWeights(0, 0, 0))] == [scattered.id, together.id]
    assert [c for c, _ in rank(kb, terms, tie, RankWeights(0, 2.0, 0))] == [together.id, scattered.id]


def test_coverage_prefers_more_of_the_question_over_repeating_part_of_it(tmp_path):
    kb = build(
        tmp_path,
        {
            "a.md": "# 茶具\n盖碗盖碗盖碗，盖碗很多。\n",
            "b.md": "# 茶具店\n白瓷盖碗，八十度的水温。\n",
        },
    )
    terms = kb.bm25.terms("盖碗用多少度的水温？")
    rows = kb.manifest.chunks()
    repeated = next(r for r in rows if "很多" in r.text)
    covering = next(r for r in rows if "水温" in r.text)
    hits = [(repeated.id, 8.0), (covering.id, 6.0)]
    assert rank(kb, terms, hits, RankWeights(0, 0, 0)) == hits  # zero weights: BM25 order and scores
    assert [c for c, _ in rank(kb, terms, hits, RankWeights(1.0, 0, 0))] == [covering.id, repeated.id]


def test_section_openings_per_kind_of_file():
    # Markdown (and text, HTML, docx): a section is a heading path; locations are just line numbers
    assert opens_section("A", "line 2", None, "markdown")
    assert not opens_section("A", "line 9", ("A", "line 2"), "markdown")
    assert opens_section("A > B", "line 12", ("A", "line 9"), "markdown")
    # ...and a PDF's page break is not a new section
    assert not opens_section("", "p. 4", ("", "p. 3"), "pdf")
    # Blocks (SQuAD paragraphs, rows, records, cues): a new location opens a new section
    assert opens_section("标题", "标题 ¶2", ("标题", "标题 ¶1"), "json")
    assert not opens_section("标题", "标题 ¶2", ("标题", "标题 ¶2"), "json")
    assert opens_section("", "row 3", ("", "row 2"), "csv")


def test_idf_is_lucenes_and_question_words_are_cut_out(tmp_path):
    kb = build(tmp_path, DRUGS)
    n = kb.chunk_count()
    df = sum(1 for c in kb.manifest.chunks() if "放线菌酮" in c.tokens.split(" "))
    assert math.isclose(kb.bm25.idf(["放线菌酮"])["放线菌酮"], math.log(1 + (n - df + 0.5) / (df + 0.5)), rel_tol=1e-6)
    assert kb.bm25.idf(["不存在的词"]) == {}
    terms = query_terms("冰雪皇后冰淇淋有什么特点？")
    assert "什" not in terms and "么特" not in terms and "有什" not in terms and "特点" in terms
    assert "什" in query_terms("冰雪皇后冰淇淋有什么特点？", drop_question_words=False)
    assert "哪吒" in " ".join(query_terms("哪吒是谁？"))  # single-character interrogatives are left alone
    assert set(query_terms("放线菌酮")) == set(tokenize("放线菌酮"))


def test_section_openers_follow_the_knowledge_base_as_it_changes(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text(
        "# 甲\n第一段的内容写在这里，句子很长很长很长。\n第二段的内容写在这里，句子也很长很长。\n", "utf-8"
    )
    cfg = RAGConfig(chunk_size=40, chunk_overlap=0)
    kb = KnowledgeBase("kb", cfg, embeddings=BlindEmbedding())
    kb.index([folder])

    def openers():
        return sorted(r.text.split("\n")[1][:3] for r in kb.manifest.chunks() if r.id in kb.section_starts())

    assert len(kb.manifest.chunks()) == 2 and openers() == ["第一段"]
    (folder / "a.md").write_text(
        "# 甲\n第一段的内容写在这里，句子很长很长很长。\n## 乙\n第二段的内容写在这里，句子也很长很长。\n", "utf-8"
    )
    kb.index([folder])  # the second paragraph now opens a section of its own
    assert openers() == ["第一段", "第二段"]
    # a knowledge base opened afresh (as one indexed before this ranking existed) reads the same openers
    again = KnowledgeBase("kb", cfg, embeddings=BlindEmbedding())
    assert again.section_starts() == kb.section_starts()


@pytest.mark.parametrize("name", ["coverage_weight", "sentence_weight", "lead_weight"])
def test_negative_ranking_weights_are_refused(name):
    with pytest.raises(ConfigError, match=f"rag.{name} must be >= 0"):
        RAGConfig(**{name: -1})
