"""The manifest of one knowledge base: an SQLite file holding what is indexed and the vectors already paid for.

Tables: `meta` (settings fingerprint, the embedder's record, display name), `files` (content hash per file),
`chunks` (stable id = content hash, text, location, jieba tokens for BM25), `vectors` (embedding per chunk-text
hash) and `pending_vectors` (a re-embedding's new vectors until it switches the knowledge base over). The
manifest is the source of truth; Chroma and the BM25 index are derived from it and repaired against it
at the start of every index run. Every file is committed in one transaction, after its chunks reached
Chroma, so a killed run leaves at worst chunks in Chroma that the manifest does not know (deleted on the
next run) and never the reverse. Vectors are committed as soon as they are computed, so a re-run after a
kill embeds nothing twice.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Manifest", "FileRow", "ChunkRow"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER NOT NULL, kind TEXT NOT NULL,
    encoding TEXT NOT NULL, chunks INTEGER NOT NULL, indexed_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    id TEXT PRIMARY KEY, path TEXT NOT NULL, ord INTEGER NOT NULL, text TEXT NOT NULL, location TEXT NOT NULL,
    headings TEXT NOT NULL, tokens TEXT NOT NULL, vec_key TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_path ON chunks(path);
CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vec BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS pending_vectors (key TEXT PRIMARY KEY, vec BLOB NOT NULL);
"""


@dataclass
class FileRow:
    path: str
    sha256: str
    size: int
    kind: str
    encoding: str
    chunks: int
    indexed_at: float = 0.0


@dataclass
class ChunkRow:
    id: str
    path: str
    ord: int
    text: str
    location: str
    headings: str
    tokens: str  # space-joined BM25 tokens
    vec_key: str  # hash of the embedded text

    def metadata(self, file: FileRow | None = None) -> dict:
        meta = {
            "chunk_id": self.id,
            "source": self.path,
            "location": self.location,
            "headings": self.headings,
            "ord": self.ord,
        }
        if file is not None:
            meta.update(kind=file.kind, encoding=file.encoding)
        return meta


