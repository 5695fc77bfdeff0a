"""Loading real files: every supported format yields the right text; bad files are reported, never fatal."""

import json
from pathlib import Path

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from rolechat.rag import KnowledgeBase
from rolechat.rag.loaders import LoadError, load_file, normalize

FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
needs_font = pytest.mark.skipif(not FONT.is_file(), reason="needs the CJK font fonts-wqy-microhei (see .ci/run)")
pytestmark = pytest.mark.filterwarnings("ignore:Glyph .* missing from font")


def make_pdf(path: Path, pages: list[list[str]], strip_unicode_maps: bool = False) -> Path:
    """A real PDF with an embedded CJK TrueType font (matplotlib, fonttype 42), one text line per entry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager
    from matplotlib.backends.backend_pdf import PdfPages

    font = font_manager.FontProperties(fname=str(FONT))
    with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(path) as pdf:
        for lines in pages:
            fig = plt.figure(figsize=(6, 4))
            for i, line in enumerate(lines):
                fig.text(0.05, 0.92 - 0.1 * i, line, fontproperties=font, fontsize=10)
            pdf.savefig(fig)
            plt.close(fig)
    if strip_unicode_maps:  # what many producer tools do: glyph ids with no way back to characters
        import pypdf
        from pypdf.generic import NameObject

        writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(path))
        for page in writer.pages:
            for font_ref in page["/Resources"]["/Font"].values():
                font_obj = font_ref.get_object()
                if "/ToUnicode" in font_obj:
                    del font_obj[NameObject("/ToUnicode")]
        writer.write(path)
    return path


@needs_font
def test_pdf_text_is_right_normalized_and_without_layout_noise(tmp_path):
    pages = [
        ["产品手册", f"第{n}页讲的是部署。使用 vLLM 部署 Qwen2 模型时，需要先安装依赖。", f"⼀⼆⼈康熙部首{n}", str(n)]
        for n in range(1, 4)
    ]
    loaded, _ = load_file(make_pdf(tmp_path / "手册 v2.pdf", pages))
    assert [b.location for b in loaded.blocks] == ["p. 1", "p. 2", "p. 3"]
    first = loaded.blocks[0].text
    assert "使用 vLLM 部署 Qwen2 模型时，需要先安装依赖。" in first
    assert "一二人康熙部首1" in first  # Kangxi radicals (U+2F00..) normalised to ordinary characters
    assert "产品手册" not in first  # header repeated on every page
    assert not any(line.strip() == "1" for line in first.split("\n"))  # page number


@needs_font
def test_pdf_without_unicode_maps_is_refused_not_indexed_as_mojibake(tmp_path):
    path = make_pdf(
        tmp_path / "broken-fonts.pdf",
        [["这段文字的字体没有 Unicode 映射表，提取出来只会是乱码。"]],
        strip_unicode_maps=True,
    )
    with pytest.raises(LoadError, match="no Unicode mapping"):
        load_file(path)


def test_docx_headings_paragraphs_and_tables(tmp_path):
    import docx

    document = docx.Document()
    document.add_heading("安装指南", level=1)
    document.add_paragraph("先安装 Python 3.11，再创建虚拟环境。")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "命令", "作用"
    table.cell(1, 0).text, table.cell(1, 1).text = "rolechat index", "建立索引"
    document.save(tmp_path / "指南.docx")
    loaded, _ = load_file(tmp_path / "指南.docx")
    text = loaded.blocks[0].text
    assert loaded.markdown and text.startswith("# 安装指南\n先安装 Python 3.11，再创建虚拟环境。")
    assert "rolechat index | 建立索引" in text


def test_html_drops_scripts_and_keeps_headings(tmp_path):
    (tmp_path / "a.html").write_text(
        "<html><head><style>p{color:red}</style><script>var x='不要';</script></head>"
        "<body><h2>常见问题</h2><p>如何重置密码？</p><p>在设置页点击“忘记密码”。</p></body></html>",
        encoding="utf-8",
    )
    text = load_file(tmp_path / "a.html")[0].blocks[0].text
    assert "## 常见问题" in text and "忘记密码" in text
    assert "不要" not in text and "color" not in text


def test_squad_style_json_indexes_its_paragraphs_under_their_titles_and_not_its_questions(tmp_path):
    squad = {
        "version": "v1.0",
        "data": [
            {
                "title": "故宫",
                "id": "A1",
                "paragraphs": [
                    {
                        "id": "P1",
                        "context": "它位于北京中轴线的中心，始建于明朝永乐四年。",
                        "qas": [
                            {
                                "question": "故宫始建于哪一年？",
                                "id": "Q1",
                                "answers": [{"text": "明朝永乐四年", "answer_start": 12}],
                            }
                        ],
                    },
                    {"id": "P2", "context": "现为故宫博物院。", "qas": []},
                ],
            },
            {"paragraphs": [{"context": "没有标题的段落。", "qas": [{"question": "无关问题", "answers": []}]}]},
        ],
    }
    (tmp_path / "qa.json").write_text(json.dumps(squad, ensure_ascii=False), encoding="utf-8")
    loaded, _ = load_file(tmp_path / "qa.json")
    assert [(b.text, b.location, b.heading) for b in loaded.blocks] == [
        ("它位于北京中轴线的中心，始建于明朝永乐四年。", "故宫 ¶1", "故宫"),
        ("现为故宫博物院。", "故宫 ¶2", "故宫"),
        ("没有标题的段落。", "article 2 ¶1", ""),
    ]
    squad["data"][0]["paragraphs"][1] = {"qas": []}
    (tmp_path / "qa.json").write_text(json.dumps(squad, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(LoadError, match=r"data\[0\]\.paragraphs\[1\] has no 'context'"):
        load_file(tmp_path / "qa.json")


def test_json_jsonl_csv_tsv_subtitles_keep_locations(tmp_path):
    (tmp_path / "a.json").write_text(
        json.dumps([{"问题": "怎么退货", "答案": "七天内"}, {"问题": "运费", "答案": "包邮"}], ensure_ascii=False),
        encoding="utf-8",
    )
    (tmp_path / "b.jsonl").write_text('{"q": "第一条"}\n\n{"q": "第三行"}\n', encoding="utf-8")
    (tmp_path / "c.csv").write_text("名称,价格\n苹果,5元\n香蕉,3元\n", encoding="gbk")
    (tmp_path / "d.tsv").write_text("名称\t价格\n梨\t4元\n", encoding="utf-8")
    (tmp_path / "e.srt").write_text(
        "1\n00:00:01,000 --> 00:00:02,500\n大家好\n\n2\n00:01:02,000 --> 00:01:04,000\n<i>今天讲部署</i>\n",
        encoding="utf-8",
    )
    (tmp_path / "f.vtt").write_text("WEBVTT\n\n00:00:05.000 --> 00:00:06.000\n欢迎收看\n", encoding="utf-8")
    blocks = lambda name: [(b.text, b.location) for b in load_file(tmp_path / name)[0].blocks]
    assert blocks("a.json") == [("问题: 怎么退货\n答案: 七天内", "item 1"), ("问题: 运费\n答案: 包邮", "item 2")]
    assert blocks("b.jsonl") == [("q: 第一条", "line 1"), ("q: 第三行", "line 3")]
    assert blocks("c.csv") == [("名称: 苹果；价格: 5元", "row 2"), ("名称: 香蕉；价格: 3元", "row 3")]
    assert load_file(tmp_path / "c.csv")[0].encoding == "gbk"
    assert blocks("d.tsv") == [("名称: 梨；价格: 4元", "row 2")]
    assert blocks("e.srt") == [("大家好", "00:00:01"), ("今天讲部署", "00:01:02")]
    assert blocks("f.vtt") == [("欢迎收看", "00:00:05")]


def test_normalize_full_width_and_newlines():
    assert normalize("ＡＢＣ１２３\r\n⽇⽉") == "ABC123\n日月"


@needs_font
def test_mixed_folder_every_good_file_indexed_every_bad_one_reported(tmp_path):
    folder = tmp_path / "混合 文件夹"
    folder.mkdir()
    text = "知识库支持各种编码。我们今天讨论如何部署模型，以及系统的配置方法。"
    traditional = "這個知識庫支援各種編碼。我們今天討論如何部署模型，以及系統的設定方法。"
    (folder / "utf8 说明.md").write_text("# 说明\n" + text, encoding="utf-8")
    (folder / "gbk.txt").write_bytes(text.encode("gbk"))
    (folder / "gb18030.txt").write_bytes((text + "𠀀").encode("gb18030"))
    (folder / "utf16.txt").write_bytes(text.encode("utf-16"))
    (folder / "big5.txt").write_bytes(traditional.encode("big5"))
    (folder / "bom.txt").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    (folder / "empty.txt").write_bytes(b"")
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02\xff" * 100)
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\ngarbage\x00\xff")
    good_pdf = make_pdf(tmp_path / "good.pdf", [["第一页：模型部署。"]])
    (folder / "truncated.pdf").write_bytes(good_pdf.read_bytes()[: len(good_pdf.read_bytes()) // 3])
    (folder / "good.pdf").write_bytes(good_pdf.read_bytes())
    (folder / "bad.json").write_text('{"a": 1,,}', encoding="utf-8")
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")

    kb = KnowledgeBase("混合", embeddings=DeterministicFakeEmbedding(size=16))
    report = kb.index([folder])
    by_name = {Path(f.path).name: f for f in report.files}
    for name, encoding in [
        ("utf8 说明.md", "utf-8"),
        ("gbk.txt", "gbk"),
        ("gb18030.txt", "gb18030"),
        ("utf16.txt", "utf-16"),
        ("big5.txt", "big5"),
        ("bom.txt", "utf-8-sig"),
        ("good.pdf", "pdf"),
    ]:
        assert by_name[name].status == "indexed", (name, by_name[name])
        assert by_name[name].encoding == encoding
    reasons = {
        name: by_name[name].reason
        for name in ("empty.txt", "binary.txt", "corrupt.pdf", "truncated.pdf", "bad.json", "image.png")
    }
    assert reasons["empty.txt"] == "empty file"
    assert "binary" in reasons["binary.txt"]
    assert "PDF" in reasons["corrupt.pdf"] and "PDF" in reasons["truncated.pdf"]
    assert "invalid JSON" in reasons["bad.json"]
    assert "unsupported" in reasons["image.png"] and by_name["image.png"].status == "skipped"
    chunks = {c.path: c for c in kb.manifest.chunks()}
    assert any("這個知識庫" in c.text for c in chunks.values())  # Big5 decoded, not GB18030 mojibake
    assert kb.manifest.chunks()[0].text  # and the index is searchable in both scripts
    assert kb.search("部署模型", k=3, mode="bm25")
