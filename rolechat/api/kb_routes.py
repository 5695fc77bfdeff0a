"""Knowledge-base routes: list, list documents, search, upload documents to index (a background job with
a status route), delete a document. All go through `rolechat.rag`; after a change the engine drops its
cached handle (`engine.knowledge.forget`), so the next chat sees the new index.

    GET    /v1/knowledge_bases                          -> {"object": "list", "data": [{"id", "documents", "chunks"}]}
    GET    /v1/knowledge_bases/{name}/documents         -> {"object": "list", "data": [{"id", "file", "chunks", ...}]}
                                                        (ids are never server paths: `public_ids`)
    POST   /v1/knowledge_bases/{name}/search            {"query", "k"?, "mode"?} -> ranked chunks
    POST   /v1/knowledge_bases/{name}/documents         multipart `files` -> 202 {"id": job, "status": "queued", ...}
    GET    /v1/index_jobs/{job_id}                      -> the job: status, progress, report or error
    DELETE /v1/knowledge_bases/{name}/documents/{doc}   doc = a document's id or file name -> chunks removed
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from rolechat import settings
from rolechat.api.errors import APIError, public
from rolechat.api.schemas import SearchRequest
from rolechat.api.services import services

__all__ = ["IndexJob", "IndexJobs", "public_ids", "public_sources", "router", "uploads_dir"]

log = logging.getLogger(__name__)

router = APIRouter()


def uploads_dir(name: str) -> Path:
    """Where uploaded files are kept: the app's own uploads folder (ui/kb.py), so the app and the API can
    each delete a document the other uploaded, and re-indexing finds the files again."""
    return settings.home() / "app" / "uploads" / name


def public_ids(name: str, paths: Iterable[str], others: Iterable[str] = ()) -> dict[str, str]:
    """The id clients see for each stored document path of knowledge base `name`, never a server path: an
    uploaded file's name, or another file's path below the folder indexed (`manuals/faq/a.md` for a folder
    `/srv/manuals`). `others`: the knowledge base's other paths, which decide that common folder."""
    uploads = uploads_dir(name)
    paths = list(paths)
    indexed = [Path(p) for p in (*paths, *others) if not Path(p).is_relative_to(uploads)]
    top = Path(os.path.commonpath([str(p.parent) for p in indexed])).parent if indexed else uploads
    out = {}
    for raw in paths:
        path = Path(raw)
        out[raw] = (path.relative_to(uploads) if path.is_relative_to(uploads) else path.relative_to(top)).as_posix()
    return out


def public_sources(name: str, rows: list[dict[str, Any]], engine: Any) -> list[dict[str, Any]]:
    """Source rows (search hits, chat sources) with `source` as the id clients see (`public_ids`)."""
    if not rows:
        return rows
    known = [d.path for d in engine.knowledge.base(name).documents()]
    ids = public_ids(name, {r["source"] for r in rows if r.get("source")}, known)
    return [{**r, "source": ids.get(r.get("source", ""), r.get("file", ""))} for r in rows]


@dataclass
class IndexJob:
    id: str
    knowledge_base: str
    files: list[str]
    status: str = "queued"  # queued | running | succeeded | failed
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] | None = None
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"object": "index_job", **asdict(self)}


