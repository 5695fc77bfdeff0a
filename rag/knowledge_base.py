"""A knowledge base: a folder under `kb_dir()` with the manifest, the BM25 index and (locally) Chroma.

    kb = KnowledgeBase("产品手册", cfg)
    report = kb.index(["docs/"], progress=print)     # incremental; safe to kill and re-run
    hits = kb.search("怎么重置密码", k=5, mode="hybrid")
    retriever = kb.retriever("hybrid", 5)            # a LangChain BaseRetriever (the engine's, and a chain's)

Indexing is incremental: files are compared by content hash, chunks by content-hash ids, vectors are
cached by text hash, so only new text is ever embedded. See rag/manifest.py for why a killed run
leaves a consistent index.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rolechat.rag.config import RAGConfig
from rolechat.rag.embedder_spec import EmbedderSpec, canonical_name, resolve_spec
from rolechat.rag.lexical import TOKENIZER_VERSION, BM25Index, ids_digest, tokenize
from rolechat.rag.loaders import LOADER_VERSION, SUPPORTED, LoadError, parse
from rolechat.rag.manifest import ChunkRow, FileRow, Manifest
from rolechat.rag.ranking import opens_section
from rolechat.rag.splitting import SPLITTER_VERSION, split_file
from rolechat.rag.store import MAX_BATCH, all_ids, collection_name, open_client, open_collection
from rolechat.settings import ConfigError, kb_dir

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever

__all__ = [
    "KnowledgeBase",
    "EmbedderMismatch",
    "ReembedReport",
    "IndexReport",
    "FileOutcome",
    "DocumentInfo",
    "Progress",
    "list_kbs",
    "delete_kb",
    "validate_name",
]

log = logging.getLogger(__name__)

# Files are committed in groups of about this many chunks: big enough that Chroma's per-call cost is paid
# rarely, small enough that progress is saved every few seconds (~7 s of embedding on two cores) and a
# killed run loses little.
_FLUSH_CHUNKS = 256

_BAD_NAME = re.compile(r"[/\\:*?\"<>|\x00-\x1f]")


def validate_name(name: str) -> str:
    name = name.strip()
    if not name or name in (".", "..") or _BAD_NAME.search(name) or len(name) > 100:
        raise ConfigError(f'invalid knowledge base name {name!r}: 1-100 characters, none of / \\ : * ? " < > |')
    return name


class EmbedderMismatch(ConfigError):
    """A knowledge base opened with another embedder than the one its vectors come from."""

    def __init__(self, kb: str, built: str, wanted: str, command: str):
        self.kb, self.built, self.wanted, self.command = kb, built, wanted, command
        super().__init__(
            f"knowledge base {kb!r} was built with {built}, but rag.embedder / rag.embedder_backend give {wanted}; "
            f"its vectors cannot be searched with another embedder. Re-embed it (no file is read or split again): "
            f"{command}; or leave rag.embedder empty to use the one it was built with"
        )


@dataclass
class ReembedReport:
    kb: str
    before: str
    after: str
    chunks: int = 0
    embedded: int = 0  # the rest were already embedded by an interrupted run
    truncated: int = 0  # chunks longer than the new embedder reads
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Progress:
    """What a progress callback receives: a phase, how far along it is, and the current file."""

    phase: str  # "scan", "embed", "store", "done"
    done: int
    total: int
    detail: str = ""


@dataclass
class FileOutcome:
    path: str
    status: str  # indexed | updated | unchanged | removed | skipped | failed
    chunks: int = 0
    encoding: str = ""
    reason: str = ""


@dataclass
class IndexReport:
    kb: str
    files: list[FileOutcome] = field(default_factory=list)
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_embedded: int = 0
    chunks_total: int = 0
    seconds: float = 0.0
    rebuilt: str = ""  # why the whole knowledge base was rebuilt, if it was
    reread: str = ""  # why every file was read again (unchanged chunks keep their vectors), if they were
    repaired: int = 0  # stray Chroma records of an interrupted run that were removed

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    def summary(self) -> dict[str, int]:
        return {s: self.count(s) for s in ("indexed", "updated", "unchanged", "removed", "skipped", "failed")}

    def to_dict(self) -> dict:
        data = asdict(self)
        data["summary"] = self.summary()
        return data


@dataclass
class DocumentInfo:
    path: str
    kind: str
    encoding: str
    chunks: int
    size: int
    indexed_at: float


ProgressCallback = Callable[[Progress], None]


def _sha(data: bytes | str) -> str:
    return hashlib.sha256(data if isinstance(data, bytes) else data.encode("utf-8")).hexdigest()


class _EmbedQueue:
    """Embedding in worker threads while the indexer goes on reading, splitting, tokenizing and storing.

    The ONNX embedder runs one single-threaded call per core at once (cores never wait on each other, and
    the indexer's own Python work fits in between instead of leaving a core idle); any other embeddings
    object gets one worker, in order. A text already queued is not queued again: the group that queued it is
    stored first, so a later group finds its vector in the manifest. Only keys are kept here; the vectors
    live in each group's futures until the group is stored.
    """

    def __init__(self, embeddings, batch_size: int):
        from concurrent.futures import ThreadPoolExecutor

        self.embeddings = embeddings
        self.workers = int(getattr(embeddings, "parallel_calls", 1) or 1)
        self.step = max(32, batch_size * (1 if self.workers > 1 else 4))  # texts per call; batches inside
        self.count = getattr(embeddings, "count_tokens", None)
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="rolechat-embed")
        self.queued: set[str] = set()  # vec_keys ever queued in this run

    def _run(self, texts: list[str]) -> np.ndarray:
        if hasattr(self.embeddings, "embed_array"):
            if self.workers > 1:
                return self.embeddings.embed_array(texts, single_thread=True)
            return self.embeddings.embed_array(texts)
        return np.asarray(self.embeddings.embed_documents(texts), dtype=np.float32)

    def submit(self, texts: dict[str, str]) -> list[tuple[list[str], object]]:
        """Queue the texts (vec_key -> text) not queued before, similar lengths together; the calls.

        A batch is padded to its longest text, so lengths are the embedder's tokens when it can count them:
        characters are a poor proxy (code has ~4 per token, Chinese ~1). On self-llm, sorting by characters
        left 14% of the embedded tokens as padding; by tokens, 1%."""
        keys = [k for k in texts if k not in self.queued]
        lengths = self.count([texts[k] for k in keys]) if self.count else [len(texts[k]) for k in keys]
        keys = [k for _, k in sorted(zip(lengths, keys))]
        jobs = []
        for start in range(0, len(keys), self.step):
            part = keys[start : start + self.step]
            jobs.append((part, self.pool.submit(self._run, [texts[k] for k in part])))
            self.queued.update(part)
        return jobs

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Group:
    """Files whose chunks are embedded together and then committed together."""

    pending: list
    cached: dict
    jobs: list


@dataclass
class _Run:
    """One index run's bookkeeping: its report, the files known before it, Chroma's ids, files to rewrite."""

    report: IndexReport
    known: dict[str, FileRow]
    chroma_ids: set[str]
    dirty: set[str]  # files whose chunks Chroma lost (an interrupted run): written again even if unchanged
    seen: set[str] = field(default_factory=set)


def _walk(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """(files to consider, roots) for the given files and folders; hidden files and folders are ignored."""
    files: list[Path] = []
    roots: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if not path.exists():
            raise FileNotFoundError(f"no such file or folder: {raw}")
        roots.append(path)
        if path.is_file():
            files.append(path)
            continue
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    unique = list(dict.fromkeys(files))
    return unique, roots


def _under(path: str, roots: list[Path]) -> bool:
    p = Path(path)
    return any(p == r or r in p.parents for r in roots)


class KnowledgeBase:
    """One named knowledge base. `embeddings` replaces the configured embedder (any LangChain Embeddings)."""

    def __init__(
        self, name: str, cfg: RAGConfig | None = None, embeddings: Embeddings | None = None, root: Path | None = None
    ) -> None:
        self.name = validate_name(name)
        self.cfg = cfg or RAGConfig()
        self.path = (root or kb_dir()) / self.name
        self._embeddings = embeddings
        self._manifest: Manifest | None = None
        self._collection: Collection | None = None
        self._bm25: BM25Index | None = None
        self._starts: tuple[str, frozenset[str]] = ("", frozenset())  # (BM25 digest, ids of section openers)

    # ----------------------------------------------------------------- parts
    @property
    def embeddings(self) -> Embeddings:
        if self._embeddings is None:
            from rolechat.rag.embedder import shared_embedder

            self._embeddings = shared_embedder(self.embedder_spec(), self.cfg.batch_size)
        return self._embeddings

    def recorded_embedder(self) -> EmbedderSpec | None:
        """The embedder this knowledge base was built with (None before its first index run, or when it was
        built with an embeddings object that is not a rolechat embedder)."""
        if not self.exists():
            return None
        record = self.manifest.get("embedder")
        if record:
            return EmbedderSpec.from_record(record)
        legacy = self.manifest.get("setting.embedder")  # built before knowledge bases recorded their embedder
        return EmbedderSpec.from_record(legacy) if legacy and "|" in legacy else None

    def embedder_spec(self) -> EmbedderSpec:
        """The embedder to open this knowledge base with: the one it was built with unless rag.embedder or
        rag.embedder_backend name another (then EmbedderMismatch, which names the re-embed command)."""
        recorded = self.recorded_embedder()
        name, backend = self.cfg.embedder.strip(), self.cfg.embedder_backend
        if recorded is not None and canonical_name(name or recorded.name) == recorded.name:
            if backend in ("auto", recorded.backend):
                return recorded  # the model it was built with, from where it came, run as it was
        wanted = resolve_spec(name or (recorded.name if recorded else ""), backend)
        if recorded is not None and not wanted.same_vectors(recorded):
            raise EmbedderMismatch(self.name, recorded.label, wanted.label, self.reembed_command())
        return wanted

    def reembed_command(self) -> str:
        flags = f" --embedder {self.cfg.embedder.strip()}" if self.cfg.embedder.strip() else ""
        if self.cfg.embedder_backend != "auto":
            flags += f" --embedder-backend {self.cfg.embedder_backend}"
        return f"rolechat kb reembed {_quote(self.name)}{flags}"

    def collection_name(self) -> str:
        """This knowledge base's Chroma collection (a re-embedding switches it to a new one)."""
        stored = self.manifest.get("collection") if self.exists() else None
        return stored or collection_name(self.name)

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            self._manifest = Manifest(self.path / "manifest.sqlite")
        return self._manifest

    @property
    def collection(self) -> Collection:
        if self._collection is None:
            client = open_client(self.cfg.chroma_url, self.path / "chroma")
            self._collection = open_collection(client, self.collection_name())
        return self._collection

    def exists(self) -> bool:
        return (self.path / "manifest.sqlite").is_file()

    def close(self) -> None:
        if self._manifest is not None:
            self._manifest.close()
            self._manifest = None

    def _count_tokens(self, texts: Sequence[str]) -> list[int]:
        counter = getattr(self.embeddings, "count_tokens", None)
        return counter(texts) if counter else [len(t) for t in texts]

    def _max_tokens(self) -> int:
        return int(getattr(self.embeddings, "max_tokens", self.cfg.chunk_size))

    def settings(self, emb=None) -> dict[str, str]:
        """What the stored chunks and vectors depend on (with embedder `emb`, default this one's). A change of
        the splitter settings rebuilds the knowledge base; the embedder is checked on its own (`embedder_spec`,
        `_check_embedder`)."""
        emb = emb or self.embeddings
        if hasattr(emb, "fingerprint"):
            fingerprint = emb.fingerprint()
        else:  # any LangChain Embeddings: its class and the usual identity fields
            ident = [f"{a}={getattr(emb, a)}" for a in ("model", "model_name", "size") if hasattr(emb, a)]
            fingerprint = f"{type(emb).__name__}({', '.join(ident)})"
        return {
            "embedder": fingerprint,
            "chunk_size": str(min(self.cfg.chunk_size, int(getattr(emb, "max_tokens", self.cfg.chunk_size)))),
            "chunk_overlap": str(self.cfg.chunk_overlap),
            "splitter": SPLITTER_VERSION,
            "bm25_tokenizer": TOKENIZER_VERSION,
        }

    def embedder_info(self) -> dict[str, str | int | None]:
        """The recorded embedder as shown to users: name, source, backend, dimension, prefix rule."""
        record = self.manifest.get("embedder") if self.exists() else None
        spec = self.recorded_embedder()
        if spec is None:
            legacy = self.manifest.get("setting.embedder") if self.exists() else None
            return {"name": legacy or "(not indexed yet)", "source": "", "backend": "", "dimension": None, "prefix": ""}
        dimension = json.loads(record).get("dimension") if record else None
        return {
            "name": spec.name,
            "source": spec.source,
            "backend": spec.backend,
            "dimension": dimension,
            "prefix": spec.prefix_rule,
            "label": spec.label,
        }

    # ----------------------------------------------------------------- indexing
    def index(self, paths: Sequence[str | os.PathLike], progress: ProgressCallback | None = None) -> IndexReport:
        """Bring the knowledge base in step with `paths` (files and folders). Returns what happened.

        One file that cannot be read (too large, a zip bomb, nested too deep, a reader's own crash) is reported
        as failed or skipped with the reason; the others are indexed, and nothing indexed before is lost."""
        started = time.perf_counter()
        notify = progress or (lambda p: None)
        report = IndexReport(self.name)
        files, roots = _walk(paths)
        self._check_settings(report)
        self.manifest.set(name=self.name, collection=self.collection_name())
        run = self._start_run(report)
        pending: list[tuple[FileRow, list[ChunkRow], str]] = []
        pending_chunks = 0
        previous: _Group | None = None
        queue = _EmbedQueue(self.embeddings, self.cfg.batch_size)
        try:
            for number, path in enumerate(files, 1):
                notify(Progress("scan", number, len(files), str(path)))
                read = self._read_one(path, run)
                if read is None:
                    continue
                pending.append(read)
                pending_chunks += len(read[1])
                if pending_chunks >= _FLUSH_CHUNKS:
                    # This group embeds in the background while the next one is read; the one before is stored.
                    group = self._submit(pending, queue)
                    if previous is not None:
                        self._store(previous, run.chroma_ids, report, notify)
                    previous, pending, pending_chunks = group, [], 0
            for group in (previous, self._submit(pending, queue)):
                self._store(group, run.chroma_ids, report, notify)
        finally:
            queue.close()
        self._finish_run(run, roots)
        report.seconds = round(time.perf_counter() - started, 3)
        notify(Progress("done", len(files), len(files)))
        return report

    def _start_run(self, report: IndexReport) -> _Run:
        """What a run starts from: the files known, Chroma repaired against the manifest, the readers' version."""
        manifest = self.manifest
        known = manifest.files()
        stored_loaders = manifest.get("loader_version")
        if not known:  # nothing was read by other readers: a first run killed midway must not look like a change
            manifest.set(loader_version=LOADER_VERSION)
        elif stored_loaders != LOADER_VERSION:
            report.reread = (
                f"rolechat's file readers changed (version {stored_loaders or 1} -> {LOADER_VERSION}): "
                "every file is read again; chunks whose text is unchanged keep their vectors"
            )
            log.warning("%s: %s", self.name, report.reread)
        manifest_ids = manifest.chunk_ids()
        chroma_ids = all_ids(self.collection)
        stray = chroma_ids - manifest_ids
        if stray:
            self._delete(list(stray))
            chroma_ids -= stray
            report.repaired = len(stray)
            log.info("removed %d Chroma records left by an interrupted run", len(stray))
        missing = manifest_ids - chroma_ids
        dirty = {c.path for c in manifest.chunks(missing)} if missing else set()
        return _Run(report, known, chroma_ids, dirty)

    def _read_one(self, path: Path, run: _Run) -> tuple[FileRow, list[ChunkRow], str] | None:
        """One file read and split: (row, chunks, status) to store, or None when its outcome is reported already."""
        key, report = str(path), run.report
        kind = SUPPORTED.get(path.suffix.lower())
        if kind is None:
            report.files.append(FileOutcome(key, "skipped", reason=f"unsupported type {path.suffix or '(none)'}"))
            return None
        run.seen.add(key)
        try:
            size = path.stat().st_size
            if size > self.cfg.max_file_mb * 1e6:
                raise LoadError(f"too large ({size / 1e6:.1f} MB > {self.cfg.max_file_mb:g} MB)")
            data = path.read_bytes()
        except OSError as exc:
            report.files.append(FileOutcome(key, "failed", reason=f"cannot read: {exc.strerror or exc}"))
            return None
        except LoadError as exc:
            report.files.append(FileOutcome(key, "skipped", reason=str(exc)))
            return None
        digest = _sha(data)
        old = run.known.get(key)
        fresh = old is not None and old.sha256 == digest and key not in run.dirty
        if fresh and not report.reread:
            report.files.append(FileOutcome(key, "unchanged", old.chunks, old.encoding))
            return None
        try:
            if not data.strip():
                raise LoadError("empty file")
            loaded = parse(kind, path, data, self.cfg.max_expanded_bytes)
            pieces = split_file(
                loaded, self._count_tokens, self.cfg.chunk_size, self.cfg.chunk_overlap, self._max_tokens()
            )
        except Exception as exc:  # LoadError, or a reader's own failure: this file fails, the others go on
            reason = str(exc) if isinstance(exc, LoadError) else f"unreadable ({type(exc).__name__}: {exc})"[:300]
            log.debug("%s: %s", key, reason, exc_info=not isinstance(exc, LoadError))
            report.files.append(FileOutcome(key, "failed", reason=reason))
            if old is not None:  # it was good before: its old chunks no longer describe the file
                self._remove_file(key, run.chroma_ids, report)
            return None
        chunks = self._chunk_rows(key, pieces)
        if fresh and {c.id for c in chunks} == self.manifest.chunk_ids(key):  # read again, and nothing changed
            report.files.append(FileOutcome(key, "unchanged", old.chunks, old.encoding))
            return None
        row = FileRow(key, digest, len(data), loaded.kind, loaded.encoding, len(chunks))
        return row, chunks, "updated" if old is not None else "indexed"

    def _finish_run(self, run: _Run, roots: list[Path]) -> None:
        """Files gone from the folders indexed are removed; the readers' version, BM25 and the totals follow."""
        manifest, known, report = self.manifest, run.known, run.report
        for key in sorted(set(known) - run.seen):
            if _under(key, roots):
                self._remove_file(key, run.chroma_ids, report)
                report.files.append(FileOutcome(key, "removed", known[key].chunks))
        if all(key in run.seen or _under(key, roots) for key in known):
            # only now, and only once every file was read: a killed run, or one over some of the folders,
            # leaves files read by the old readers, and the next run reads them again
            manifest.set(loader_version=LOADER_VERSION)
        changed = report.chunks_added or report.chunks_removed or report.repaired or report.rebuilt
        self._sync_bm25(force=bool(changed), load=False)
        if changed:
            manifest.prune_vectors()
        report.chunks_total = len(run.chroma_ids)

    def _check_settings(self, report: IndexReport) -> None:
        """Record the settings on the first run; rebuild when the splitter's changed. The embedder of a rolechat
        `Embedder` was checked against the record when it was chosen (`embedder_spec`); any other embeddings
        object handed in is compared by its fingerprint, and a change rebuilds too."""
        manifest = self.manifest
        current = self.settings()
        spec_based = getattr(self.embeddings, "spec", None) is not None
        stored = {k: manifest.get(f"setting.{k}") for k in current}
        changes = [
            f"{k}: {stored[k]} -> {v}"
            for k, v in current.items()
            if stored[k] != v and not (k == "embedder" and spec_based)
        ]
        record = {f"setting.{k}": v for k, v in current.items()}
        if spec_based:
            record["embedder"] = self.embeddings.spec.to_record(self.embeddings.dimension)
        if all(v is None for v in stored.values()) or not changes:
            manifest.set(**record)
            return
        report.rebuilt = "settings changed (" + "; ".join(changes) + "): rebuilding the whole knowledge base"
        log.warning("%s: %s", self.name, report.rebuilt)
        self._drop_collection()
        manifest.clear()
        manifest.set(**record)

    def _chunk_rows(self, key: str, pieces) -> list[ChunkRow]:
        rows, seen = [], set()
        for ord_, piece in enumerate(pieces):
            chunk_id = _sha(f"{key}\x00{piece.location}\x00{piece.text}")[:32]
            if chunk_id in seen:  # the same text at the same place twice: keep one
                continue
            seen.add(chunk_id)
            rows.append(
                ChunkRow(
                    chunk_id,
                    key,
                    ord_,
                    piece.text,
                    piece.location,
                    piece.headings,
                    " ".join(tokenize(piece.text)),
                    _sha(piece.text)[:32],
                )
            )
        return rows

    def _submit(self, pending, queue: _EmbedQueue) -> _Group | None:
        """Queue the embedding of a group's chunks whose vectors are not stored yet."""
        if not pending:
            return None
        texts = {c.vec_key: c.text for _, chunks, _ in pending for c in chunks}
        cached = self.manifest.vectors(texts)
        return _Group(pending, cached, queue.submit({k: t for k, t in texts.items() if k not in cached}))

    def _store(self, group: _Group | None, chroma_ids: set[str], report: IndexReport, notify: ProgressCallback) -> None:
        """Wait for a group's vectors, then commit it: vectors, Chroma records, manifest rows."""
        if group is None:
            return
        manifest = self.manifest
        pending, cached = group.pending, group.cached
        total = sum(len(keys) for keys, _ in group.jobs)
        done = 0
        for keys, future in group.jobs:
            notify(Progress("embed", done, total, pending[0][0].path))
            fresh = dict(zip(keys, future.result()))
            manifest.put_vectors(fresh)  # committed now: a re-run after a kill does not pay twice
            cached.update(fresh)
            done += len(keys)
            report.chunks_embedded += len(keys)
        # Texts another group queued first: that group is stored by now, its vectors are in the manifest.
        cached.update(manifest.vectors({c.vec_key for _, chunks, _ in pending for c in chunks} - cached.keys()))
        # One upsert for the whole group: Chroma pays per call (a transaction and its full-text index), so
        # per-file upserts of ~20 chunks cost 3x more. A kill between this and the manifest update leaves
        # records the manifest does not know; the next run deletes them as strays (vectors stay cached).
        new = [(row, c) for row, chunks, _ in pending for c in chunks if c.id not in chroma_ids]
        for start in range(0, len(new), MAX_BATCH):
            part = new[start : start + MAX_BATCH]
            self.collection.upsert(
                ids=[c.id for _, c in part],
                embeddings=[cached[c.vec_key].tolist() for _, c in part],
                documents=[c.text for _, c in part],
                metadatas=[c.metadata(row) for row, c in part],
            )
        for row, chunks, status in pending:
            old_ids = manifest.chunk_ids(row.path)
            added = [c.id for c in chunks if c.id not in chroma_ids]
            stale = list(old_ids - {c.id for c in chunks})
            self._delete(stale)
            manifest.replace_file(row, chunks)
            chroma_ids.update(added)
            chroma_ids.difference_update(stale)
            report.chunks_added += len(added)
            report.chunks_removed += len(stale)
            report.files.append(FileOutcome(row.path, status, len(chunks), row.encoding))
            notify(Progress("store", len(chunks), len(chunks), row.path))

    def _delete(self, ids: list[str]) -> None:
        for start in range(0, len(ids), MAX_BATCH):
            self.collection.delete(ids=ids[start : start + MAX_BATCH])

    def _remove_file(self, key: str, chroma_ids: set[str], report: IndexReport) -> None:
        ids = self.manifest.chunk_ids(key)
        self._delete(list(ids))
        self.manifest.remove_file(key)
        chroma_ids.difference_update(ids)
        report.chunks_removed += len(ids)

    def _drop_collection(self, name: str | None = None) -> None:
        client = open_client(self.cfg.chroma_url, self.path / "chroma")
        try:
            client.delete_collection(name or self.collection_name())
        except Exception:
            pass
        if name is None:
            self._collection: Collection | None = None

    # ----------------------------------------------------------------- re-embedding
    def reembed(self, spec: EmbedderSpec, progress: ProgressCallback | None = None) -> ReembedReport:
        """Embed every stored chunk again with the embedder `spec` and switch this knowledge base to it. No file
        is read or split again. The new vectors go to a side table (committed as they come, so a killed run
        resumes where it stopped) and a new Chroma collection; one manifest transaction then switches both, so
        until that moment the knowledge base answers with its old embedder, and after it with the new one."""
        from rolechat.rag.embedder import shared_embedder

        started = time.perf_counter()
        notify = progress or (lambda p: None)
        if not self.exists():
            raise ConfigError(f"no knowledge base named {self.name!r}")
        before = self.recorded_embedder()
        new = shared_embedder(spec, self.cfg.batch_size)
        record = spec.to_record(new.dimension)
        if self.manifest.get("reembed.target") != record:  # another target than an interrupted run's: start over
            self.manifest.clear_pending()
            self.manifest.set(**{"reembed.target": record})
        chunks = self.manifest.chunks()
        texts = {c.vec_key: c.text for c in chunks}
        report = ReembedReport(self.name, before.label if before else "(unknown)", spec.label, len(chunks))
        report.truncated = sum(1 for n in new.count_tokens(list(texts.values())) if n > new.max_tokens)
        report.embedded = self._embed_pending(new, texts, notify)
        target = f"{collection_name(self.name)}-{hashlib.sha256(record.encode()).hexdigest()[:8]}"
        self._fill_collection(target, chunks)
        old = self.collection_name()
        # the stored chunks keep their boundaries; files indexed from now on are split by the new tokenizer
        settings = {f"setting.{k}": v for k, v in self.settings(new).items()}
        self.manifest.switch_vectors(embedder=record, collection=target, **settings, **{"reembed.target": ""})
        if old != target:
            self._drop_collection(old)
        self._embeddings, self._collection = new, None
        report.seconds = round(time.perf_counter() - started, 3)
        notify(Progress("done", len(texts), len(texts)))
        return report

    def _embed_pending(self, embedder, texts: dict[str, str], notify: ProgressCallback) -> int:
        """Embed the texts not in the pending table yet; returns how many were embedded now."""
        done = self.manifest.vectors(texts, table="pending_vectors").keys()
        todo = {k: t for k, t in texts.items() if k not in done}
        queue = _EmbedQueue(embedder, self.cfg.batch_size)
        count = len(texts) - len(todo)
        try:
            for keys, future in queue.submit(todo):
                self.manifest.put_vectors(dict(zip(keys, future.result())), table="pending_vectors")
                count += len(keys)
                notify(Progress("embed", count, len(texts)))
        finally:
            queue.close()
        return len(todo)

    def _fill_collection(self, name: str, chunks: list[ChunkRow]) -> None:
        """A fresh Chroma collection `name` holding every chunk with its pending vector."""
        self._drop_collection(name)  # what an interrupted run left of it
        client = open_client(self.cfg.chroma_url, self.path / "chroma")
        target = open_collection(client, name)
        files = self.manifest.files()
        for start in range(0, len(chunks), MAX_BATCH):
            part = chunks[start : start + MAX_BATCH]
            vectors = self.manifest.vectors({c.vec_key for c in part}, table="pending_vectors")
            target.upsert(
                ids=[c.id for c in part],
                embeddings=[vectors[c.vec_key].tolist() for c in part],
                documents=[c.text for c in part],
                metadatas=[c.metadata(files.get(c.path)) for c in part],
            )

    # ----------------------------------------------------------------- BM25
    @property
    def bm25(self) -> BM25Index:
        if self._bm25 is None:
            self._sync_bm25(force=False)
        return self._bm25

    def section_starts(self) -> frozenset[str]:
        """Ids of the chunks that open their section (rag/ranking.py), read off the manifest in one pass and
        kept until the chunks change (the BM25 index's digest follows every change)."""
        digest = self.bm25.digest
        if self._starts[0] != digest:
            kinds = {path: f.kind for path, f in self.manifest.files().items()}
            starts, before, path = set(), None, None
            for cid, row_path, headings, location in self.manifest.outline():
                if row_path != path:
                    path, before = row_path, None
                if opens_section(headings, location, before, kinds.get(row_path, "")):
                    starts.add(cid)
                before = (headings, location)
            self._starts = (digest, frozenset(starts))
        return self._starts[1]

    def _sync_bm25(self, force: bool, load: bool = True) -> None:
        """Make the BM25 index match the manifest (rebuilding it after an interrupted run)."""
        digest = ids_digest(list(self.manifest.chunk_ids()))
        if self._bm25 is None:
            self._bm25 = BM25Index(self.path / "bm25")
            if not force and not load and self._bm25.saved_digest() == digest:
                self._bm25 = None  # in step on disk; load lazily when a search needs it
                return
            if not force and not self._bm25.load():
                force = True
        if force or self._bm25.digest != digest:
            self._bm25.build(self.manifest.bm25_rows())

    # ----------------------------------------------------------------- reading
    def documents(self) -> list[DocumentInfo]:
        return [
            DocumentInfo(f.path, f.kind, f.encoding, f.chunks, f.size, f.indexed_at)
            for f in sorted(self.manifest.files().values(), key=lambda f: f.path)
        ]

    def chunk_count(self) -> int:
        return len(self.manifest.chunk_ids())

    def stored_settings(self) -> dict[str, str]:
        m = self.manifest
        keys = [r[0] for r in m._rows("SELECT key FROM meta WHERE key LIKE 'setting.%'")]
        return {k.removeprefix("setting."): m.get(k) or "" for k in keys}

    def delete_document(self, path: str | os.PathLike) -> int:
        """Remove one document's chunks; returns how many were removed (0 if it was not indexed)."""
        key = str(Path(path).expanduser().resolve())
        if key not in self.manifest.files():
            key = str(path)
            if key not in self.manifest.files():
                return 0
        report = IndexReport(self.name)
        self._remove_file(key, set(), report)
        self._sync_bm25(force=True)
        return report.chunks_removed

    def retriever(self, mode: str | None = None, k: int | None = None) -> BaseRetriever:
        """A LangChain retriever over this knowledge base (dense, bm25 or hybrid)."""
        from rolechat.rag.retrievers import make_retriever

        return make_retriever(self, mode or self.cfg.mode, k or self.cfg.k)

    def search(self, query: str, k: int | None = None, mode: str | None = None) -> list[Document]:
        """Ranked `Document`s; metadata has source, location, score and found_by."""
        return self.retriever(mode, k).invoke(query)


def _quote(name: str) -> str:
    """`name` as typed in a shell: as is when it is plain word characters (Chinese included), else quoted."""
    import shlex

    return name if re.fullmatch(r"[\w.-]+", name) else shlex.quote(name)


def list_kbs(root: Path | None = None) -> list[str]:
    base = root or kb_dir()
    return sorted(p.name for p in base.iterdir() if (p / "manifest.sqlite").is_file())


def delete_kb(name: str, cfg: RAGConfig | None = None, root: Path | None = None) -> bool:
    """Delete a knowledge base (its folder and, on a Chroma server, its collection). False if absent."""
    kb = KnowledgeBase(name, cfg, embeddings=False, root=root)
    if not kb.exists():
        return False
    if kb.cfg.chroma_url:
        kb._drop_collection()
    shutil.rmtree(kb.path)
    return True
