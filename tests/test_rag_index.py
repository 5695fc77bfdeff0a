"""Incremental, crash-safe indexing: the manifest, Chroma and BM25 always agree, and only new text is embedded."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from rolechat.rag import KnowledgeBase, RAGConfig, delete_kb, list_kbs
from rolechat.rag.lexical import ids_digest
from rolechat.rag.store import all_ids, collection_name

ROOT = Path(__file__).resolve().parents[1]


class CountingEmbedding(DeterministicFakeEmbedding):
    """Deterministic fake vectors that remember every text it was asked to embed."""

    calls: list = []

    def embed_documents(self, texts):
        self.calls.extend(texts)
        return super().embed_documents(texts)


def sentences(topic: str, n: int) -> str:
    return "".join(f"{topic}的第{i}条说明：这里详细介绍{topic}在第{i}种情况下的处理办法和注意事项。" for i in range(n))


def write_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "部署.md").write_text(
        "# 部署\n" + sentences("部署", 30) + "\n## 升级\n" + sentences("升级", 30), encoding="utf-8"
    )
    (folder / "退货.txt").write_text(sentences("退货", 12), encoding="utf-8")
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "账号 安全.md").write_text("# 账号\n" + sentences("密码", 20), encoding="utf-8")
    return folder


def state(kb: KnowledgeBase) -> dict:
    """Everything that must agree: manifest chunk ids, Chroma ids, BM25 ids."""
    manifest_ids = kb.manifest.chunk_ids()
    kb.bm25  # noqa: B018 - loads (and repairs) the BM25 index
    return {
        "manifest": manifest_ids,
        "chroma": all_ids(kb.collection),
        "bm25": kb.bm25.digest,
        "files": {p: f.sha256 for p, f in kb.manifest.files().items()},
    }


def assert_consistent(kb: KnowledgeBase) -> dict:
    s = state(kb)
    assert s["manifest"] == s["chroma"]
    assert s["bm25"] == ids_digest(list(s["manifest"]))
    assert kb.collection.count() == len(s["manifest"])  # no duplicates
    return s


@pytest.fixture
def emb():
    e = CountingEmbedding(size=32)
    e.calls = []
    return e


def small_cfg(**kw) -> RAGConfig:
    return RAGConfig(chunk_size=64, chunk_overlap=8, **kw)


def test_unchanged_folder_embeds_nothing_and_never_duplicates(tmp_path, emb):
    corpus = write_corpus(tmp_path / "docs")
    kb = KnowledgeBase("manual", small_cfg(), embeddings=emb)
    first = kb.index([corpus])
    assert first.summary()["indexed"] == 3 and first.chunks_added > 10
    assert first.chunks_embedded == len(set(emb.calls)) == first.chunks_added
    before = assert_consistent(kb)

    emb.calls.clear()
    again = kb.index([corpus])
    assert again.summary()["unchanged"] == 3
    assert (again.chunks_added, again.chunks_removed, again.chunks_embedded) == (0, 0, 0)
    assert emb.calls == []
    assert assert_consistent(kb) == before


def test_embedding_calls_group_texts_of_similar_token_counts(tmp_path):
    """Batches are padded to their longest text: texts are grouped by the embedder's token counts, which
    need not follow their lengths in characters (code has several characters per token, Chinese ~1)."""
    from rolechat.rag.knowledge_base import _EmbedQueue

    class TokenCounting(CountingEmbedding):
        def count_tokens(self, texts):
            return [len(t.split()) for t in texts]  # "tokens" = words here

    # text i: i + 1 words of 80 - i characters, so its length in characters does not follow its "tokens"
    texts = {f"k{i}": " ".join(["w" * (80 - i)] * (i + 1)) for i in range(64)}
    by_chars = sorted(range(64), key=lambda i: len(texts[f"k{i}"]))
    assert sorted(by_chars[:32]) != list(range(32))
    emb = TokenCounting(size=8)
    emb.calls = []
    queue = _EmbedQueue(emb, batch_size=4)
    try:
        jobs = queue.submit(texts)
        for _, future in jobs:
            future.result()
    finally:
        queue.close()
    calls = [sorted(int(k[1:]) for k in keys) for keys, _ in jobs]
    assert calls == [list(range(32)), list(range(32, 64))]


def test_saved_bm25_index_is_loaded_not_rebuilt(tmp_path, emb, monkeypatch):
    corpus = write_corpus(tmp_path / "docs")
    KnowledgeBase("manual", small_cfg(), embeddings=emb).index([corpus])
    from rolechat.rag.lexical import BM25Index

    monkeypatch.setattr(BM25Index, "build", lambda *a, **k: pytest.fail("BM25 rebuilt although in step"))
    fresh = KnowledgeBase("manual", small_cfg(), embeddings=emb)
    assert fresh.search("退货的第3条说明", k=1, mode="bm25")[0].page_content.startswith("退货的第")
    assert fresh.index([corpus]).summary()["unchanged"] == 3


def test_edit_reembeds_only_changed_chunks(tmp_path, emb):
    corpus = write_corpus(tmp_path / "docs")
    kb = KnowledgeBase("manual", small_cfg(), embeddings=emb)
    kb.index([corpus])
    target = corpus / "部署.md"
    file_chunks = len(kb.manifest.chunk_ids(str(target)))
    text = target.read_text(encoding="utf-8")
    target.write_text(text.replace("升级的第5条说明", "升级的第五条全新说明"), encoding="utf-8")

    emb.calls.clear()
    report = kb.index([corpus])
    statuses = {Path(f.path).name: f.status for f in report.files}
    assert statuses == {"部署.md": "updated", "退货.txt": "unchanged", "账号 安全.md": "unchanged"}
    assert 1 <= report.chunks_embedded <= 3 < file_chunks
    assert all("第五条全新说明" in t or "升级的第" in t for t in emb.calls)
    assert_consistent(kb)
    hits = kb.search("第五条全新说明", k=1, mode="bm25")
    assert "第五条全新说明" in hits[0].page_content
    assert not any("升级的第5条说明" in c.text for c in kb.manifest.chunks())


def test_deleted_file_and_failed_file_lose_their_chunks(tmp_path, emb):
    corpus = write_corpus(tmp_path / "docs")
    kb = KnowledgeBase("manual", small_cfg(), embeddings=emb)
    kb.index([corpus])
    (corpus / "退货.txt").unlink()
    (corpus / "sub" / "账号 安全.md").write_bytes(b"\x00\x01binary now")
    report = kb.index([corpus])
    statuses = {Path(f.path).name: f.status for f in report.files}
    assert statuses["退货.txt"] == "removed" and statuses["账号 安全.md"] == "failed"
    assert {Path(p).name for p in kb.manifest.files()} == {"部署.md"}
    assert not any(
        "退货" in d.page_content or "退货" in d.metadata["source"]
        for d in kb.search("退货的第3条说明", k=10, mode="bm25")
    )
    assert_consistent(kb)


def test_indexing_another_folder_keeps_the_first(tmp_path, emb):
    a = write_corpus(tmp_path / "a")
    b = tmp_path / "b"
    b.mkdir()
    (b / "新闻.txt").write_text(sentences("新闻", 5), encoding="utf-8")
    kb = KnowledgeBase("manual", small_cfg(), embeddings=emb)
    kb.index([a])
    report = kb.index([b])
    assert report.summary()["removed"] == 0
    assert len(kb.documents()) == 4
    kb.delete_document(b / "新闻.txt")
    assert len(kb.documents()) == 3
    assert_consistent(kb)


def test_changed_splitter_settings_rebuild_with_a_message(tmp_path, emb):
    corpus = write_corpus(tmp_path / "docs")
    KnowledgeBase("manual", small_cfg(), embeddings=emb).index([corpus])
    kb = KnowledgeBase("manual", RAGConfig(chunk_size=100, chunk_overlap=8), embeddings=emb)
    report = kb.index([corpus])
    assert "chunk_size: 64 -> 100" in report.rebuilt
    assert report.summary()["indexed"] == 3
    assert_consistent(kb)


def test_changed_file_readers_reread_every_file_once_keeping_unchanged_vectors(tmp_path, emb, monkeypatch):
    import rolechat.rag.knowledge_base as kb_module

    a, b = write_corpus(tmp_path / "a"), tmp_path / "b"
    b.mkdir()
    (b / "新闻.txt").write_text(sentences("新闻", 5), encoding="utf-8")
    kb = KnowledgeBase("manual", small_cfg(), embeddings=emb)
    kb.index([a, b])
    before = assert_consistent(kb)
    emb.calls.clear()

    monkeypatch.setattr(kb_module, "LOADER_VERSION", "99")  # same bytes may now give other text
    partial = kb.index([b])  # one folder: a's files are still as the old readers read them
    # read again, the same text came out: reported unchanged, nothing re-embedded
    assert "version 2 -> 99" in partial.reread and partial.summary()["unchanged"] == 1
    assert emb.calls == [] and assert_consistent(kb) == before
    full = kb.index([a, b])
    assert full.reread and full.summary()["unchanged"] == 4 and emb.calls == []
    again = kb.index([a, b])
    assert not again.reread and again.summary()["unchanged"] == 4
    assert assert_consistent(kb) == before
    (b / "新闻.txt").write_text(sentences("快讯", 5), encoding="utf-8")
    monkeypatch.setattr(kb_module, "LOADER_VERSION", "100")
    changed = kb.index([a, b])
    assert changed.reread and changed.summary() == {**changed.summary(), "unchanged": 3, "updated": 1}


def test_a_first_run_killed_midway_is_not_taken_for_changed_readers(tmp_path, emb, monkeypatch):
    corpus = write_corpus(tmp_path / "docs")
    kb = KnowledgeBase("manual", small_cfg(), embeddings=emb)

    def killed(*args):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(KnowledgeBase, "_finish_run", killed)  # every file is stored, the run never ends
        with pytest.raises(KeyboardInterrupt):
            kb.index([corpus])
    kb.close()
    again = KnowledgeBase("manual", small_cfg(), embeddings=emb).index([corpus])
    assert again.reread == "" and again.summary()["unchanged"] == 3 and again.summary()["updated"] == 0


def test_stray_and_missing_chroma_records_are_repaired(tmp_path, emb):
    corpus = write_corpus(tmp_path / "docs")
    kb = KnowledgeBase("manual", small_cfg(), embeddings=emb)
    kb.index([corpus])
    before = state(kb)
    lost = sorted(before["chroma"])[0]
    kb.collection.delete(ids=[lost])  # as if Chroma lost a write
    kb.collection.upsert(ids=["stray"], embeddings=[[0.1] * 32], documents=["x"], metadatas=[{"source": "x"}])
    emb.calls.clear()
    report = kb.index([corpus])
    assert report.repaired == 1
    assert emb.calls == []  # the lost chunk's vector came from the cache
    assert assert_consistent(kb) == before


def test_chinese_names_map_to_valid_distinct_collections(tmp_path, emb):
    names = ["产品手册", "产品手册2", "客服 FAQ", "ab", "a/b".replace("/", "-")]
    mapped = [collection_name(n) for n in names]
    assert all(re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]", m) for m in mapped)
    assert len(set(mapped)) == len(mapped)
    assert collection_name("产品手册") == mapped[0]  # deterministic
    corpus = write_corpus(tmp_path / "docs")
    KnowledgeBase("产品手册", small_cfg(), embeddings=emb).index([corpus])
    assert list_kbs() == ["产品手册"]
    assert delete_kb("产品手册") and list_kbs() == []
    with pytest.raises(ValueError, match="invalid knowledge base name"):
        KnowledgeBase("../etc", embeddings=emb)


KILLED_RUN = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from rolechat.rag import KnowledgeBase, RAGConfig

    class Slow(DeterministicFakeEmbedding):
        def embed_documents(self, texts):
            time.sleep(0.05)
            return super().embed_documents(texts)

    kb = KnowledgeBase("crash", RAGConfig(chunk_size=64, chunk_overlap=8, batch_size=8), embeddings=Slow(size=32))
    kb.index([{corpus!r}], progress=lambda p: print(p.phase, flush=True))
""")


