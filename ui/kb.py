"""The knowledge-base page, and the knowledge-base side of the chat page.

Lists knowledge bases with their documents, indexes uploaded files or a folder with a progress bar
and the report, deletes documents or whole knowledge bases, and searches one to show ranked chunks.
Answering from a knowledge base is the conversation engine's job (the chat page calls it).
On first run, with no knowledge base at all, the sample `knowledge/` folder is indexed (once per home).
A typed folder is indexed only when `ui.access.check_path` allows it (`[app] path_roots`).

The embedder is loaded once per process (`st.cache_resource`); `KnowledgeBase` objects are cheap and
opened per run, so indexing done elsewhere (the CLI) is always seen.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import streamlit as st

from rolechat import settings as rc_config
from ui import access, state
from ui.i18n import t

__all__ = [
    "MODES",
    "mode_labels",
    "rag_config",
    "rag_defaults",
    "embeddings",
    "open_kb",
    "kb_names",
    "ensure_sample_kb",
    "render",
]

log = logging.getLogger(__name__)

MODES = ("hybrid", "bm25", "dense")  # the retriever modes of rag, best first


def mode_labels() -> dict[str, str]:
    """Retriever names in the session's language (format_func must not look the language up later)."""
    return {m: t(f"mode.{m}") for m in MODES}


def rag_config():
    from rolechat.rag import RAGConfig

    return rc_config.build(RAGConfig, "rag", state.file_data())


rag_defaults = rag_config


def embeddings():
    """An embeddings object to open every knowledge base with, or None (the app's choice): each is then opened
    with the embedder it was built with, new ones with rag.embedder's, each loaded once per process
    (`rolechat.rag.embedder.shared_embedder`). Tests replace this function with fake embeddings."""
    return None


def open_kb(name: str):
    from rolechat.rag import KnowledgeBase

    return KnowledgeBase(name, rag_config(), embeddings=embeddings())


def kb_names() -> list[str]:
    from rolechat.rag import list_kbs

    return list_kbs()


def uploads_dir(name: str) -> Path:
    """Where files uploaded into knowledge base `name` are kept (indexing records their paths)."""
    return state.app_dir() / "uploads" / name


# -- indexing -------------------------------------------------------------------------------------------


def index_with_progress(name: str, paths: list[Path | str]):
    """Index `paths` into `name`, drawing a progress bar; returns the IndexReport."""
    bar = st.progress(0.0, text=t("kb.progress_start"))

    def on_progress(p) -> None:
        frac = p.done / p.total if p.total else 1.0
        label = t(f"kb.phase.{p.phase}") if p.phase in ("scan", "embed", "store", "done") else p.phase
        detail = Path(p.detail).name if p.detail else ""
        bar.progress(min(max(frac, 0.0), 1.0), text=f"{label} {p.done}/{p.total} {detail}")

    kb = open_kb(name)
    try:
        return kb.index(paths, progress=on_progress)
    finally:
        kb.close()


def show_report(report: dict[str, Any]) -> None:
    summary = report["summary"]
    cols = st.columns(6)
    for col, key in zip(cols, ("indexed", "updated", "unchanged", "removed", "skipped", "failed")):
        col.metric(t(f"kb.status.{key}"), summary.get(key, 0))
    st.caption(
        t(
            "kb.report_line",
            kb=report["kb"],
            added=report["chunks_added"],
            removed=report["chunks_removed"],
            total=report["chunks_total"],
            seconds=report["seconds"],
        )
    )
    if report.get("rebuilt"):
        st.warning(report["rebuilt"])
    if report.get("reread"):
        st.info(report["reread"])
    problems = [f for f in report["files"] if f["status"] in ("skipped", "failed")]
    if problems:
        st.dataframe(
            [
                {
                    t("kb.col.file"): f["path"],
                    t("kb.col.status"): t(f"kb.status.{f['status']}"),
                    t("kb.col.reason"): f["reason"],
                }
                for f in problems
            ],
            hide_index=True,
            width="stretch",
        )


def _marker() -> Path:
    return state.app_dir() / "sample-kb.json"


_SAMPLE_LOCK = threading.Lock()  # two tabs opened on first run must not index the sample twice at once


