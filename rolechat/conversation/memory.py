"""Character memory: the exchanges a character once had, retrieved each turn by what is being said now.

ChatHaruhi's idea (LC1332/Chat-Haruhi-Suzumiya, `add_story`): find the character's remembered lines most
like the query and pack them greedily into their token budget. Here each entry is one exchange (what was
said to the character and its reply, `rolechat.llm.memoryfile` defines the `memory.jsonl` format), so a
message close to something once said to the character brings back how it answered.

    memory = CharacterMemory.load(folder / "memory.jsonl")       # or CharacterMemory(entries)
    for entry, score in memory.search(["皇上驾到"], k=8): ...
    kept = memory.recall(["皇上驾到"], count_tokens, budget=512, speaker="甄嬛")   # [(entry, text, tokens)]

Retrieval is the rag package's Chinese BM25 (jieba words plus CJK characters and bigrams, `rag.lexical`)
over the query and reply of each entry; with an embedder (the engine passes `rag.embedder`'s, by default
multilingual-e5-small; any LangChain `Embeddings` works) dense similarity joins it by reciprocal-rank fusion.
The index lives in memory: a few thousand lines are tokenized in a few seconds and embedded in half a minute,
so the engine caches the BM25 index and the vectors on disk (under `settings.cache_dir()`, keyed by the file's
path, checked against a digest of its entries and the embedder); a search with its packing takes a few
milliseconds.

Memories are added by `rolechat train` (from the training conversations) and by `import_memory` (`rolechat
character import-memory`): a script of `角色：「台词」` lines or a JSONL of {query, reply}.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rolechat.llm.memoryfile import MEMORY_FILE, MemoryEntry, MemoryFileError, read_memory, write_memory

__all__ = [
    "CharacterMemory",
    "MemoryFileError",
    "entry_text",
    "import_memory",
    "read_memory_source",
    "read_script",
]

log = logging.getLogger(__name__)

RRF_K = 60  # reciprocal-rank fusion constant (Cormack et al.), as rag's hybrid retriever
CANDIDATES = 32  # entries each leg hands to fusion and packing
UNBUDGETED = 8  # entries recalled when chat.memory_tokens is 0 (no budget of its own)
SCRIPT_CONTEXT = 2  # other speakers' lines kept as the query of the character's next line
_SPEAKER = re.compile(r"^\s*(?P<name>[^\s：:「」\"“”]{1,24})\s*[：:]\s*(?P<line>.*?)\s*$")
# Particles and function characters: rag's tokenizer indexes every CJK character, so without this 了 in a
# message would recall any line with 了 in it (a small memory gives such a character a high idf).
_FUNCTION_CHARS = frozenset("的了着过吗呢吧啊呀哦么之其这那个是在和与或也就都把被让给对从为以于而及")
_QUOTES = (("「", "」"), ("『", "』"), ('"', '"'), ("“", "”"))


def entry_text(entry: MemoryEntry, speaker: str) -> str:
    """How an entry reads in the prompt: what was said (its own speaker's name when a script gave one, else
    对方) then `speaker`'s reply, ChatHaruhi's `名字：「台词」` form."""
    lines = []
    if entry.query:
        query = entry.query if _SPEAKER.match(entry.query.splitlines()[0]) else f"对方：「{entry.query}」"
        lines.append(query)
    lines.append(f"{speaker}：「{entry.reply}」")
    return "\n".join(lines)


class CharacterMemory:
    """An index over a character's memory entries. Thread-safe for searching once built."""

    def __init__(
        self, entries: Sequence[MemoryEntry], embeddings: Any = None, source: str = "", cache: Path | None = None
    ) -> None:
        """Index `entries`. With `cache` (a folder), the BM25 index and the entries' vectors are saved there with a
        digest of the entries and the embedder, and loaded back instead of rebuilt while both are the same
        (tokenizing 3,000 lines takes seconds, embedding them half a minute)."""
        self.entries = list(entries)
        self.source = source
        self._retriever = None
        self._vocab: dict[str, int] = {}
        self._embeddings = embeddings
        self._vectors = None
        if not self.entries:
            return
        digest = self._digest(embeddings)
        loaded = self._load_cache(cache, digest)
        if loaded is None:
            loaded = self._bm25(), self._embed(embeddings)
            if cache is not None and loaded[0] is not None:
                self._save(loaded, cache, digest)
        self._retriever, self._vectors = loaded
        self._vocab = dict(self._retriever.vocab_dict) if self._retriever is not None else {}

    def _digest(self, embeddings: Any) -> str:
        from rolechat.rag.lexical import TOKENIZER_VERSION

        embedder = embeddings.fingerprint() if hasattr(embeddings, "fingerprint") else type(embeddings).__name__
        rows = [[e.query, e.reply] for e in self.entries]
        return hashlib.sha256(json.dumps([TOKENIZER_VERSION, embedder, rows], ensure_ascii=False).encode()).hexdigest()

    @staticmethod
    def _load_cache(cache: Path | None, digest: str) -> tuple[Any, Any] | None:
        if cache is None:
            return None
        import bm25s

        try:
            if json.loads((cache / "state.json").read_text(encoding="utf-8"))["digest"] != digest:
                return None
            vectors = np.load(cache / "vectors.npy") if (cache / "vectors.npy").is_file() else None
            return bm25s.BM25.load(str(cache)), vectors
        except (OSError, ValueError, KeyError) as exc:
            log.debug("memory index cache %s not usable (%s); rebuilding", cache, exc)
            return None

    def _bm25(self) -> Any:
        import bm25s

        from rolechat.rag.lexical import tokenize

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on its logger at import
        corpus = [tokenize(f"{e.query}\n{e.reply}") for e in self.entries]
        if not any(corpus):
            return None
        retriever = bm25s.BM25(k1=1.2, b=0.75)  # as rag.lexical
        retriever.index(corpus, show_progress=False)
        return retriever

    def _embed(self, embeddings: Any) -> Any:
        """Unit vectors of the entries (their query and reply, as documents), or None without an embedder."""
        if embeddings is None:
            return None
        texts = [f"{e.query}\n{e.reply}" for e in self.entries]
        if hasattr(embeddings, "embed_array"):
            vectors = embeddings.embed_array(texts)
        else:
            vectors = np.asarray(embeddings.embed_documents(texts), dtype=np.float32)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    @staticmethod
    def _save(index: tuple[Any, Any], cache: Path, digest: str) -> None:
        """Save the index into `cache` whole or not at all (built beside it, then renamed); a failure only logs."""
        retriever, vectors = index
        tmp = cache.with_name(f"{cache.name}.tmp{os.getpid()}-{threading.get_ident()}")
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            retriever.save(str(tmp), show_progress=False)
            if vectors is not None:
                np.save(tmp / "vectors.npy", np.asarray(vectors, dtype=np.float32))
            (tmp / "state.json").write_text(json.dumps({"digest": digest}), encoding="utf-8")
            shutil.rmtree(cache, ignore_errors=True)
            os.replace(tmp, cache)
        except OSError as exc:
            log.warning("could not cache the memory index in %s: %s", cache, exc)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def load(cls, path: str | Path, embeddings: Any = None, cache: Path | None = None) -> CharacterMemory:
        """The memory in `path` (a memory.jsonl); MemoryFileError naming the file and line for a bad one."""
        return cls(read_memory(path), embeddings, str(path), cache)

    def __len__(self) -> int:
        return len(self.entries)

    def _lexical(self, query: str, k: int) -> list[tuple[int, float]]:
        from rolechat.rag.lexical import query_terms

        terms = [t for t in query_terms(query) if t in self._vocab and t not in _FUNCTION_CHARS]
        if self._retriever is None or not terms:
            return []
        docs, scores = self._retriever.retrieve([terms], k=min(k, len(self.entries)), show_progress=False, n_threads=0)
        return [(int(i), float(s)) for i, s in zip(np.asarray(docs)[0], np.asarray(scores)[0]) if s > 0]

    def _dense(self, query: str, k: int) -> list[tuple[int, float]]:
        if self._vectors is None:
            return []
        vector = np.asarray(self._embeddings.embed_query(query))
        scores = self._vectors @ (vector / max(float(np.linalg.norm(vector)), 1e-12))
        best = np.argsort(-scores)[:k]
        return [(int(i), float(scores[i])) for i in best]

    def search(self, texts: Sequence[str], k: int = CANDIDATES) -> list[tuple[MemoryEntry, float]]:
        """The entries most like `texts` (the recent conversation, newest last), best first, with their scores
        (BM25, or fused reciprocal ranks when dense retrieval joins it)."""
        query = "\n".join(t for t in texts if t and t.strip())
        if not query or not self.entries:
            return []
        lexical = self._lexical(query, k)
        dense = self._dense(query, k)
        if not dense:
            return [(self.entries[i], s) for i, s in lexical]
        fused: dict[int, float] = {}
        for ranking in (lexical, dense):
            for rank, (i, _) in enumerate(ranking):
                fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + rank + 1)
        best = sorted(fused.items(), key=lambda item: -item[1])[:k]
        return [(self.entries[i], s) for i, s in best]

    def recall(
        self,
        texts: Sequence[str],
        count_tokens: Callable[[str], int],
        budget: int,
        speaker: str,
        k: int = CANDIDATES,
    ) -> list[tuple[MemoryEntry, str, int]]:
        """The best entries for `texts` packed greedily into `budget` tokens (0 = no budget: the UNBUDGETED best), as
        (entry, prompt text, tokens), most relevant first. An entry that does not fit is skipped and a smaller
        one after it may still go in, as the assembly packs every budgeted kind; a repeated exchange goes in once."""
        kept = []
        used = 0
        seen = set()
        for entry, _ in self.search(texts, k):
            text = entry_text(entry, speaker)
            if text in seen:  # the same exchange twice in the file (a line said more than once)
                continue
            seen.add(text)
            tokens = count_tokens(text)
            if budget and used + tokens > budget:
                continue
            kept.append((entry, text, tokens))
            used += tokens
            if not budget and len(kept) == UNBUDGETED:
                break
        return kept


