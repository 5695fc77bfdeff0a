"""The knowledge-base page under AppTest: indexing (folder and upload) with its report, listing, search,
deleting a document and a whole knowledge base. Real Chroma and BM25 on disk, fake embeddings.
"""

from __future__ import annotations

from rolechat import settings
from tests.app_support import app_test, write_docs


def kb_page(monkeypatch, model):
    at = app_test(monkeypatch, model).run()
    return at.switch_page("ui/pages/kb.py").run()


def index_folder(at, name: str, folder) -> None:
    target = at.selectbox(key="kb_target")
    target.select(target.options[-1]).run()  # "+ new knowledge base"
    at.text_input(key="kb_new_name").input(name).run()
    at.text_input(key="kb_folder").input(str(folder)).run()
    at.button(key="kb_index_folder").click().run()


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_empty_home_shows_how_to_start_without_errors(monkeypatch, tiny_qwen2):
    at = kb_page(monkeypatch, tiny_qwen2)
    assert not at.exception
    assert "还没有知识库" in at.info[0].value
    assert not [s for s in at.selectbox if s.key == "kb_search_kb"]  # nothing to search yet


def test_index_a_folder_report_search_and_delete(monkeypatch, tiny_qwen2, tmp_path):
    docs = write_docs(tmp_path / "docs")
    (docs / "empty.txt").write_text("", encoding="utf-8")
    (docs / "photo.xyz").write_bytes(b"\x00\x01\x02")
    at = kb_page(monkeypatch, tiny_qwen2)
    index_folder(at, "城市", docs)
    assert not at.exception

    report = metrics(at)
    assert (report["新索引"], report["已跳过"], report["失败"]) == ("2", "1", "1")
    problems = at.dataframe[0].value
    reasons = dict(zip(problems["文件"].map(lambda p: p.rsplit("/", 1)[-1]), problems["原因"]))
    assert "unsupported" in reasons["photo.xyz"] and "empty" in reasons["empty.txt"]
    assert at.expander[0].label == "📚 城市 · 2 个文档 · 2 个片段"
    embedder = [c.value for c in at.caption if c.value.startswith("嵌入模型：")]
    assert embedder and "DeterministicFakeEmbedding(size=64)" in embedder[0]  # what its vectors came from

    at.text_input(key="kb_query").input("外滩在哪里").run()
    hits = [m.value for m in at.markdown if m.value.startswith("**1.**")]
    assert hits and "`shanghai.md`" in hits[0]

    at.selectbox(key="kb_doc_城市").select(str(docs / "shanghai.md")).run()
    at.button(key="kb_del_doc_城市").click().run()
    assert not at.exception
    assert any("shanghai.md" in s.value for s in at.success)
    assert at.expander[0].label == "📚 城市 · 1 个文档 · 1 个片段"
    at.text_input(key="kb_query").input("外滩").run()
    assert "没有找到相关片段" in at.info[0].value

    assert at.button(key="kb_del_城市").disabled  # deleting a whole KB needs the confirmation box
    at.checkbox(key="kb_confirm_城市").check().run()
    at.button(key="kb_del_城市").click().run()
    assert not at.exception
    assert not (settings.kb_dir() / "城市").exists()
    assert "还没有知识库" in at.info[0].value


def test_upload_files_into_an_existing_knowledge_base_is_incremental(monkeypatch, tiny_qwen2, tmp_path):
    at = kb_page(monkeypatch, tiny_qwen2)
    index_folder(at, "城市", write_docs(tmp_path / "docs"))
    at.selectbox(key="kb_target").select("城市").run()
    at.file_uploader(key="kb_upload").set_value(
        [
            ("guangzhou.md", "# 广州\n\n广州的早茶很有名，虾饺和烧卖最受欢迎。\n".encode(), "text/markdown"),
            ("gbk.txt", "深圳是一座年轻的城市。".encode("gb18030"), "text/plain"),
        ]
    ).run()
    at.button(key="kb_index_files").click().run()
    assert not at.exception
    report = metrics(at)
    assert report["新索引"] == "2"
    assert at.expander[0].label == "📚 城市 · 4 个文档 · 4 个片段"

    at.text_input(key="kb_query").input("深圳").run()
    hits = [m.value for m in at.markdown if m.value.startswith("**1.**")]
    assert hits and "`gbk.txt`" in hits[0]

    at.button(key="kb_index_files").click().run()  # the same files again: nothing new
    assert metrics(at)["未变化"] == "2" and metrics(at)["新索引"] == "0"


def test_bad_folder_and_bad_name_are_reported_not_raised(monkeypatch, tiny_qwen2, tmp_path):
    at = kb_page(monkeypatch, tiny_qwen2)
    index_folder(at, "城市", tmp_path / "missing")
    assert not at.exception
    assert "索引失败" in at.error[0].value and "missing" in at.error[0].value
    index_folder(at, "a/b", write_docs(tmp_path / "docs"))
    assert not at.exception
    assert "索引失败" in at.error[0].value and "a/b" in at.error[0].value


def test_each_knowledge_base_shows_the_embedder_it_was_built_with(monkeypatch, tiny_qwen2, tmp_path):
    from rolechat.rag import KnowledgeBase, RAGConfig
    from tests.classify_support import build_tiny_bert

    encoder = build_tiny_bert(tmp_path / "tiny-encoder")
    KnowledgeBase("旧库", RAGConfig(embedder=str(encoder), embedder_backend="onnx")).index([write_docs(tmp_path / "d")])
    at = kb_page(monkeypatch, tiny_qwen2)
    monkeypatch.setattr("ui.kb.embeddings", lambda: None)  # the app's own choice: each by its record
    at.run()
    lines = [c.value for c in at.caption if c.value.startswith("嵌入模型：")]
    assert lines == [f"嵌入模型：{encoder} (onnx) · 32 维 · 前缀：无（换模型请用 `rolechat kb reembed`）"]
