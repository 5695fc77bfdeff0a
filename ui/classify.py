"""The text-classification page: pick a classifier adapter, type or upload texts, see labels and probabilities.

Classifiers are the folders under `$ROLECHAT_HOME/classifiers` (trained with `rolechat train-classifier`);
a loaded one is cached per folder and manifest time, so a retrained classifier is picked up on the next run.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import streamlit as st

from rolechat import settings as rc
from ui import state
from ui.i18n import t

__all__ = ["render", "read_upload", "load_classifier"]

log = logging.getLogger(__name__)


@st.cache_resource(max_entries=2, show_spinner=False)
def load_classifier(path: str, stamp: float, device: str):
    """A classifier, loaded once per folder and manifest time (shared by this page and the chat's tone check)."""
    from rolechat.finetune.classifier import Classifier

    return Classifier.load(path, device=device)


def read_upload(name: str, data: bytes, text_column: str = "text") -> list[str]:
    """Texts of an uploaded file, read the way `rolechat classify --file` reads it."""
    from rolechat.finetune.classify_data import read_texts

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(name).name
        path.write_bytes(data)
        return read_texts(path, text_column)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def render() -> None:
    from rolechat.finetune.classifier import MANIFEST, discover_classifiers

    st.title(t("clf.title"))
    entries = discover_classifiers()
    usable = [e for e in entries if e.ok]
    broken = [e for e in entries if not e.ok]
    if broken:
        with st.expander(t("clf.broken", n=len(broken))):
            for e in broken:
                st.caption(f"{e.name}: {e.error}")
    if not usable:
        st.info(t("clf.none"))
        return
    names = [e.name for e in usable]
    name = st.selectbox(t("clf.pick"), names, key="clf_name")
    entry = usable[names.index(name)]
    m = entry.manifest
    st.caption(
        t(
            "clf.about",
            labels=", ".join(m.labels),
            base=m.base_model,
            acc=_fmt(m.metrics.get("accuracy_after")),
            f1=_fmt(m.metrics.get("macro_f1_after")),
        )
    )
    confusion = entry.path / "confusion.png"
    if confusion.is_file():
        with st.expander(t("clf.confusion")):
            st.image(str(confusion))
    typed = st.text_area(t("clf.texts"), key="clf_texts", height=140)
    upload = st.file_uploader(t("clf.upload"), type=["txt", "csv", "tsv", "jsonl", "json"], key="clf_upload")
    if not st.button(t("clf.run"), type="primary", key="clf_run"):
        return
    texts = [line.strip() for line in typed.splitlines() if line.strip()]
    try:
        if upload is not None:
            texts += read_upload(upload.name, upload.getvalue(), m.text_column)
        if not texts:
            st.warning(t("clf.empty"))
            return
        from rolechat.llm.config import LLMConfig

        device = rc.build(LLMConfig, "llm", state.file_data()).device
        with st.spinner(t("clf.loading")):
            clf = load_classifier(str(entry.path), (entry.path / MANIFEST).stat().st_mtime, device)
        started = time.perf_counter()
        preds = clf.predict(texts)
        seconds = time.perf_counter() - started
    except Exception as exc:  # a bad file or a missing base model: say so on the page
        log.warning("classification failed: %s", exc)
        st.error(t("clf.failed", error=exc))
        return
    rows = [
        {t("clf.text"): text, t("clf.label"): p.label, t("clf.score"): round(p.score, 4)}
        | {label: round(v, 4) for label, v in p.probabilities.items()}
        for text, p in zip(texts, preds)
    ]
    st.caption(t("clf.summary", n=len(texts), seconds=seconds))
    st.dataframe(rows, use_container_width=True, hide_index=True)