class Manifest:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
        self.lock = threading.RLock()  # LangChain runs retrievers in worker threads
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def _rows(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self.lock:
            return self.db.execute(sql, params).fetchall()

    def close(self) -> None:
        self.db.close()

    # meta
    def get(self, key: str, default: str | None = None) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key=?", (key,))
        row = rows[0] if rows else None
        return row[0] if row else default

    def set(self, **values: str) -> None:
        with self._tx():
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items()))

    # files and chunks
    def files(self, paths: Iterable[str] | None = None) -> dict[str, FileRow]:
        """Every file's row, or only those of `paths` (a query's hits: reading all of them cost 13 ms per query
        at 30,000 chunks, docs/benchmarks.md "Scale curves")."""
        cols = "path, sha256, size, kind, encoding, chunks, indexed_at"
        if paths is None:
            return {r[0]: FileRow(*r) for r in self._rows(f"SELECT {cols} FROM files")}
        return {r[0]: FileRow(*r) for r in self._rows_where(cols, "files", "path", dict.fromkeys(paths))}

    def has_chunks(self) -> bool:
        """Whether any chunk is indexed (one row read, whatever the size)."""
        return bool(self._rows("SELECT 1 FROM chunks LIMIT 1"))

    def chunk_ids(self, path: str | None = None) -> set[str]:
        if path is None:
            return {r[0] for r in self._rows("SELECT id FROM chunks")}
        return {r[0] for r in self._rows("SELECT id FROM chunks WHERE path=?", (path,))}

    def chunks(self, ids: Iterable[str] | None = None) -> list[ChunkRow]:
        cols = "id, path, ord, text, location, headings, tokens, vec_key"
        if ids is None:
            return [ChunkRow(*r) for r in self._rows(f"SELECT {cols} FROM chunks ORDER BY path, ord")]
        ids = list(ids)
        found = {r[0]: ChunkRow(*r) for r in self._rows_where(cols, "chunks", "id", ids)}
        return [found[i] for i in ids if i in found]

    def _rows_where(self, cols: str, table: str, key: str, values: Iterable[str]) -> list[tuple]:
        """The rows of `table` whose `key` is one of `values`, asked in batches of 900 (under SQLite's limit of
        999 parameters per statement)."""
        values = list(values)
        rows: list[tuple] = []
        for start in range(0, len(values), 900):
            part = values[start : start + 900]
            rows += self._rows(f"SELECT {cols} FROM {table} WHERE {key} IN ({','.join('?' * len(part))})", part)
        return rows

    def outline(self) -> list[tuple[str, str, str, str]]:
        """(id, path, headings, location) of every chunk, in file and chunk order."""
        return self._rows("SELECT id, path, headings, location FROM chunks ORDER BY path, ord")

    def bm25_rows(self, page: int = 2000) -> Iterator[tuple[str, str]]:
        """(id, space-joined tokens) of every chunk, by id, read `page` rows at a time: the BM25 build holds one
        page of token strings, not the whole corpus's (~500 MB at 100k chunks). Pages are separate reads, as
        the build's digest already was: a write between them leaves an index whose digest is not the manifest's,
        and the next sync rebuilds it."""
        last = None
        while True:
            if last is None:
                rows = self._rows("SELECT id, tokens FROM chunks ORDER BY id LIMIT ?", (page,))
            else:
                rows = self._rows("SELECT id, tokens FROM chunks WHERE id > ? ORDER BY id LIMIT ?", (last, page))
            yield from rows
            if len(rows) < page:
                return
            last = rows[-1][0]

    def replace_file(self, row: FileRow, chunks: list[ChunkRow]) -> None:
        row.indexed_at = time.time()
        with self._tx():
            self.db.execute("DELETE FROM chunks WHERE path=?", (row.path,))
            self.db.executemany(
                "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(c.id, c.path, c.ord, c.text, c.location, c.headings, c.tokens, c.vec_key) for c in chunks],
            )
            self.db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                (row.path, row.sha256, row.size, row.kind, row.encoding, row.chunks, row.indexed_at),
            )

    def remove_file(self, path: str) -> None:
        with self._tx():
            self.db.execute("DELETE FROM chunks WHERE path=?", (path,))
            self.db.execute("DELETE FROM files WHERE path=?", (path,))

    def clear(self) -> None:
        with self._tx():
            for table in ("files", "chunks", "vectors", "pending_vectors", "meta"):
                self.db.execute(f"DELETE FROM {table}")

    # vectors
    def vectors(self, keys: Iterable[str], table: str = "vectors") -> dict[str, np.ndarray]:
        keys = list(keys)
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 900):
            part = keys[start : start + 900]
            marks = ",".join("?" * len(part))
            for key, blob in self._rows(f"SELECT key, vec FROM {_table(table)} WHERE key IN ({marks})", part):
                out[key] = np.frombuffer(blob, dtype=np.float32)
        return out

    def put_vectors(self, items: dict[str, np.ndarray], table: str = "vectors") -> None:
        with self._tx():
            self.db.executemany(
                f"INSERT OR REPLACE INTO {_table(table)} VALUES (?, ?)",
                [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()],
            )

    def clear_pending(self) -> None:
        with self._tx():
            self.db.execute("DELETE FROM pending_vectors")

    def switch_vectors(self, **meta: str) -> None:
        """In one transaction: the pending vectors replace the stored ones, and `meta` is written."""
        with self._tx():
            self.db.execute("DELETE FROM vectors")
            self.db.execute("INSERT INTO vectors SELECT key, vec FROM pending_vectors")
            self.db.execute("DELETE FROM pending_vectors")
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(meta.items()))

    def prune_vectors(self) -> int:
        """Drop vectors no chunk uses any more (after edits and deletions)."""
        with self._tx():
            cur = self.db.execute("DELETE FROM vectors WHERE key NOT IN (SELECT vec_key FROM chunks)")
            return cur.rowcount

    def _tx(self):
        return _Transaction(self.db, self.lock)


def _table(name: str) -> str:
    if name not in ("vectors", "pending_vectors"):
        raise ValueError(f"no vector table {name!r}")
    return name


class _Transaction:
    def __init__(self, db: sqlite3.Connection, lock: threading.RLock):
        self.db = db
        self.lock = lock

    def __enter__(self):
        self.lock.acquire()
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb):
        try:
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self.lock.release()
        return False
