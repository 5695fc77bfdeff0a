"""The cited answer chain over any chat model: streaming order, citations, history, 'not found', prompt overrides."""

from pathlib import Path

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage

from rolechat.rag import KnowledgeBase, RAGConfig
from rolechat.rag.chain import answer_stream, build_chain, format_context, format_sources
from rolechat.rag.prompts import ANSWER_PROMPT, NOT_FOUND


class RecordingChat(GenericFakeChatModel):
    """A fake chat model that also records the prompts it received."""

    seen: list = []

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append(messages)
        return super()._generate(messages, stop, run_manager, **kwargs)

    def _stream(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append(messages)
        yield from super()._stream(messages, stop, run_manager, **kwargs)


def chat(*replies: str) -> RecordingChat:
    model = RecordingChat(messages=iter([AIMessage(content=r) for r in replies]))
    model.seen = []
    return model


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
    return base


def test_answer_cites_numbered_sources_from_the_prompt(kb):
    model = chat("七天内可以退货 [1]。")
    out = build_chain(kb.retriever("bm25", 2), model).invoke({"question": "多久之内可以退货？"})
    assert out["answer"] == "七天内可以退货 [1]。"
    assert Path(out["sources"][0].metadata["source"]).name == "退货政策.md"
    assert out["sources"][0].metadata["citation"] == 1
    prompt = model.seen[0][0].content
    assert prompt.startswith("使用以下上下文来回答最后的问题")
    assert "[1] 来源：退货政策.md（line 2）\n退货政策\n购买后七天内可以无理由退货。" in prompt
    assert prompt.rstrip().endswith("问题：多久之内可以退货？\n有用的回答：")


def test_stream_yields_sources_first_then_answer_pieces(kb):
    pieces = list(answer_stream(kb.retriever("bm25", 2), chat("满九十九元 包邮 [1]"), "运费怎么算？包邮吗"))
    assert "sources" in pieces[0] and all("answer" in p for p in pieces[1:])
    assert len(pieces) > 2  # really streamed, token by token
    assert "".join(p["answer"] for p in pieces[1:]) == "满九十九元 包邮 [1]"
    assert (
        format_sources(pieces[0]["sources"])[0].startswith("[1] ")
        and "配送.txt" in format_sources(pieces[0]["sources"])[0]
    )


def test_nothing_found_says_so_without_calling_the_model(kb):
    model = chat("这句话不应出现")
    out = build_chain(kb.retriever("bm25", 3), model).invoke({"question": "火星的卫星叫什么名字"})
    assert out["sources"] == [] and out["answer"] == NOT_FOUND
    assert model.seen == []


def test_history_is_condensed_into_a_standalone_question(kb):
    model = chat("退货需要什么凭证", "需要保留发票 [1]。")
    history = [HumanMessage("你们的退货政策是什么？"), AIMessage("七天内可以无理由退货。")]
    out = build_chain(kb.retriever("bm25", 2), model).invoke({"question": "那需要什么凭证？", "chat_history": history})
    assert out["standalone_question"] == "退货需要什么凭证"
    condense_prompt = model.seen[0][0].content
    assert "用户：你们的退货政策是什么？\n助手：七天内可以无理由退货。" in condense_prompt
    assert "后续问题：那需要什么凭证？" in condense_prompt
    assert "保留发票" in out["sources"][0].page_content  # retrieval used the standalone question
    assert out["answer"] == "需要保留发票 [1]。"


def test_prompt_override_from_config_is_used(kb):
    model = chat("好")
    custom = "资料：{context}\n请回答：{question}"
    build_chain(kb.retriever("bm25", 1), model, prompt=custom).invoke({"question": "发票"})
    assert model.seen[0][0].content.startswith("资料：[1] 来源：退货政策.md")
    with pytest.raises(ValueError, match="rag.prompt must contain"):
        RAGConfig(prompt="没有占位符")


def test_default_prompt_lives_in_one_module():
    assert "{context}" in ANSWER_PROMPT and "{question}" in ANSWER_PROMPT
    assert format_context([]) == ""