def test_killed_run_then_rerun_equals_uninterrupted_run(tmp_path):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    for i in range(24):
        (corpus / f"文档{i:02d}.md").write_text(f"# 文档{i}\n" + sentences(f"主题{i}", 25), encoding="utf-8")
    script = tmp_path / "run.py"
    script.write_text(KILLED_RUN.format(root=str(ROOT), corpus=str(corpus)), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    stored = 0
    deadline = time.time() + 120
    for line in proc.stdout:
        stored += line.strip() == "store"
        if stored >= 6 or time.time() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert stored >= 6, "the indexing subprocess never got going"

    kb = KnowledgeBase(
        "crash", RAGConfig(chunk_size=64, chunk_overlap=8, batch_size=8), embeddings=DeterministicFakeEmbedding(size=32)
    )
    partial = kb.manifest.files()
    assert 0 < len(partial) < 24  # really interrupted mid-run
    kb.index([corpus])
    resumed = assert_consistent(kb)

    clean = KnowledgeBase(
        "clean", RAGConfig(chunk_size=64, chunk_overlap=8, batch_size=8), embeddings=DeterministicFakeEmbedding(size=32)
    )
    clean.index([corpus])
    expected = assert_consistent(clean)
    assert resumed == expected


def docx_bomb(path: Path, megabytes: float, varied: bool = False) -> Path:
    """A real docx whose document.xml inflates to `megabytes` of empty paragraphs (a few KB compressed), or
    `varied` numbered ones (no bomb: they compress about 10 times)."""
    import io
    import zipfile

    import docx

    buffer = io.BytesIO()
    document = docx.Document()
    document.add_paragraph("开头")
    document.save(buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "word/document.xml":
                body = (
                    "".join(
                        f"<w:p><w:r><w:t>{i * 7919 % 100003}</w:t></w:r></w:p>" for i in range(int(megabytes * 28_000))
                    )
                    if varied
                    else "<w:p/>" * int(megabytes * 1_000_000 // 6)
                )
                data = data.replace(b"<w:body>", b"<w:body>" + body.encode())
            out.writestr(item.filename, data)
    return path


def test_hostile_files_fail_one_by_one_and_the_good_ones_are_searchable(tmp_path, emb, monkeypatch):
    import rolechat.rag.knowledge_base as kb_module

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(10):
        (docs / f"好{i}.md").write_text(f"# 第{i}篇\n\n" + sentences(f"主题{i}", 3), encoding="utf-8")
    (docs / "深.json").write_text("[" * 1000 + "]" * 1000, encoding="utf-8")  # 2 KB, 1,000 levels deep
    docx_bomb(docs / "炸弹.docx", 6)
    (docs / "坏.html").write_text("<p>会让读取器崩溃</p>", encoding="utf-8")
    real_parse = kb_module.parse

    def crashing(kind, path, data, max_expanded=None):  # a reader's own bug must fail its file only
        if kind == "html":
            raise RecursionError("maximum recursion depth exceeded")
        return real_parse(kind, path, data, max_expanded)

    monkeypatch.setattr(kb_module, "parse", crashing)
    report = KnowledgeBase("manual", small_cfg(), embeddings=emb).index([docs])
    outcome = {Path(f.path).name: f for f in report.files}
    assert [n for n, f in outcome.items() if f.status == "indexed"] == [f"好{i}.md" for i in range(10)]
    assert outcome["深.json"].status == "failed" and "nested deeper than 100 levels" in outcome["深.json"].reason
    assert outcome["炸弹.docx"].status == "failed" and "zip bomb" in outcome["炸弹.docx"].reason
    assert outcome["坏.html"].status == "failed" and "RecursionError" in outcome["坏.html"].reason
    kb = KnowledgeBase("manual", small_cfg(), embeddings=emb)
    assert Path(kb.search("主题7的第2条说明", k=1, mode="bm25")[0].metadata["source"]).name == "好7.md"
    big = docx_bomb(tmp_path / "大.docx", 1, varied=True)  # 1 MB of XML: no bomb, but over a 0.5 MB limit
    report = KnowledgeBase("manual", small_cfg(max_expanded_mb=0.5), embeddings=emb).index([big])
    assert report.files[0].status == "failed" and "more than the limit of 0.5 MB (rag.max_expanded_mb)" in (
        report.files[0].reason
    )
    assert len(KnowledgeBase("manual", small_cfg(), embeddings=emb).documents()) == 10  # nothing lost
