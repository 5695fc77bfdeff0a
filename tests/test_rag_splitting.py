"""Chinese-aware splitting measured in the embedder's own tokens."""

from pathlib import Path

import pytest

from rolechat.rag.embedder import Embedder
from rolechat.rag.loaders import SUPPORTED, Block, LoadedFile, parse
from rolechat.rag.splitting import split_file

SELF_LLM = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpus" / "self-llm"


@pytest.fixture(scope="module")
def emb() -> Embedder:
    return Embedder()  # only its tokenizer is used here: no model is loaded


def md(text: str) -> LoadedFile:
    return LoadedFile("markdown", "utf-8", [Block(text, "line 1", 1)], markdown=True)


def test_chunks_never_exceed_the_embedder_limit_even_without_punctuation(emb):
    wall = "无标点的长段落" * 300 + "\n" + "，".join(["短句"] * 400) + "\n" + "word " * 800
    chunks = split_file(md(wall), emb.count_tokens, 600, 32, emb.max_tokens)  # asked for more than it reads
    counts = emb.count_tokens([c.text for c in chunks])
    assert max(counts) <= emb.max_tokens == 512 - 4  # e5 reads 512 with <s>, </s> and "passage:" among them
    assert "".join(c.text for c in chunks).count("无标点的长段落") >= 300  # nothing lost


def test_sentences_are_packed_whole_with_overlap(emb):
    sentences = [f"这是第{i}句话，用来测试按句子切分的效果。" for i in range(40)]
    chunks = split_file(md("".join(sentences)), emb.count_tokens, 64, 24, emb.max_tokens)  # ~19 tokens a sentence
    assert len(chunks) > 5
    for chunk in chunks:
        assert chunk.text.endswith("。")  # cut at sentence ends only
        assert emb.count_tokens([chunk.text])[0] <= 64
    for a, b in zip(chunks, chunks[1:]):
        last = a.text[a.text.rindex("这是第") :]
        assert b.text.startswith(last)  # the last sentence is repeated


def test_a_block_heading_prefixes_every_chunk_of_the_block(emb):
    loaded = LoadedFile("json", "utf-8", [Block("它位于北京。" * 80, "故宫 ¶1", heading="故宫"), Block("无题。", "¶2")])
    chunks = split_file(loaded, emb.count_tokens, 64, 8, emb.max_tokens)
    assert len(chunks) > 2
    assert all(c.text.startswith("故宫\n它位于") and c.headings == "故宫" for c in chunks[:-1])
    assert chunks[-1].text == "无题。" and chunks[-1].headings == ""


def test_headings_give_context_and_close_sections(emb):
    text = (
        "# 安装\n安装前先检查 Python 版本。\n## 环境配置\n设置 HF_HUB_OFFLINE=1。\n"
        "```bash\n# 这是注释不是标题\nexport A=1\n```\n# 使用\n运行 rolechat index。\n"
    )
    chunks = split_file(md(text), emb.count_tokens, 256, 32, emb.max_tokens)
    assert [(c.headings, c.location) for c in chunks] == [
        ("安装", "line 2"),
        ("安装 > 环境配置", "line 4"),
        ("使用", "line 10"),
    ]
    assert chunks[1].text.startswith("安装 > 环境配置\n设置 HF_HUB_OFFLINE=1。")
    assert "# 这是注释不是标题" in chunks[1].text


def test_chunk_size_is_capped_at_the_model_limit(emb):
    chunks = split_file(md("测试句子。" * 400), emb.count_tokens, 1000, 0, emb.max_tokens)
    assert max(emb.count_tokens([c.text for c in chunks])) <= emb.max_tokens


def test_self_llm_corpus_chunks_fit(emb):
    if not SELF_LLM.is_dir():
        pytest.skip(f"shared corpus not found at {SELF_LLM}")
    files = sorted(p for p in SELF_LLM.rglob("*.md"))[:25]
    chunks = [
        c
        for p in files
        for c in split_file(parse(SUPPORTED[p.suffix], p, p.read_bytes()), emb.count_tokens, 256, 32, emb.max_tokens)
    ]
    counts = emb.count_tokens([c.text for c in chunks])
    assert max(counts) <= emb.max_tokens
    assert sum(counts) / len(counts) > 120  # chunks are well filled, not fragments
