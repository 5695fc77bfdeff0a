"""`rolechat index | kb | search | eval-retrieval | ask` with the real bundled embedder (ONNX int8, exported once)."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rolechat.cli import app

pytestmark = pytest.mark.slow


@pytest.fixture
def home(_isolated_home) -> Path:
    """A fresh ROLECHAT_HOME (its model caches are the session's, tests/conftest.py)."""
    return _isolated_home


def run(*args: str):
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result


def flat(text: str) -> str:
    """Rich wraps long lines; compare messages with the wrapping undone."""
    return "".join(text.split("\n"))


@pytest.fixture
def docs(tmp_path) -> Path:
    folder = tmp_path / "我的 文档"
    folder.mkdir()
    (folder / "退货政策.md").write_text(
        "# 退货政策\n购买后七天内可以无理由退货。退货时需要保留发票。\n\n# 换货\n质量问题可以在三十天内换货。\n",
        encoding="utf-8",
    )
    (folder / "配送.txt").write_bytes("订单满九十九元包邮，偏远地区除外。一般三天内送达。".encode("gbk"))
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    return folder


def test_index_search_show_delete_round_trip(home, docs):
    out = run("index", str(docs), "--kb", "客服", "--json")
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["summary"] == {"indexed": 2, "updated": 0, "unchanged": 0, "removed": 0, "skipped": 1, "failed": 0}
    assert {f["encoding"] for f in report["files"] if f["status"] == "indexed"} == {"utf-8", "gbk"}
    assert report["chunks_embedded"] == report["chunks_added"] > 0

    again = json.loads(run("index", str(docs), "--kb", "客服", "--json").stdout)
    assert again["summary"]["unchanged"] == 2 and again["chunks_embedded"] == 0

    hits = json.loads(run("search", "多久可以退货", "--kb", "客服", "-k", "2", "--json").stdout)
    assert Path(hits[0]["source"]).name == "退货政策.md"
    assert hits[0]["location"] == "line 2" and hits[0]["found_by"] in ("bm25", "bm25+dense")
    assert hits[0]["score"] > 0 and hits[0]["rank"] == 1
    for mode in ("dense", "bm25"):
        assert json.loads(run("search", "包邮", "--kb", "客服", "--mode", mode, "--json").stdout)

    text = run("search", "包邮", "--kb", "客服").stdout
    assert "配送.txt" in text and "score" in text

    listing = json.loads(run("kb", "list", "--json").stdout)
    assert listing == [
        {"name": "客服", "documents": 2, "chunks": report["chunks_total"], "embedder": "multilingual-e5-small"}
    ]
    show = json.loads(run("kb", "show", "客服", "--json").stdout)
    assert show["settings"]["chunk_size"] == "508" and "multilingual-e5-small" in show["settings"]["embedder"]
    assert show["embedder"]["prefix"] == "'query: ' before questions, 'passage: ' before documents"
    assert (show["embedder"]["backend"], show["embedder"]["dimension"]) == ("onnx-int8", 384)
    assert sorted(Path(d["path"]).name for d in show["documents"]) == ["退货政策.md", "配送.txt"]

    assert run("kb", "delete", "客服", "--yes").exit_code == 0
    assert json.loads(run("kb", "list", "--json").stdout) == []
    missing = run("search", "x", "--kb", "客服")
    assert missing.exit_code == 1 and "no knowledge base named '客服'" in flat(missing.output)


def test_eval_retrieval_reports_each_mode(home, docs, tmp_path):
    run("index", str(docs), "--kb", "kb1")
    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        '{"question": "多久可以退货", "answer": "七天内"}\n{"question": "满多少钱包邮", "source": "配送.txt"}\n',
        encoding="utf-8",
    )
    out = run("eval-retrieval", "--kb", "kb1", "--qa", str(qa), "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    by_mode = {r["mode"]: r for r in data["results"]}
    assert set(by_mode) == {"dense", "bm25", "hybrid"}
    assert by_mode["bm25"]["hit_at_1"] == 1.0 and by_mode["hybrid"]["hit_at_5"] == 1.0
    assert by_mode["hybrid"]["p50_ms"] > 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "没有答案"}\n', encoding="utf-8")
    out = run("eval-retrieval", "--kb", "kb1", "--qa", str(bad))
    assert out.exit_code == 1 and "bad.jsonl: line 1: needs 'answer' and/or 'source'" in flat(out.output)


