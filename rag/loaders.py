"""Files -> text blocks with locations: md, txt, pdf, docx, html, json/jsonl, csv/tsv, srt/vtt.

A loader returns a `LoadedFile`: blocks of text, each with a location users can find again (a line,
a page, a row, a timestamp). Anything that goes wrong raises `LoadError` with a reason meant for the
index report; unsupported extensions are recognised by `is_supported` before loading. Hostile files cost
bounded time and memory: a docx is judged by its zip directory before anything is inflated (at most
`max_expanded` bytes in all, no part inflating like a bomb, `rolechat.limits`), JSON nested deeper than
`rolechat.limits.MAX_DEPTH` is refused.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from rolechat.limits import InputError, check_archive, load_json
from rolechat.rag.decoding import DecodeError, decode

__all__ = [
    "Block",
    "LoadedFile",
    "LoadError",
    "load_file",
    "is_supported",
    "SUPPORTED",
    "normalize",
    "LOADER_VERSION",
    "squad_paragraphs",
]

# Bump when what a loader extracts from the same bytes changes: knowledge bases then re-read every file once
# (chunks whose text is unchanged keep their vectors). 2: SQuAD-style JSON indexes its paragraphs only.
LOADER_VERSION = "2"

SUPPORTED = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".json": "json",
    ".jsonl": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".srt": "subtitles",
    ".vtt": "subtitles",
}


class LoadError(ValueError):
    """A supported file could not be read; the message is the reason shown in the report."""


@dataclass
class Block:
    text: str
    location: str  # "line 12", "p. 3", "row 5", "00:01:02"
    first_line: int = 1  # line number of the block's first line, when lines mean something
    heading: str = ""  # context for every chunk of the block (a title), as Markdown headings are


@dataclass
class LoadedFile:
    kind: str
    encoding: str
    blocks: list[Block] = field(default_factory=list)
    markdown: bool = False  # '#' headings are structure


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED


_SPACES = re.compile(r"[ \t\u3000\xa0]+")


# Full-width CJK punctuation is how Chinese is written, not a compatibility form: NFKC would turn "，" into ","
# and answers quoted from the source would no longer match. Everything else NFKC changes is folded.
_KEEP = set("，。！？：；（）【】《》〈〉「」『』、～￥…—·“”‘’＂＇＃＄％＆＊＋－／＜＝＞＠［＼］＾＿｀｛｜｝")


def normalize(text: str) -> str:
    """Character-wise NFKC except CJK punctuation (Kangxi radicals, compatibility ideographs, full-width
    letters and digits, ligatures -> canonical forms), unified newlines, no NULs or BOMs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").replace("\ufeff", "")
    table = {}
    for ch in set(text):
        if ch.isascii() or ch in _KEEP:
            continue
        folded = unicodedata.normalize("NFKC", ch)
        if folded != ch:
            table[ord(ch)] = folded
    return text.translate(table) if table else text


def _decode_file(data: bytes) -> tuple[str, str]:
    try:
        return decode(data)
    except DecodeError as exc:
        raise LoadError(str(exc)) from None


def _text(data: bytes, kind: str) -> LoadedFile:
    text, enc = _decode_file(data)
    return LoadedFile(kind, enc, [Block(normalize(text), "line 1", 1)], markdown=kind == "markdown")


_PAGE_NUMBER = re.compile(r"^\s*(?:[-–—]\s*)?(?:第\s*)?\d{1,4}(?:\s*页)?(?:\s*/\s*\d{1,4})?(?:\s*[-–—])?\s*$")
_HYPHEN_BREAK = re.compile(r"([A-Za-z])-\n([a-z])")
_CJK_BREAK = re.compile(r"([\u3400-\u9fff，、；：])\n([\u3400-\u9fff])")


def _clean_pages(pages: list[str]) -> list[str]:
    """Drop page-number lines and headers/footers repeated on most pages; re-join broken lines."""
    lines_per_page = [[ln.strip() for ln in p.split("\n")] for p in pages]
    repeated: set[str] = set()
    if len(pages) >= 3:
        counts: dict[str, int] = {}
        for lines in lines_per_page:
            for ln in {*lines[:2], *lines[-2:]}:
                if ln:
                    counts[ln] = counts.get(ln, 0) + 1
        repeated = {ln for ln, c in counts.items() if c >= max(3, len(pages) * 0.6)}
    out = []
    for lines in lines_per_page:
        kept = [ln for ln in lines if ln not in repeated and not _PAGE_NUMBER.match(ln)]
        text = "\n".join(kept)
        text = _HYPHEN_BREAK.sub(r"\1\2", text)
        out.append(_CJK_BREAK.sub(r"\1\2", text).strip())
    return out


_CID = re.compile(r"\(cid:\d+\)")