# -- import -------------------------------------------------------------------------------------------------


def _unquote(line: str) -> str:
    for left, right in _QUOTES:
        if len(line) >= 2 and line.startswith(left) and line.endswith(right):
            return line[len(left) : -len(right)].strip()
    return line


def read_script(path: str | Path, character: str, names: Sequence[str] = ()) -> list[MemoryEntry]:
    """The entries of a script: lines `名字：「台词」` (also `名字:"台词"`, `名字：台词`). Each line of the
    character (its name or one of `names`) is an entry whose query is the other speakers' lines just before it
    (up to SCRIPT_CONTEXT, as `名字：台词`). Blank lines are skipped; any other line is an error naming the file and
    line number."""
    path = Path(path)
    own = {n.strip() for n in (character, *names) if n and n.strip()}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MemoryFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    entries = []
    context: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        match = _SPEAKER.match(raw.lstrip("\ufeff"))
        line = _unquote(match["line"]) if match else ""
        if not match or not line:
            raise MemoryFileError(
                f'{path}:{number}: expected a line `名字：「台词」` (or `名字:"台词"`, `名字：台词`), '
                f"got {raw.strip()[:40]!r}"
            )
        name = match["name"]
        if name in own:
            entries.append(MemoryEntry(reply=line, query="\n".join(context), source=f"import:{path.name}:{number}"))
            context = []
        else:
            context = [*context, f"{name}：{line}"][-SCRIPT_CONTEXT:]
    return entries


