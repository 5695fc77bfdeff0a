"""The persona check on the training page: the summary `rolechat train --eval-persona` saves into the new
persona's manifest (`evaluation`, written by `rolechat eval-persona`), found again for the run that made it and
shown as a table, persona against base model, in the CLI's order of measures.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import streamlit as st

from rolechat import settings as rc_config
from ui.i18n import t

__all__ = ["EVAL_METRICS", "evaluation", "eval_rows", "draw_evaluation"]


def evaluation(persona: str, started: float) -> dict[str, Any] | None:
    """The persona check's summary in `persona`'s manifest, when made by a run started at `started` (epoch
    seconds); None when the manifest holds none, or only an older one."""
    from rolechat.llm.personas import PersonaError, PersonaManifest

    try:
        summary = PersonaManifest.load(rc_config.personas_dir() / persona).evaluation
        made = datetime.fromisoformat(summary["time"]).timestamp()
    except (PersonaError, OSError, KeyError, TypeError, ValueError):
        return None
    return summary if made >= started - 1 else None  # its time is whole seconds


EVAL_METRICS = (
    "rouge_l",
    "embedding_cosine",
    "character_score",
    "catchphrase",
    "break_character",
    "stopped",
    "distinct_1",
    "distinct_2",
    "mean_chars",
)


def eval_rows(summary: dict[str, Any], persona: str) -> list[dict[str, str]]:
    """The persona check's summary as table rows (metric, the persona, the base model), in the CLI's order;
    metrics measured on neither side are left out."""
    mine, base = summary.get("persona") or {}, summary.get("base") or {}
    rows = []
    for key in EVAL_METRICS:
        if mine.get(key) is None and base.get(key) is None:
            continue
        fmt = "{:.1f}" if key == "mean_chars" else "{:.3f}"
        label = t(f"train.eval.{key}", catchphrase=summary.get("catchphrase") or "")
        rows.append(
            {
                t("train.eval.metric"): label,
                persona: "-" if mine.get(key) is None else fmt.format(mine[key]),
                t("train.eval.base"): "-" if base.get(key) is None else fmt.format(base[key]),
            }
        )
    return rows


def draw_evaluation(name: str, summary: dict[str, Any] | None, error: str = "") -> None:
    """The table (or, when the check left no summary, its `error`) under a finished run of persona `name`."""
    if summary is None:
        if error:
            st.warning(t("train.eval.failed", error=error))
        return
    st.markdown(t("train.eval.title", name=name, prompts=summary.get("prompts", "?"), source=summary.get("source", "")))
    st.table(eval_rows(summary, name))
    for metric, why in (summary.get("skipped") or {}).items():
        st.caption(t("train.eval.skipped", metric=t(f"train.eval.{metric}", catchphrase=""), why=why))
    st.caption(t("train.eval.saved", path=rc_config.personas_dir() / name / "persona.json"))