def ensure_sample_kb() -> None:
    """First run: with no knowledge base at all, index the sample folder once (with a progress bar)."""
    cfg = state.app_config()
    if not cfg.sample_kb or _marker().exists():
        return
    with _SAMPLE_LOCK:
        if _marker().exists():
            return
        if kb_names():  # the user already has knowledge bases: never add the sample later
            _marker().write_text(json.dumps({"skipped": "knowledge bases existed"}), encoding="utf-8")
            return
        _index_sample(cfg)


def _index_sample(cfg) -> None:
    folder = cfg.sample_folder
    if not folder.is_dir() or not any(p.is_file() for p in folder.rglob("*")):
        return
    st.info(t("kb.sample_indexing", folder=folder, kb=cfg.sample_kb_name))
    try:
        report = index_with_progress(cfg.sample_kb_name, [folder])
    except Exception as exc:  # shown, and not retried on every run
        log.exception("indexing the sample folder failed")
        st.error(t("kb.sample_failed", error=exc))
        _marker().write_text(json.dumps({"error": str(exc)}, ensure_ascii=False), encoding="utf-8")
        return
    _marker().write_text(json.dumps(report.summary(), ensure_ascii=False), encoding="utf-8")
    st.session_state["kb_report"] = report.to_dict()
    st.success(t("kb.sample_done", kb=cfg.sample_kb_name, chunks=report.chunks_total))


# -- the page -------------------------------------------------------------------------------------------


def _save_uploads(name: str, files) -> list[Path]:
    folder = uploads_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for f in files:
        path = folder / Path(f.name).name
        path.write_bytes(f.getvalue())
        saved.append(path)
    return saved


def _index_section(names: list[str]) -> None:
    new = t("kb.new_kb")
    choice = st.selectbox(t("kb.target"), [*names, new], key="kb_target")
    name = st.text_input(t("kb.new_name"), key="kb_new_name").strip() if choice == new else choice
    upload_tab, folder_tab = st.tabs([t("kb.tab_upload"), t("kb.tab_folder")])
    with upload_tab:
        files = st.file_uploader(t("kb.upload"), accept_multiple_files=True, key="kb_upload")
        go_upload = st.button(t("kb.index_files"), disabled=not files or not name, key="kb_index_files")
    with folder_tab:
        folder = st.text_input(t("kb.folder"), key="kb_folder", placeholder="/path/to/docs")
        hint = access.path_roots_hint()
        if hint:
            st.caption(hint)
        go_folder = st.button(t("kb.index_folder"), disabled=not folder.strip() or not name, key="kb_index_folder")
    if not (go_upload or go_folder):
        return
    try:
        from rolechat.rag.knowledge_base import validate_name

        name = validate_name(name)
        paths = _save_uploads(name, files) if go_upload else [access.check_path(folder.strip())]
        report = index_with_progress(name, paths)
    except access.PathRefused as exc:  # outside [app] path_roots: say which folders are allowed
        log.warning("refused to index %s: %s", folder, exc)
        st.error(exc.message())
        return
    except Exception as exc:  # a bad name, a missing folder, an embedder problem: say so, keep the page
        log.exception("indexing failed")
        st.error(t("kb.index_failed", error=exc))
        return
    st.session_state["kb_report"] = report.to_dict()
    st.session_state["kb_name"] = name
    st.rerun()


def _embedder_line(kb) -> None:
    """Which embedder the knowledge base's vectors come from (and that it must be re-embedded to change it)."""
    info = kb.embedder_info()
    if not info.get("source"):  # not indexed yet, or built with embeddings handed in
        st.caption(t("kb.embedder", embedder=info["name"], dim="?", prefix="—"))
        return
    prefix = t("kb.prefix_none") if info["prefix"] == "none" else info["prefix"]
    st.caption(t("kb.embedder", embedder=info["label"], dim=info["dimension"] or "?", prefix=prefix))


