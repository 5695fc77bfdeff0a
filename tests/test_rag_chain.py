"""The cited answer chain (LangChain Runnable) is the engine's own knowledge-base pipeline: the same prompt as a
chat turn, sources first when streaming, 'not found' without the model, follow-ups condensed; the passages'
text shapes."""

from pathlib import Path

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.messages import AIMessage, HumanMessage

from rolechat.conversation import Engine
from rolechat.conversation.session import answer_chain
from rolechat.llm import LLMConfig, Runtime
from rolechat.rag import KnowledgeBase, RAGConfig
from rolechat.rag.chain import answer_stream, format_context, format_sources
from rolechat.rag.prompts import ANSWER_PROMPT, NOT_FOUND

GREEDY = {"temperature": 0.0, "max_new_tokens": 8}


@pytest.fixture
def kb(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "退货政策.md").write_text(
        "# 退货政策\n购买后七天内可以无理由退货。退货时需要保留发票。\n", encoding="utf-8"
    )
    (docs / "配送.txt").write_text("订单满九十九元包邮，偏远地区除外。一般三天内送达。", encoding="utf-8")
    base = KnowledgeBase("shop", RAGConfig(), embeddings=DeterministicFakeEmbedding(size=16))
    base.index([docs])
    base.close()
    return "shop"


@pytest.fixture(scope="module")
def runtime(tiny_qwen2) -> Runtime:
    return Runtime.load(LLMConfig(model=str(tiny_qwen2)))


@pytest.fixture
def engine(runtime, monkeypatch):
    """An engine over the tiny model whose runtime records every prompt it streams."""
    engine = Engine(runtime, RAGConfig(mode="bm25", k=2), embeddings=DeterministicFakeEmbedding(size=16))
    engine.seen = []
    original = Runtime.stream

    def stream(self, messages, persona=None, params=None, persona_system=True):
        engine.seen.append([dict(m) for m in messages])
        return original(self, messages, persona, params, persona_system)

    monkeypatch.setattr(Runtime, "stream", stream)
    yield engine
    engine.close()


def test_the_chain_sends_the_prompt_a_chat_turn_sends(engine, kb):
    chain = answer_chain(engine, kb, params=GREEDY, condense=False)
    out = chain.invoke({"question": "多久之内可以退货？"})
    turn = engine.prepare("多久之内可以退货？", knowledge_base=kb, params=GREEDY, condense=False)
    assert engine.seen == [turn.messages]  # one generation, from the engine's own prompt
    assert out["answer"] == engine.stream(turn).join()
    assert Path(out["sources"][0].metadata["source"]).name == "退货政策.md"
    assert out["sources"][0].metadata["citation"] == 1
    prompt = turn.messages[-1]["content"]
    assert prompt.startswith("使用以下上下文来回答最后的问题")
    assert "[1] 来源：退货政策.md（line 2）\n退货政策\n购买后七天内可以无理由退货。" in prompt


def test_stream_yields_sources_first_then_answer_pieces(engine, kb):
    chain = answer_chain(engine, kb, params={"temperature": 0.0, "max_new_tokens": 6}, condense=False)
    pieces = list(answer_stream(chain, "运费怎么算？包邮吗"))
    assert "sources" in pieces[0] and all("answer" in p for p in pieces[1:])
    assert len(pieces) > 2  # really streamed, piece by piece
    whole = chain.invoke({"question": "运费怎么算？包邮吗"})["answer"]
    assert "".join(p["answer"] for p in pieces[1:]) == whole
    assert format_sources(pieces[0]["sources"])[0].startswith("[1] ")
    assert "配送.txt" in format_sources(pieces[0]["sources"])[0]


def test_nothing_found_says_so_without_calling_the_model(engine, kb):
    out = answer_chain(engine, kb, params=GREEDY).invoke({"question": "火星的卫星叫什么名字"})
    assert out["sources"] == [] and out["answer"] == NOT_FOUND
    assert engine.seen == []


def test_history_is_condensed_into_a_standalone_question(engine, kb, monkeypatch):
    asked = []

    def rewrite(self, question, history, persona):
        asked.append([dict(m) for m in history])
        return "退货需要什么凭证"

    monkeypatch.setattr(type(engine.knowledge), "standalone_question", rewrite)
    history = [HumanMessage("你们的退货政策是什么？"), AIMessage("七天内可以无理由退货。")]
    out = answer_chain(engine, kb, params=GREEDY).invoke({"question": "那需要什么凭证？", "chat_history": history})
    assert asked == [
        [
            {"role": "user", "content": "你们的退货政策是什么？"},
            {"role": "assistant", "content": "七天内可以无理由退货。"},
        ]
    ]
    assert out["standalone_question"] == "退货需要什么凭证"
    assert "保留发票" in out["sources"][0].page_content  # retrieval used the standalone question
    assert "问题：退货需要什么凭证" in engine.seen[0][-1]["content"]


def test_prompt_override_from_config_is_used(runtime, kb):
    custom = "资料：{context}\n请回答：{question}"
    engine = Engine(runtime, RAGConfig(mode="bm25", k=1, prompt=custom), embeddings=DeterministicFakeEmbedding(size=16))
    turn = engine.prepare("发票", knowledge_base=kb, params=GREEDY, condense=False)
    engine.close()
    assert turn.messages[-1]["content"].startswith("资料：[1] 来源：退货政策.md")
    with pytest.raises(ValueError, match="rag.prompt must contain"):
        RAGConfig(prompt="没有占位符")


def test_default_prompt_lives_in_one_module():
    assert "{context}" in ANSWER_PROMPT and "{question}" in ANSWER_PROMPT
    assert format_context([]) == ""