def test_ask_streams_an_answer_then_lists_sources(home, docs, tiny_qwen2):
    run("index", str(docs), "--kb", "kb1")
    out = run("ask", "多久可以退货？", "--kb", "kb1", "--model", str(tiny_qwen2))
    assert out.exit_code == 0, out.output
    assert "sources" in out.stdout and "退货政策.md (line 2)" in out.stdout
    nothing = run("ask", "火星的卫星叫什么", "--kb", "kb1", "--model", str(tiny_qwen2), "--mode", "bm25")
    assert "知识库中没有找到" in nothing.stdout and "sources" not in nothing.stdout
    ghost = run("ask", "多久可以退货？", "--kb", "kb1", "--model", str(tiny_qwen2), "--persona", "ghost")
    assert ghost.exit_code == 1 and "persona 'ghost' is not available" in flat(ghost.output)


def test_a_squad_file_indexed_as_is_evaluates_on_its_paragraphs(home, tmp_path):
    qa = tmp_path / "问答集.json"
    paragraphs = [
        (
            "故宫",
            "它位于北京中轴线的中心，始建于明朝永乐四年，是明清两代的皇家宫殿。",
            "故宫始建于什么时候？",
            "明朝永乐四年",
        ),
        ("长城", "它东起山海关，西至嘉峪关，全长六千多公里。", "长城西至哪里？", "嘉峪关"),
        ("西湖", "它位于杭州市西部，以苏堤春晓等十景闻名。", "杭州的哪个湖以十景闻名？", "苏堤春晓"),
    ]
    qa.write_text(
        json.dumps(
            {
                "data": [
                    {"title": t, "paragraphs": [{"context": c, "qas": [{"question": q, "answers": [{"text": a}]}]}]}
                    for t, c, q, a in paragraphs
                ]
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    assert run("index", str(qa), "--kb", "qa").exit_code == 0
    hits = json.loads(run("search", "长城的终点", "--kb", "qa", "--mode", "bm25", "-k", "3", "--json").stdout)
    assert all("?" not in h["text"] and "？" not in h["text"] for h in hits)  # the questions are not indexed
    assert hits[0]["text"].startswith("长城\n") and hits[0]["location"] == "长城 ¶1"
    data = json.loads(run("eval-retrieval", "--kb", "qa", "--qa", str(qa), "--json").stdout)
    by_mode = {r["mode"]: r for r in data["results"]}
    assert data["questions"] == 3 and by_mode["bm25"]["hit_at_1"] == by_mode["hybrid"]["hit_at_1"] == 1.0


def test_reembed_switches_a_knowledge_base_and_another_embedder_is_refused_with_the_command(home, docs):
    assert run("index", str(docs), "--kb", "客服", "--json").exit_code == 0
    refused = run("search", "包邮", "--kb", "客服", "--embedder", "all-MiniLM-L6-v2")
    assert refused.exit_code == 1
    assert "rolechat kb reembed 客服 --embedder all-MiniLM-L6-v2" in flat(refused.output)
    out = run("kb", "reembed", "客服", "--embedder", "all-MiniLM-L6-v2", "--json")
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["after"].startswith("all-MiniLM-L6-v2") and report["embedded"] == report["chunks"] > 0
    show = json.loads(run("kb", "show", "客服", "--json").stdout)
    assert show["embedder"]["name"] == "all-MiniLM-L6-v2" and show["embedder"]["prefix"] == "none"
    assert json.loads(run("search", "包邮", "--kb", "客服", "--json").stdout)  # opened with its own, no flag
    again = run("index", str(docs), "--kb", "客服", "--json")
    assert json.loads(again.stdout)["chunks_embedded"] == 0 and not json.loads(again.stdout)["rebuilt"]