def _kb_details(name: str) -> None:
    kb = open_kb(name)
    try:
        docs = kb.documents()
        chunks = sum(d.chunks for d in docs)
        with st.expander(t("kb.summary", kb=name, docs=len(docs), chunks=chunks), expanded=len(docs) < 12):
            _embedder_line(kb)
            if docs:
                st.dataframe(
                    [
                        {
                            t("kb.col.file"): Path(d.path).name,
                            t("kb.col.chunks"): d.chunks,
                            t("kb.col.kind"): d.kind,
                            t("kb.col.encoding"): d.encoding,
                            t("kb.col.size"): f"{d.size / 1024:.1f} KB",
                            t("kb.col.folder"): str(Path(d.path).parent),
                        }
                        for d in docs
                    ],
                    hide_index=True,
                    width="stretch",
                )
                doc = st.selectbox(
                    t("kb.doc_pick"), [d.path for d in docs], key=f"kb_doc_{name}", format_func=lambda p: Path(p).name
                )
                if st.button(t("kb.delete_doc"), key=f"kb_del_doc_{name}"):
                    removed = kb.delete_document(doc)
                    upload = uploads_dir(name) / Path(doc).name
                    if Path(doc) == upload:
                        upload.unlink(missing_ok=True)
                    st.session_state["kb_flash"] = t("kb.doc_deleted", doc=Path(doc).name, chunks=removed)
                    st.rerun()
            else:
                st.caption(t("kb.empty_kb"))
            confirm = st.checkbox(t("kb.confirm_delete", kb=name), key=f"kb_confirm_{name}")
            if st.button(t("kb.delete_kb"), key=f"kb_del_{name}", disabled=not confirm, type="primary"):
                from rolechat.rag import delete_kb

                kb.close()
                delete_kb(name, rag_config())
                import shutil

                shutil.rmtree(uploads_dir(name), ignore_errors=True)
                st.session_state["kb_flash"] = t("kb.kb_deleted", kb=name)
                st.rerun()
    finally:
        kb.close()


def _search_section(names: list[str]) -> None:
    cfg = rag_config()
    cols = st.columns([2, 1, 1])
    name = cols[0].selectbox(t("kb.search_kb"), names, key="kb_search_kb")
    k = cols[1].number_input(t("side.k"), 1, 50, min(cfg.k, 50), key="kb_search_k")
    mode = cols[2].selectbox(
        t("side.mode"), MODES, index=MODES.index(cfg.mode), key="kb_search_mode", format_func=mode_labels().__getitem__
    )
    query = st.text_input(t("kb.query"), key="kb_query", placeholder=t("kb.query_placeholder"))
    if not query.strip():
        return
    kb = open_kb(name)
    try:
        started = time.perf_counter()
        docs = kb.search(query.strip(), k=int(k), mode=mode)
        ms = (time.perf_counter() - started) * 1000
    except Exception as exc:
        log.exception("search failed")
        st.error(t("kb.search_failed", error=exc))
        return
    finally:
        kb.close()
    if not docs:
        st.info(t("kb.no_hits"))
        return
    st.caption(t("kb.hits", n=len(docs), ms=ms))
    from rolechat.conversation import source_rows

    for n, src in enumerate(source_rows(docs), 1):
        with st.container(border=True):
            score = f"{src['score']:.4f}" if isinstance(src.get("score"), (int, float)) else "—"
            st.markdown(f"**{n}.** `{src['file']}` · {src['location']} · {t('kb.score')} {score} · {src['found_by']}")
            st.caption(docs[n - 1].page_content)


def render() -> None:
    st.title(t("kb.title"))
    try:
        ensure_sample_kb()
        names = kb_names()
    except Exception as exc:  # an invalid [rag]/[app] setting: the rest of the app still works
        st.error(t("config.error", error=exc))
        return
    flash = st.session_state.pop("kb_flash", None)
    if flash:
        st.success(flash)
    report = st.session_state.get("kb_report")
    if report:
        with st.container(border=True):
            st.markdown(t("kb.last_report"))
            show_report(report)
    list_tab, add_tab, search_tab = st.tabs([t("kb.list_header"), t("kb.add_header"), t("kb.search_header")])
    with list_tab:
        if not names:
            st.info(t("kb.none"))
        for name in names:
            _kb_details(name)
    with add_tab:
        _index_section(names)
    with search_tab:
        if names:
            _search_section(names)
        else:
            st.caption(t("kb.none"))