def _read_jsonl(path: Path) -> list[MemoryEntry]:
    entries = read_memory(path)
    return [MemoryEntry(e.reply, e.query, e.source or f"import:{path.name}") for e in entries]


def read_memory_source(path: str | Path, character: str, names: Sequence[str] = ()) -> list[MemoryEntry]:
    """The entries of an import file: JSONL ({query, reply} per line; .jsonl, or text whose first line is a
    JSON object) or a script of `名字：「台词」` lines."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix.lower() == ".jsonl":
        return _read_jsonl(path)
    try:
        first = next((line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()), "")
    except UnicodeDecodeError as exc:
        raise MemoryFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if first.lstrip("\ufeff").lstrip().startswith("{"):
        try:
            json.loads(first)
        except ValueError:
            pass
        else:
            return _read_jsonl(path)
    return read_script(path, character, names)


def import_memory(
    folder: str | Path, source: str | Path, character: str, names: Sequence[str] = (), *, replace: bool = False
) -> tuple[Path, int]:
    """Add the entries of `source` (see `read_memory_source`) to the memory of the persona `folder` (appended,
    or instead of it with `replace`). All of the file is read before anything is written, and the memory file
    is replaced atomically: a bad line leaves the old memory as it was. Returns (memory file, entries added)."""
    target = Path(folder) / MEMORY_FILE
    new = read_memory_source(source, character, names)
    if not new:
        raise MemoryFileError(f"{source}: no line of {character!r} found (a script names the speaker of each line)")
    old = [] if replace or not target.is_file() else read_memory(target)
    write_memory(target, [*old, *new])
    return target, len(new)