def _pdf(path: Path, data: bytes) -> LoadedFile:
    # pdfplumber (pdfminer.six) reads ToUnicode maps and the predefined CJK CMaps (STSong-Light etc.), like
    # pypdf and PyMuPDF do on the Chinese PDFs of tests/test_rag_loaders.py; where a font has no Unicode
    # mapping at all, every library returns junk, but pdfminer marks it "(cid:N)" (pypdf emits control
    # characters silently), so the loader can refuse such pages instead of indexing mojibake.
    import pdfplumber
    from pdfminer.pdfparser import PDFSyntaxError

    if not data.lstrip().startswith(b"%PDF"):
        raise LoadError("not a PDF (missing %PDF header)")
    try:
        with pdfplumber.open(io.BytesIO(data)) as pdf:
            pages = [page.extract_text() or "" for page in pdf.pages]
    except (PDFSyntaxError, Exception) as exc:  # pdfminer raises many types on damaged files
        raise LoadError(f"corrupt or truncated PDF: {type(exc).__name__}: {exc}"[:200]) from None
    unmapped = 0
    for i, page in enumerate(pages):
        junk = sum(len(m) for m in _CID.findall(page))
        if junk and junk > 0.3 * len(page):
            unmapped += 1
            pages[i] = ""
        else:
            pages[i] = _CID.sub("", page)
    pages = _clean_pages([normalize(p) for p in pages])
    blocks = [Block(text, f"p. {i}") for i, text in enumerate(pages, 1) if text]
    if not blocks:
        if unmapped:
            raise LoadError("PDF fonts have no Unicode mapping: its text cannot be extracted correctly")
        raise LoadError("PDF has no extractable text (scanned images?)")
    return LoadedFile("pdf", "pdf", blocks)


def _docx(path: Path, data: bytes, max_expanded: int) -> LoadedFile:
    import docx
    from docx.enum.style import WD_STYLE_TYPE
    from docx.opc.exceptions import PackageNotFoundError

    try:
        check_archive(data, max_expanded, "rag.max_expanded_mb")
    except InputError as exc:  # python-docx inflates every part and parses its XML whole
        raise LoadError(str(exc)) from None
    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError, Exception) as exc:
        raise LoadError(f"corrupt docx: {type(exc).__name__}: {exc}"[:200]) from None
    # style names by id, looked up once: `paragraph.style` searches the styles part anew for every paragraph
    # (1.5 ms each: 40 s for a document of 27,000 short paragraphs)
    names = {s.style_id: s.name or "" for s in document.styles}
    default = getattr(document.styles.default(WD_STYLE_TYPE.PARAGRAPH), "name", "") or ""
    lines = []
    for para in document.paragraphs:
        text = para.text.strip()
        if not text:
            continue
        style_id = para._p.style  # the pStyle id, or None for the default paragraph style
        style = names.get(style_id, "") if style_id is not None else default
        level = re.match(r"(?:Heading|标题)\s*(\d)", style)
        lines.append("#" * int(level.group(1)) + " " + text if level else text)
    for table in document.tables:
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells]
            if any(cells):
                lines.append(" | ".join(cells))
    return LoadedFile("docx", "docx", [Block(normalize("\n".join(lines)), "para 1", 1)], markdown=True)


def _html(data: bytes) -> LoadedFile:
    from bs4 import BeautifulSoup

    text, enc = _decode_file(data)
    soup = BeautifulSoup(text, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "svg"]):
        tag.decompose()
    for level in range(1, 7):
        for tag in soup.find_all(f"h{level}"):
            tag.replace_with(f"\n{'#' * level} {tag.get_text(' ', strip=True)}\n")
    body = soup.get_text("\n")
    body = "\n".join(ln.strip() for ln in body.split("\n"))
    body = re.sub(r"\n{3,}", "\n\n", body).strip()
    return LoadedFile("html", enc, [Block(normalize(body), "line 1", 1)], markdown=True)


def _record_text(record) -> str:
    if isinstance(record, dict):
        return "\n".join(f"{k}: {_record_text(v)}" for k, v in record.items() if v not in (None, "", [], {}))
    if isinstance(record, list):
        return "\n".join(_record_text(v) for v in record)
    return str(record)


def _json(data: bytes, lines: bool) -> LoadedFile:
    text, enc = _decode_file(data)
    blocks = []
    if lines:
        for number, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                blocks.append(Block(normalize(_record_text(load_json(line))), f"line {number}", number))
            except InputError as exc:  # bad JSON, or nested deeper than rolechat.limits.MAX_DEPTH
                raise LoadError(f"line {number}: {exc}") from None
    else:
        try:
            obj = load_json(text)
        except InputError as exc:
            raise LoadError(str(exc)) from None
        paragraphs = squad_paragraphs(obj)
        if paragraphs is not None:
            blocks = [
                Block(normalize(text), location, heading=normalize(title)) for text, location, title in paragraphs
            ]
        else:
            items = obj if isinstance(obj, list) else [obj]
            blocks = [Block(normalize(_record_text(item)), f"item {i}") for i, item in enumerate(items, 1)]
    return LoadedFile("jsonl" if lines else "json", enc, [b for b in blocks if b.text.strip()])


