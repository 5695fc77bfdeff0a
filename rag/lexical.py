"""Chinese BM25: jieba search-mode tokens, a bm25s index persisted next to the manifest.

The index is derived from the manifest's stored tokens (tokenizing happens once per chunk, at index
time). A `state` file records a digest of the chunk ids it was built from; when it differs from the
manifest (a run was killed between the two), the index is rebuilt on load, so the two never disagree.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
from array import array
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = ["tokenize", "query_terms", "bm25_scores", "BM25Index", "ids_digest", "TOKENIZER_VERSION"]

log = logging.getLogger(__name__)
_JIEBA_LOCK = threading.Lock()
_jieba = None

# Function words and question words: frequent in questions, useless for matching.
_STOP = set(
    "的 了 和 是 在 也 就 都 而 及 与 或 着 把 被 让 给 对 从 吗 呢 吧 啊 呀 么 之 其 这 那 此 个 为 以 于 上 下 中 有 "
    "什么 怎么 怎样 如何 哪些 哪个 哪里 哪 多少 几 为什么 是否 谁 请问 一个 可以 能 会 要 吗 "
    "a an the of to in on for is are was were be and or how what which who why when where do does".split()
)
_PUNCT = re.compile(r"^[\W_]+$", re.UNICODE)


def _get_jieba():
    global _jieba
    with _JIEBA_LOCK:
        if _jieba is None:
            import jieba

            jieba.setLogLevel(logging.WARNING)
            _jieba = jieba
    return _jieba


TOKENIZER_VERSION = "jieba-search+cjk-uni-bigram-1;k1=1.2,b=0.75"
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def tokenize(text: str) -> list[str]:
    """jieba search-mode words (lowercased, no punctuation or stop words) plus every CJK character and
    character bigram. The characters and bigrams make matching robust to segmentation differences between
    a question and a document (the idea of Lucene's CJK analyzer); on cmrc2018 they raise BM25 hit@1 by
    about 3 points over words alone (docs/rag.md)."""
    text = text.lower()
    words = [
        w
        for w in (w.strip() for w in _get_jieba().lcut_for_search(text))
        if w and w not in _STOP and not _PUNCT.match(w)
    ]
    for run in _CJK_RUN.findall(text):
        words.extend(run)
        words.extend(a + b for a, b in zip(run, run[1:]))
    return words


# Interrogatives and multi-character stop words (Simplified and Traditional), cut out of a question before it
# is tokenized: as jieba words they are dropped already, but their CJK characters and bigrams would still
# match "什", "么", "有什" or "一个" in documents; a space in their place keeps the words around them from
# forming bigrams across the gap. Only multi-character forms: single ones ("哪", "几", "吗") are also parts of
# names and terms (哪吒, 几何, 吗啡).
_QUESTION_WORDS = re.compile(
    "为什么|為什麼|怎么样|怎麼樣|什么|什麼|怎么|怎麼|怎样|怎樣|如何|哪些|哪个|哪個|哪里|哪裡|哪裏|哪儿|哪兒|"
    "多少|是否|何时|何時|何处|何處|请问|請問|一个|一個|可以"
)


def query_terms(query: str, drop_question_words: bool = True) -> list[str]:
    """The BM25 terms of a question: `tokenize` after interrogatives and multi-character stop words are cut out
    (on cmrc2018 this lifts hybrid hit@1 by 0.4 points; docs/benchmarks.md)."""
    return tokenize(_QUESTION_WORDS.sub(" ", query) if drop_question_words else query)


def _bm25s():
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on its logger at import
    return bm25s


_K1, _B = 1.2, 0.75


def _index(corpus: list[list[str]]):
    """A bm25s index of tokenized texts, with the Lucene/Elasticsearch defaults every BM25 score here uses."""
    retriever = _bm25s().BM25(k1=_K1, b=_B)
    retriever.index(corpus, show_progress=False)
    return retriever


def bm25_scores(terms: list[str], texts: list[list[str]]) -> list[float]:
    """The BM25 score of each tokenized text for the query `terms` (each counted once), `texts` being the
    whole corpus: how the knowledge base's index scores chunks, for a handful of texts scored once."""
    if not any(texts):  # bm25s cannot index a corpus without a token
        return [0.0] * len(texts)
    index = _index(texts)
    known = [t for t in dict.fromkeys(terms) if t in index.vocab_dict]
    if not known:
        return [0.0] * len(texts)
    return [float(score) for score in index.get_scores(known)]


def ids_digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


class BM25Index:
    """A bm25s index over chunk ids. `search` returns [(chunk_id, score)] best first."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._retriever = None
        self._ids: list[str] = []
        self._vocab: dict[str, int] = {}
        self.digest = ""

    def build(self, rows: Iterable[tuple[str, str]]) -> None:
        """Build from (chunk_id, space-joined tokens) and save atomically."""
        self._ids, texts, vocab = [], [], {}
        for cid, tokens in rows:
            # One chunk's tokens at a time become term ids in a compact array (4 bytes a token): splitting every
            # chunk first held the whole corpus as Python strings, ~110 bytes a token, 4.7 GB at 100k chunks
            # (docs/benchmarks.md, Scale curves). bm25s indexes (ids, vocab) as it indexes the strings.
            self._ids.append(cid)
            texts.append(array("i", [vocab.setdefault(t, len(vocab)) for t in tokens.split(" ")] if tokens else ()))
        self.digest = ids_digest(self._ids)
        retriever = None
        if self._ids:
            retriever = _bm25s().BM25(k1=_K1, b=_B)
            retriever.index((texts, vocab), show_progress=False)
        del texts
        self._retriever = retriever
        self._vocab = dict(retriever.vocab_dict) if retriever is not None else {}
        tmp = self.folder.with_name(self.folder.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if retriever is not None:
            retriever.save(str(tmp), show_progress=False)
        (tmp / "ids.json").write_text(json.dumps(self._ids), encoding="utf-8")
        (tmp / "state.json").write_text(json.dumps({"digest": self.digest}), encoding="utf-8")
        old = self.folder.with_name(self.folder.name + f".old{os.getpid()}")
        if self.folder.exists():
            os.replace(self.folder, old)
        os.replace(tmp, self.folder)
        shutil.rmtree(old, ignore_errors=True)

    def saved_digest(self) -> str:
        """The digest of the saved index, read without loading it ('' when absent)."""
        try:
            return json.loads((self.folder / "state.json").read_text(encoding="utf-8")).get("digest", "")
        except (OSError, ValueError):
            return ""

    def load(self) -> bool:
        """Load the saved index; False when there is none or it is unreadable."""
        bm25s = _bm25s()

        try:
            state = json.loads((self.folder / "state.json").read_text(encoding="utf-8"))
            self._ids = json.loads((self.folder / "ids.json").read_text(encoding="utf-8"))
            self._retriever = bm25s.BM25.load(str(self.folder)) if self._ids else None
        except (OSError, ValueError) as exc:
            log.info("BM25 index at %s unreadable (%s); it will be rebuilt", self.folder, exc)
            return False
        self._vocab = dict(self._retriever.vocab_dict) if self._retriever is not None else {}
        self.digest = state.get("digest", "")
        return True

    def terms(self, query: str, drop_question_words: bool = True) -> list[str]:
        """The question's BM25 terms that occur in the index, in order, with repeats."""
        return [t for t in query_terms(query, drop_question_words) if t in self._vocab]

    def idf(self, terms) -> dict[str, float]:
        """Lucene's BM25 idf, log(1 + (N - df + 0.5) / (df + 0.5)), of each indexed term (df read from the
        index's per-term postings)."""
        if self._retriever is None:
            return {}
        scores = self._retriever.scores
        indptr, total = scores["indptr"], scores["num_docs"]
        out = {}
        for term in terms:
            tid = self._vocab.get(term)
            if tid is not None:
                df = int(indptr[tid + 1] - indptr[tid])
                out[term] = float(np.log(1 + (total - df + 0.5) / (df + 0.5)))
        return out

    def search(self, query: str, k: int, drop_question_words: bool = True) -> list[tuple[str, float]]:
        return self.search_terms(self.terms(query, drop_question_words), k)

    def search_terms(self, tokens: list[str], k: int) -> list[tuple[str, float]]:
        """Best-first [(chunk_id, score)] for already tokenized query terms (see `terms`)."""
        if self._retriever is None:
            return []
        tokens = [t for t in tokens if t in self._vocab]
        if not tokens:
            return []
        k = min(k, len(self._ids))
        docs, scores = self._retriever.retrieve(
            [tokens], k=k, show_progress=False, n_threads=0
        )  # 0: no thread pool per query
        out = [(self._ids[int(i)], float(s)) for i, s in zip(np.asarray(docs)[0], np.asarray(scores)[0])]
        return [(cid, s) for cid, s in out if s > 0]
