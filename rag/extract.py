"""Extractive answers: the sentence(s) of the retrieved chunks that answer a question, quoted verbatim.

A model too small to copy facts out of passages (the built-in demo model) states wrong facts with confidence
when asked to answer from them. An extractive answer cannot invent anything: it quotes the sentences of the
retrieved chunks that best match the question, each with its citation number, or says plainly that the
knowledge base holds no answer (and shows the closest sources) when even the best sentence matches too little.

    found = extract("冲泡云雾毛尖的水温是多少？", docs, embeddings=kb.embeddings, idf=kb.bm25.idf)
    found.grounded, found.confidence, found.text     # text: the lead-in, then 「sentence」[n] lines

Each sentence of the chunks is scored against the question by two judges:

- dense: the cosine between the question's and the sentence's embeddings (the knowledge base's embedder,
  multilingual-e5-small by default, which reads Chinese);
- lexical: the IDF-weighted share of the question's terms (`lexical.query_terms`) the sentence holds, the
  chunk's heading path counting too (a question names its subject; the sentence under a heading often
  does not), plus BM25 over the candidate sentences.

A third judge, the reader (`rag.reader`, on by default), reads the question and each of the best MAX_CANDIDATES
sentences together (a cross-encoder) and gives the probability that the sentence answers it.

The sentences are ranked by DENSE_RANK x dense + LEXICAL_RANK x lexical + BM25_SHARE x BM25 + RANK_SHARE / the
chunk's retrieval rank + TYPE_RANK x kind + READ_RANK x read, and the best one is quoted with the next best of the
same chunk (an answer often takes two sentences, and a question reworded away from the text is often nearest to
the sentence before the answer). `kind` is the answer type, the classic extractive-QA signal: a question asking
多少钱 wants a sum of money, 几点 a time, 多久 a duration, 谁 a person, 哪里 a place, 多少/几 a count with its
unit (`question_type`); a sentence that holds such an expression (`holds_answer_type`: numerals with a unit,
dates, jieba's name tags) gets kind 1, one that does not -1, and every sentence 0 when the question is of no type
(yes/no, what, how).

Whether to answer at all is `confidence` = DENSE_SHARE x the best sentence's cosine + (1 - DENSE_SHARE) x its
chunk's coverage (the IDF-weighted share of the question's terms found anywhere in the chunk, heading included)
+ TYPE_BONUS when a quoted sentence holds the answer type + MARGIN_SHARE x how far the best cosine stands above the
median of the other candidates' + READ_SHARE x the quoted sentences' best reader probability (`quoted_confidence`):
below `threshold` the answer is "not in the knowledge base". Without a reader (`rag.extract_reader = false`, or no
encoder here) the probability counted is READ_PRIOR, the value at which the one threshold refuses as the threshold
calibrated without the reader does. The reader counts in the confidence since it was trained on reworded questions
too (scripts/train_reader.py --paraphrase): the first reader, trained on cmrc's questions alone (which reuse the
passage's words), rejected paraphrases ("图书馆有没有WiFi" for "馆内提供免费无线网络"), and any share of it in the
confidence cost more answers than it saved refusals. The chunk's coverage, not the sentence's, because a
question asked in other words shares few terms with the answering sentence but names the subject its chunk is
about, while a question the documents do not answer names something (a 保质期, an owner) that no retrieved chunk
holds. The weights and the default threshold were calibrated
on cmrc2018 with unanswerable questions plus the demo benchmark's questions (docs/benchmarks.md, "Extractive
answers"; bench/bench_extract.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rolechat.rag.lexical import bm25_scores, query_terms, tokenize
from rolechat.rag.ranking import chunk_body

if TYPE_CHECKING:
    from rolechat.rag.reader import Reader

__all__ = [
    "Extract",
    "Sentence",
    "extract",
    "rank_sentences",
    "split_sentences",
    "question_type",
    "holds_answer_type",
    "quoted_confidence",
    "DENSE_SHARE",
    "READ_PRIOR",
    "READ_SHARE",
    "THRESHOLD",
    "LEAD_IN",
    "NO_ANSWER",
]

DENSE_SHARE = 0.8  # weight of the sentence's cosine in `confidence`, the rest its chunk's coverage (calibrated)
THRESHOLD = 0.81  # default rag.extract_threshold (bench/bench_extract.py; docs/benchmarks.md says how it was set)
MAX_CANDIDATES = 16  # sentences embedded per question (the lexically best ones)
MIN_CHARS = 4  # shorter "sentences" (list markers, a lone heading word) are never an answer
TITLE_CHARS = 24  # a line this short without any punctuation is a title, not an answer
HEADING_SHARE = 1.0  # a question term found only in the heading path counts this much
DENSE_RANK = 0.75  # weight of the sentence's cosine in the ranking
LEXICAL_RANK = 0.25  # weight of the sentence's term share in the ranking (not in the confidence)
BM25_SHARE = 0.1  # weight of normalised sentence BM25 in the ranking (not in the confidence)
RANK_SHARE = 0.2  # weight of 1 / the chunk's retrieval rank in the ranking (not in the confidence)
TYPE_BONUS = 0.02  # added to the confidence when the quoted sentences hold what the question asks for (calibrated)
TYPE_RANK = 0.1  # added to a sentence's ranking score when it holds it, taken off when not (calibrated)
MARGIN_SHARE = 0.25  # weight of the best cosine's lead over the other candidates' median in the confidence (calibrated)
READ_RANK = 0.5  # weight of the reader's probability in the ranking (calibrated)
READ_SHARE = 0.1  # weight of the quoted sentences' best reader probability in the confidence (calibrated)
READ_PRIOR = 0.15  # the probability counted without a reader: THRESHOLD - READ_SHARE x it is the threshold
# the calibration chose without the reader (0.795), the other weights as they are

LEAD_IN = "知识库原文摘录（抽取式回答，未经模型改写）："
NO_ANSWER = "知识库里没有找到这个问题的答案（抽取式回答）。最接近的资料："

# Answer types, the classic extractive-QA signal: what a question asks for (by its interrogative) and what in a
# sentence can be that (a number with its unit, a time, a place...). The first question pattern that matches decides.
_NUM = "[0-9０-９零〇一二两三四五六七八九十百千万亿半]"
_MEASURE = (
    "个|本|张|次|位|名|人|件|辆|册|条|层|楼|种|项|只|家|座|所|部|届|场|台|首|篇|章|集|期|批|份|元|块|角|毛|天|日|年|"
    "月|号|点|时|分|秒|周|星期|小时|钟头|米|克|斤|吨|升|度|倍|岁|成|折|%|％|公里|千米|厘米|毫米|公斤|千克|毫升|平方|亩|里"
)
_YES_NO = r"(?:[吗么嘛][？?！!。]*\s*$|是不是|有没有|要不要)"
QUESTION_TYPES = (
    ("charge", rf"(?:花钱|收费|收钱|要钱|付费|免费).*{_YES_NO}"),
    ("money", r"多少钱|几块钱|几元|价格|价钱|票价|售价|收费|费用|花多少|卖多少|赔多少|罚多少|多贵"),
    ("time", r"几点|什么时候|什么时间|何时|哪天|哪一天|哪年|哪一年|几月|几号|星期几|周几|哪个月|何年|哪个朝代"),
    ("duration", r"多久|多长时间|几天|几个月|几年|几个?小时|几分钟|几秒|多少(?:天|年|个?小时|分钟|秒|个月)"),
    ("person", r"谁|哪位|什么人|叫什么名字|名字叫什么|姓什么"),
    ("place", r"哪里|在哪|哪儿|什么地方|何处|何地|哪个(?:城市|国家|省|地区)|哪座城市"),
    ("number", r"多少|几(?!乎|何)|多大|多高|多重|多远|多宽|多深|多厚|多快|多长|第几"),
)
ANSWER_TYPES = {
    "charge": rf"免费|收费|收取|{_NUM}+\s*(?:多|余)?\s*(?:元|块|角|毛)",
    "money": rf"{_NUM}+\s*(?:多|余)?\s*(?:元|块|角|毛|分钱|美元|欧元|英镑|日元|港元|港币|万元|亿元)|[¥￥$]\s*\d|"
    "半价|倍",
    "time": rf"{_NUM}+\s*(?:点|时|年|月|日|号)|星期[一二三四五六日天]|周[一二三四五六日末]|[上下中]午|早上|晚上|凌晨|"
    r"傍晚|每天|每年|每周|每月|春节|节假日|工作日|当天|期间|世纪|年代|朝|时期",
    "duration": rf"{_NUM}+\s*(?:个)?\s*(?:秒|分钟|刻钟|小时|钟头|天|日|周|星期|个?月|年|世纪)|半(?:天|年|小时)|"
    "终身|永久",
    "person": r"先生|女士|教授|博士|老师|主任|馆长|经理|院长|校长|主席|总统|国王|皇帝|作者|导演|演员|创始人|"
    r"[A-Z][a-z]+",
    "place": r"[省市县区镇乡村路街道巷楼层室馆园厅站港岛州国山河湖海]|中心|广场|大道|大厦|附近|旁边|对面|位于|坐落",
    "number": rf"(?<![A-Za-z])\d|{_NUM}+\s*(?:多|余)?\s*(?:{_MEASURE})",
}
_ARTICLE = re.compile(r"(?<![0-9零〇一二两三四五六七八九十百千万亿])一(?=[个种位家座所部件])")  # 是一个, 有一种: "a"
_QUESTION_TYPES = [(name, re.compile(pattern)) for name, pattern in QUESTION_TYPES]
_ANSWER_TYPES = {name: re.compile(pattern) for name, pattern in ANSWER_TYPES.items()}
_NAMES = ("nr", "nrfg", "nrt")  # jieba's part-of-speech tags of a person's name
_PLACES = ("ns",)


_SENTENCE = re.compile(r"[^。！？!?；;\n]*(?:[。！？!?；;]+[”’」』）)]*|\n|$)")
_PUNCT = re.compile(r"[，。：；！？、,.:;!?]")
_MARKUP = re.compile(r"^\s*(?:#{1,6}\s+|[-*+>]\s+|\d{1,3}[.、)]\s*|\|)+")


@dataclass
class Sentence:
    """A candidate sentence: its text, the citation number of its chunk, and its scores."""

    text: str
    citation: int
    rank: int = 1  # its chunk's place in the retrieved list (1 = best)
    cover: float = 0.0  # IDF-weighted share of the question's terms found in the sentence
    heading: float = 0.0  # ... found only in its chunk's heading path
    dense: float = 0.0
    bm25: float = 0.0
    chunk_cover: float = 0.0  # IDF-weighted share of the question's terms found anywhere in its chunk
    kind: int = 0  # 1: it holds what the question asks for (a sum of money, a time...), -1: it does not, 0: untyped
    read: float | None = None  # the reader's probability that it answers the question (None: no reader)

    @property
    def lexical(self) -> float:
        return self.cover + HEADING_SHARE * self.heading

    @property
    def confidence(self) -> float:
        return DENSE_SHARE * self.dense + (1 - DENSE_SHARE) * self.chunk_cover + TYPE_BONUS * (self.kind == 1)

    @property
    def score(self) -> float:
        lexical = LEXICAL_RANK * self.lexical + BM25_SHARE * self.bm25
        read = READ_RANK * self.read if self.read is not None else 0.0
        return DENSE_RANK * self.dense + lexical + RANK_SHARE / self.rank + TYPE_RANK * self.kind + read


@dataclass
class Extract:
    """The outcome: `text` is the reply; `grounded` False when the knowledge base does not answer."""

    text: str
    grounded: bool
    confidence: float
    sentences: list[Sentence] = field(default_factory=list)  # the quoted ones, best first (or the best tried)


def split_sentences(text: str) -> list[str]:
    """Sentences of `text` verbatim (closing punctuation and quotes kept), blank ones left out."""
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def question_type(question: str) -> str | None:
    """What `question` asks for: "money", "charge" (whether it costs), "time", "duration", "person", "place",
    "number", or None (a yes/no question, a "what" or "how" question)."""
    for name, pattern in _QUESTION_TYPES:
        if pattern.search(question):
            return name
    return None


def holds_answer_type(text: str, kind: str) -> bool:
    """Whether `text` holds an expression of answer type `kind` (a sum of money, a date, a count with its
    unit...; a person's or a place's name by jieba's part-of-speech tags)."""
    if _ANSWER_TYPES[kind].search(_ARTICLE.sub("", text) if kind == "number" else text):
        return True
    if kind not in ("person", "place"):
        return False
    import jieba.posseg

    tags = _NAMES if kind == "person" else _PLACES
    return any(pair.flag in tags for pair in jieba.posseg.lcut(text))


def _parts(doc: Any) -> tuple[str, str]:
    """(heading path, text without it) of a retrieved chunk."""
    headings = (doc.metadata.get("headings") or "").strip()
    return headings, chunk_body(doc.page_content, headings)


def _candidates(docs: Sequence[Any]) -> list[tuple[Sentence, str]]:
    out = []
    for rank, doc in enumerate(docs, 1):
        citation = int(doc.metadata.get("citation", rank))
        headings, body = _parts(doc)
        for line in split_sentences(body):
            if line.lstrip().startswith("#"):  # a heading line is context, not an answer
                continue
            bare = _MARKUP.sub("", line).strip(" |")
            if len(bare) < MIN_CHARS or (len(bare) <= TITLE_CHARS and not _PUNCT.search(bare)):
                continue  # too short to answer, or a title line (no punctuation at all)
            out.append((Sentence(line, citation, rank), headings.lower()))
    return out


def _local_idf(terms: Iterable[str], texts: Sequence[str]) -> dict[str, float]:
    total = len(texts)
    out = {}
    for term in terms:
        df = sum(term in t for t in texts)
        out[term] = math.log(1 + (total - df + 0.5) / (df + 0.5))
    return out


def _bm25(terms: list[str], texts: list[str]) -> list[float]:
    """BM25 of each text over the candidates as the corpus, over the best one's."""
    scores = bm25_scores(terms, [tokenize(text) for text in texts])
    top = max(scores, default=0.0) or 1.0
    return [score / top for score in scores]


def _embed(embeddings: Any, question: str, texts: list[str]) -> np.ndarray:
    """Cosines of `texts` (passages) to `question` (a query), with the knowledge base's embedder."""
    if hasattr(embeddings, "embed_array"):
        q = embeddings.embed_array([question], query=True)[0]
        m = embeddings.embed_array(texts)
    else:  # any LangChain Embeddings
        q = np.asarray(embeddings.embed_query(question), dtype=np.float32)
        m = np.asarray(embeddings.embed_documents(texts), dtype=np.float32)
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    m = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    return m @ q


def rank_sentences(
    question: str,
    docs: Sequence[Any],
    embeddings: Any = None,
    idf: Callable[[Iterable[str]], dict[str, float]] | None = None,
    reader: Reader | None = None,
) -> list[Sentence]:
    """Every candidate sentence of `docs`, scored against `question`, best first (the MAX_CANDIDATES best by
    their terms, then by all the judges)."""
    found = _candidates(docs)
    if not found:
        return []
    texts = [s.text.lower() for s, _ in found]
    terms = list(dict.fromkeys(query_terms(question)))
    weights = _local_idf(terms, texts)
    if idf is not None:
        weights.update({t: w for t, w in idf(terms).items() if t in weights})
    total = sum(weights.values()) or 1.0
    for (sentence, heading), text in zip(found, texts):
        for term, weight in weights.items():
            if term in text:
                sentence.cover += weight / total
            elif term in heading:
                sentence.heading += weight / total
    for (sentence, _), value in zip(found, _bm25(terms, texts)):
        sentence.bm25 = value
    chunks = [(doc.page_content + " " + (doc.metadata.get("headings") or "")).lower() for doc in docs]
    covered = [sum(w for t, w in weights.items() if t in text) / total for text in chunks]
    wanted = question_type(question)
    for sentence, _ in found:
        sentence.chunk_cover = covered[sentence.rank - 1]
        if wanted is not None:
            sentence.kind = 1 if holds_answer_type(sentence.text, wanted) else -1
    sentences = sorted(
        (s for s, _ in found), key=lambda s: s.lexical + BM25_SHARE * s.bm25 + RANK_SHARE / s.rank, reverse=True
    )
    sentences = sentences[:MAX_CANDIDATES]
    if embeddings is not None:
        for sentence, cosine in zip(sentences, _embed(embeddings, question, [s.text for s in sentences])):
            sentence.dense = float(cosine)
    else:  # no embedder: the lexical judge alone decides
        for sentence in sentences:
            sentence.dense = min(sentence.lexical, 1.0)
    if reader is not None:
        for sentence, read in zip(sentences, reader.scores(question, [s.text for s in sentences])):
            sentence.read = read
    sentences.sort(key=lambda s: s.score, reverse=True)
    return sentences


def closest_sources(docs: Sequence[Any], ranked: Sequence[Sentence] = (), limit: int = 3, chars: int = 80) -> list[str]:
    """ "[n] file（location）：text…" lines of the best-ranked chunks: each chunk's best-ranked sentence in `ranked`
    (and what follows it, to `chars`), else the chunk's opening; "…" marks text left out on either side."""
    best: dict[int, Sentence] = {}
    for sentence in ranked:
        best.setdefault(sentence.rank, sentence)
    lines = []
    for n, doc in enumerate(docs[:limit], 1):
        _, body = _parts(doc)
        text = " ".join(body.split())
        start = text.find(" ".join(best[n].text.split())) if n in best else -1
        lead = "…" if start > 0 else ""
        text = text[max(start, 0) :]
        name = Path(doc.metadata.get("source", "?")).name
        location = doc.metadata.get("location", "")
        more = "…" if len(text) > chars else ""
        lines.append(f"[{doc.metadata.get('citation', n)}] {name}（{location}）：{lead}{text[:chars]}{more}")
    return lines


def _position(sentence: Sentence, docs: Sequence[Any]) -> int:
    return docs[sentence.rank - 1].page_content.find(sentence.text)


def quoted_confidence(chosen: Sequence[Sentence], ranked: Sequence[Sentence] = ()) -> float:
    """The confidence of quoting `chosen` (the best sentence first) out of the candidates `ranked`: the best
    one's, its answer type counted as held when any quoted sentence holds it (the amount is often in the
    sentence after the one that matches), plus MARGIN_SHARE x how far its cosine stands above the median of
    the other candidates' (a question the passages answer picks one sentence out; one they do not is about
    as near to all of them), plus READ_SHARE x the quoted sentences' best reader probability (READ_PRIOR when
    they were not read)."""
    if not chosen:
        return 0.0
    best = chosen[0]
    confidence = best.confidence
    if best.kind != 1 and any(s.kind == 1 for s in chosen):
        confidence += TYPE_BONUS
    others = sorted(s.dense for s in ranked if s is not best)
    if others:
        confidence += MARGIN_SHARE * (best.dense - others[len(others) // 2])
    reads = [s.read for s in chosen if s.read is not None]
    return confidence + READ_SHARE * (max(reads) if reads else READ_PRIOR)


def extract(
    question: str,
    docs: Sequence[Any],
    embeddings: Any = None,
    idf: Callable[[Iterable[str]], dict[str, float]] | None = None,
    threshold: float = THRESHOLD,
    reader: Reader | None = None,
) -> Extract:
    """The extractive answer to `question` from retrieved `docs` (LangChain Documents, ranked, with
    `metadata["citation"]`); see the module docstring."""
    ranked = rank_sentences(question, docs, embeddings, idf, reader)
    best = ranked[0] if ranked else None
    chosen = [best] if best else []
    for other in ranked[1:]:  # the next best sentence of the same chunk, in the document's order
        if other.rank == best.rank:
            chosen.append(other)
            break
    confidence = quoted_confidence(chosen, ranked)
    if best is None or confidence < threshold:
        text = "\n".join([NO_ANSWER, *closest_sources(docs, ranked)]) if docs else NO_ANSWER
        return Extract(text, False, confidence, ranked[:1])
    in_order = sorted(chosen, key=lambda s: _position(s, docs))
    lines = [LEAD_IN, *(f"「{s.text}」[{s.citation}]" for s in in_order)]
    return Extract("\n".join(lines), True, confidence, chosen)