def squad_paragraphs(obj) -> list[tuple[str, str, str]] | None:
    """(context, location, article title) per paragraph of a parsed SQuAD-style QA file (SQuAD, CMRC 2018,
    DRCD, ...), None for any other JSON. Such a file is a corpus of paragraphs plus questions about them: the
    paragraphs are the documents, and the questions, answers and ids must not be indexed with them (an index that
    contains the questions answers `eval-retrieval` from the questions themselves). The article's title is kept as the
    paragraphs' heading: often the paragraph never names its subject (on cmrc2018 this lifts hit@1 from 0.854
    to 0.886)."""
    articles = obj.get("data") if isinstance(obj, dict) else None
    if not (
        isinstance(articles, list)
        and articles
        and all(isinstance(a, dict) and isinstance(a.get("paragraphs"), list) for a in articles)
    ):
        return None
    found = []
    for number, article in enumerate(articles, 1):
        title = str(article.get("title") or "").strip()
        for index, para in enumerate(article["paragraphs"], 1):
            if not isinstance(para, dict) or not isinstance(para.get("context"), str):
                raise LoadError(f"SQuAD-style file: data[{number - 1}].paragraphs[{index - 1}] has no 'context' text")
            name = f"{title} ¶{index}" if title else f"article {number} ¶{index}"
            found.append((para["context"], name, title))
    return found


def _table(data: bytes, delimiter: str, kind: str) -> LoadedFile:
    text, enc = _decode_file(data)
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    except csv.Error as exc:
        raise LoadError(f"malformed {kind}: {exc}") from None
    if not rows:
        return LoadedFile(kind, enc, [])
    header, blocks = rows[0], []
    for number, row in enumerate(rows[1:], 2):
        pairs = [f"{h.strip()}: {v.strip()}" if h.strip() else v.strip() for h, v in zip(header, row) if v.strip()]
        if pairs:
            blocks.append(Block(normalize("；".join(pairs)), f"row {number}", number))
    return LoadedFile(kind, enc, blocks)


_CUE_TIME = re.compile(r"(\d{1,2}:)?\d{1,2}:\d{2}[.,]\d{1,3}\s*-->")


def _subtitles(data: bytes) -> LoadedFile:
    text, enc = _decode_file(data)
    blocks = []
    for cue in re.split(r"\n\s*\n", normalize(text)):
        lines = [ln.strip() for ln in cue.strip().split("\n") if ln.strip()]
        times = [ln for ln in lines if _CUE_TIME.search(ln)]
        if not times:
            continue
        start = times[0].split("-->")[0].strip().replace(",", ".").split(".")[0]
        body = list(lines[lines.index(times[0]) + 1 :])
        body = [re.sub(r"<[^>]+>", "", ln) for ln in body]
        if body:
            blocks.append(Block(" ".join(body), start))
    return LoadedFile("subtitles", enc, blocks)


def load_file(path: Path, max_bytes: int | None = None, max_expanded: int | None = None) -> tuple[LoadedFile, bytes]:
    """Read and parse one supported file. Returns the parsed file and its raw bytes (for hashing)."""
    kind = SUPPORTED.get(path.suffix.lower())
    if kind is None:
        raise LoadError(f"unsupported file type {path.suffix or '(none)'}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise LoadError(f"too large ({len(data) / 1e6:.1f} MB > {max_bytes / 1e6:.0f} MB)")
    if not data.strip():
        raise LoadError("empty file")
    return parse(kind, path, data, max_expanded), data


def _default_expanded() -> int:
    from rolechat.rag.config import RAGConfig

    return RAGConfig().max_expanded_bytes


def parse(kind: str, path: Path, data: bytes, max_expanded: int | None = None) -> LoadedFile:
    """The blocks of a file's bytes; `max_expanded`: the most a docx may inflate to (default: rag.max_expanded_mb's)."""
    if kind in ("markdown", "text"):
        loaded = _text(data, kind)
    elif kind == "pdf":
        loaded = _pdf(path, data)
    elif kind == "docx":
        loaded = _docx(path, data, max_expanded if max_expanded is not None else _default_expanded())
    elif kind == "html":
        loaded = _html(data)
    elif kind in ("json", "jsonl"):
        loaded = _json(data, lines=kind == "jsonl")
    elif kind in ("csv", "tsv"):
        loaded = _table(data, "," if kind == "csv" else "\t", kind)
    else:
        loaded = _subtitles(data)
    if not any(b.text.strip() for b in loaded.blocks):
        raise LoadError("no text content")
    return loaded