class IndexJobs:
    """Indexing jobs, run one at a time on a background thread (indexing is CPU- and disk-bound), and
    a write lock that document deletion shares, so a knowledge base is changed by one writer at a time."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.write_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rolechat-index")
        self._jobs: dict[str, IndexJob] = {}

    def open(self, name: str) -> Any:
        from rolechat.rag import KnowledgeBase

        return KnowledgeBase(name, self.engine.rag_cfg, embeddings=self.engine.embeddings)

    def submit(self, name: str, paths: list[Path]) -> IndexJob:
        job = IndexJob(id=f"index-{uuid.uuid4().hex[:16]}", knowledge_base=name, files=[p.name for p in paths])
        self._jobs[job.id] = job
        self._pool.submit(self._run, job, paths)
        return job

    def get(self, job_id: str) -> IndexJob | None:
        return self._jobs.get(job_id)

    def _run(self, job: IndexJob, paths: list[Path]) -> None:
        job.status = "running"

        def progress(p: Any) -> None:
            job.progress = {"phase": p.phase, "done": p.done, "total": p.total, "detail": p.detail}

        try:
            with self.write_lock:
                kb = self.open(job.knowledge_base)
                try:
                    job.report = _public_report(job.knowledge_base, kb.index(paths, progress=progress).to_dict())
                finally:
                    kb.close()
                    self.engine.knowledge.forget(job.knowledge_base)
            job.status = "succeeded"
        except Exception as exc:  # the job's status says what went wrong; the server goes on
            log.exception("indexing %s failed", job.knowledge_base)
            job.status, job.error = "failed", public(f"{type(exc).__name__}: {exc}")
        finally:
            job.finished_at = time.time()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _public_report(name: str, report: dict[str, Any]) -> dict[str, Any]:
    """An index report as clients see it: each file by its id, and no server folder in any reason."""
    ids = public_ids(name, [f["path"] for f in report["files"]])
    files = [{**f, "path": ids[f["path"]], "reason": public(f["reason"])} for f in report["files"]]
    return {**report, "files": files}


def _name(name: str) -> str:
    from rolechat.rag.knowledge_base import validate_name

    try:
        return validate_name(name)
    except ValueError as exc:
        raise APIError(400, str(exc), param="name") from None


def _existing(name: str) -> str:
    from rolechat.rag import list_kbs

    name = _name(name)
    if name not in list_kbs():
        known = ", ".join(list_kbs()) or "none"
        raise APIError(404, f"Knowledge base {name!r} not found; available: {known}.", code="knowledge_base_not_found")
    return name


def _summaries() -> list[dict[str, Any]]:
    from rolechat.rag import KnowledgeBase, list_kbs

    rows = []
    for name in list_kbs():
        kb = KnowledgeBase(name, embeddings=False)
        try:
            docs = kb.documents()
            rows.append(
                {"id": name, "object": "knowledge_base", "documents": len(docs), "chunks": sum(d.chunks for d in docs)}
            )
        finally:
            kb.close()
    return rows


@router.get("/v1/knowledge_bases")
def list_knowledge_bases() -> dict[str, Any]:
    return {"object": "list", "data": _summaries()}


def _documents(name: str) -> list[dict[str, Any]]:
    """The documents as clients see them (`id`: `public_ids`), each with its stored path under `path`."""
    from rolechat.rag import KnowledgeBase

    kb = KnowledgeBase(name, embeddings=False)
    try:
        docs = kb.documents()
        ids = public_ids(name, [d.path for d in docs])
        return [
            {
                "id": ids[d.path],
                "path": d.path,
                "object": "document",
                "file": Path(d.path).name,
                "kind": d.kind,
                "encoding": d.encoding,
                "chunks": d.chunks,
                "size": d.size,
                "indexed_at": d.indexed_at,
            }
            for d in docs
        ]
    finally:
        kb.close()


@router.get("/v1/knowledge_bases/{name}/documents")
def list_documents(name: str) -> dict[str, Any]:
    data = [{k: v for k, v in d.items() if k != "path"} for d in _documents(_existing(name))]
    return {"object": "list", "data": data}


@router.post("/v1/knowledge_bases/{name}/search")
def search(name: str, req: SearchRequest, request: Request) -> dict[str, Any]:
    engine = services(request).engine
    kb = engine.knowledge.base(_existing(name))
    rows = []
    for rank, doc in enumerate(kb.search(req.query, req.k, req.mode), 1):
        meta = doc.metadata
        score = meta.get("score")
        rows.append(
            {
                "rank": rank,
                "file": Path(meta.get("source", "")).name,
                "source": meta.get("source", ""),
                "location": meta.get("location", ""),
                "score": None if score is None else float(score),
                "found_by": meta.get("found_by"),
                "text": doc.page_content,
            }
        )
    return {"object": "list", "knowledge_base": name, "query": req.query, "data": public_sources(name, rows, engine)}


def _file_name(raw: str | None) -> str:
    name = Path((raw or "").replace("\\", "/")).name.strip()
    if not name or name in (".", "..") or len(name) > 255 or any(ord(c) < 32 for c in name):
        raise APIError(400, f"Invalid file name {raw!r}.", param="files")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise APIError(400, "A file name holds invalid Unicode.", param="files") from None
    return name


@router.post("/v1/knowledge_bases/{name}/documents", status_code=202)
async def upload_documents(name: str, request: Request, files: list[UploadFile] = File(...)) -> JSONResponse:
    svc = services(request)
    name = _name(name)
    names = [_file_name(f.filename) for f in files]
    if len(set(names)) != len(names):
        raise APIError(400, "Two uploaded files have the same name.", param="files")
    folder = uploads_dir(name)
    paths = []
    for upload, file_name in zip(files, names):
        data = await upload.read()
        path = folder / file_name
        await run_in_threadpool(_write, path, data)
        paths.append(path)
    job = svc.jobs.submit(name, paths)
    return JSONResponse(job.as_dict(), status_code=202, headers={"Location": f"/v1/index_jobs/{job.id}"})


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@router.get("/v1/index_jobs/{job_id}")
def index_job(job_id: str, request: Request) -> dict[str, Any]:
    job = services(request).jobs.get(job_id)
    if job is None:
        raise APIError(404, f"No index job {job_id!r}.", param="job_id")
    return job.as_dict()


@router.delete("/v1/knowledge_bases/{name}/documents/{document:path}")
def delete_document(name: str, document: str, request: Request) -> dict[str, Any]:
    svc = services(request)
    name = _existing(name)
    docs = _documents(name)
    matches = [d for d in docs if document in (d["id"], d["path"])] or [d for d in docs if d["file"] == document]
    if not matches:
        raise APIError(404, f"No document {document!r} in knowledge base {name!r}.", param="document")
    if len(matches) > 1:
        raise APIError(
            409,
            f"{len(matches)} documents are named {document!r}; give its id: {', '.join(d['id'] for d in matches)}.",
            param="document",
        )
    path, public = matches[0]["path"], matches[0]["id"]
    with svc.jobs.write_lock:
        kb = svc.jobs.open(name)
        try:
            removed = kb.delete_document(path)
        finally:
            kb.close()
            svc.engine.knowledge.forget(name)
    upload = uploads_dir(name) / Path(path).name
    if Path(path) == upload:
        upload.unlink(missing_ok=True)
    return {"id": public, "object": "document.deleted", "deleted": True, "chunks_removed": removed}
