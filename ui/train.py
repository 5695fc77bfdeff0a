"""The training page: pick a dataset, lint it, set up a persona, train it in the background, watch it live.

Training and the lint run as `python -m rolechat train ...` child processes (the lint with
`--dry-run --json`); nothing of `finetune` is imported here. A run is started in its own session
(`start_new_session=True`), so closing the page or the browser doesn't stop it, and is described by a
small job file under `$ROLECHAT_HOME/app/train/`, so a reopened page finds it again. Progress is read
from the JSON-lines file the trainer writes (`runs_dir()/<persona>/progress.jsonl`, format in
finetune/progress.py); the chat page picks the finished persona up by itself. A run started with the
persona check (`--eval-persona`) goes on evaluating after its last progress record; the check's summary,
which `rolechat eval-persona` saves into the persona's manifest, is the table the page shows at the end.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from rolechat import settings as rc_config
from ui import access, state
from ui.i18n import t
from ui.persona_check import draw_evaluation, evaluation

__all__ = [
    "Job",
    "RunView",
    "SAMPLES_DIR",
    "samples",
    "lint",
    "start",
    "stop",
    "jobs",
    "view",
    "read_progress",
    "render",
]

log = logging.getLogger(__name__)

SAMPLES_DIR = state.REPO_ROOT / "examples" / "personas"
# Suggested persona settings for the sample datasets (the commands in examples/personas/README.md).
SAMPLE_HINTS = {
    "cat": ("miaomiao", "喵喵", "你是一只名叫喵喵的小猫，说话可爱，每句话都以“喵~”结尾。"),
    "palace": ("niangniang", "娘娘", "你是宫中的一位娘娘，自称本宫，说话文雅、带着古风，语气从容。"),
}
LINT_TIMEOUT_S = 300
POLL_S = 2.0
LOG_TAIL_CHARS = 3000

_PROCS: dict[int, subprocess.Popen] = {}  # children of this server process, polled so they are reaped


def cli() -> list[str]:
    return [sys.executable, "-m", "rolechat"]


def train_args(hparams: dict[str, Any]) -> list[str]:
    """`rolechat train` flags for TrainConfig field values (None: left to the config file / environment)."""
    from rolechat.finetune.config import TrainConfig

    return rc_config.to_args(TrainConfig, "train", {k: v for k, v in hparams.items() if v is not None})


# the page's own labels for the most used settings; every other field is labelled by its config key
HPARAM_LABELS = {
    "epochs": "train.epochs",
    "max_steps": "train.max_steps",
    "learning_rate": "train.lr",
    "rank": "train.rank",
    "batch_size": "train.batch",
    "max_length": "train.max_length",
}


def _child_env() -> dict[str, str]:
    # unbuffered, so the log file follows the run; wide, so rich doesn't wrap messages mid-path
    return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def samples() -> list[Path]:
    return sorted(p for p in SAMPLES_DIR.glob("*.json*") if p.is_file()) if SAMPLES_DIR.is_dir() else []


# -- lint -----------------------------------------------------------------------------------------------


class LintError(RuntimeError):
    """The data lint failed; the message is the CLI's own error."""


def _parse_json_output(out: str) -> dict[str, Any]:
    start = out.find("{")
    if start < 0:
        raise ValueError("no JSON in the output")
    return json.JSONDecoder().raw_decode(out[start:])[0]


def lint(data: Path, system: str | None = None) -> dict[str, Any]:
    """`rolechat train --dry-run --json` on `data`: counts, lengths, issues and a rendered example."""
    cmd = [*cli(), "train", "--data", str(data), "--persona", "lint", "--dry-run", "--json"]
    if system:
        cmd += ["--system", system]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=LINT_TIMEOUT_S, cwd=state.REPO_ROOT, env=_child_env()
    )
    if proc.returncode != 0:
        raise LintError((proc.stderr.strip() or proc.stdout.strip() or f"exit code {proc.returncode}")[-2000:])
    try:
        return _parse_json_output(proc.stdout)
    except ValueError as exc:
        raise LintError(f"unexpected lint output ({exc}): {proc.stdout[-500:]}") from None


# -- jobs -----------------------------------------------------------------------------------------------


@dataclass
class Job:
    """A training process started from the app (saved as JSON so a reopened page finds it)."""

    persona: str
    pid: int
    cmd: list[str]
    log: str
    started: float
    data: str = ""
    task: str = "persona"  # or "classify": a text classifier (`rolechat train-classifier`)
    eval_persona: bool = False  # `--eval-persona`: the persona check runs after training, in the same process


def _jobs_dir() -> Path:
    path = state.app_dir() / "train"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _job_file(persona: str, task: str = "persona") -> Path:
    # '.' is never part of a name, so a classifier's job can't take a persona's file
    return _jobs_dir() / (f"{persona}.json" if task == "persona" else f"{task}.{persona}.json")


def jobs() -> list[Job]:
    """Runs started from the app, newest first (unreadable job files are ignored)."""
    found = []
    for path in _jobs_dir().glob("*.json"):
        try:
            found.append(Job(**json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, TypeError):
            log.warning("ignoring unreadable job file %s", path)
    return sorted(found, key=lambda j: j.started, reverse=True)


def start(
    data: Path,
    persona: str,
    *,
    system: str = "",
    display_name: str = "",
    overwrite: bool = False,
    hparams: dict[str, Any] | None = None,
    eval_persona: bool = False,
) -> Job:
    """Launch `rolechat train` in the background (its own session: it outlives the page).

    `hparams` maps TrainConfig field names to values (None = the config's value); their flags come from
    the same table as the CLI's own options (`settings.to_args`), so the page can set every field.
    `eval_persona`: compare the new persona with the base model when training ends (`--eval-persona`)."""
    cmd = [*cli(), "train", "--data", str(data), "--persona", persona]
    if system:
        cmd += ["--system", system]
    if display_name:
        cmd += ["--display-name", display_name]
    cmd += train_args(hparams or {})
    if overwrite:
        cmd.append("--overwrite")
    if eval_persona:
        cmd.append("--eval-persona")
    return _launch(cmd, _jobs_dir() / f"{persona}.log", _job_file(persona), persona, data, eval_persona=eval_persona)


def start_classifier(data: Path, name: str, *, overwrite: bool = False, hparams: dict[str, Any] | None = None) -> Job:
    """Launch `rolechat train-classifier` in the background, like `start` does for a persona; `hparams` maps
    ClassifyConfig field names to values (None = the config's value)."""
    from rolechat.finetune.classify_config import ClassifyConfig

    values = {k: v for k, v in (hparams or {}).items() if v is not None}
    cmd = [*cli(), "train-classifier", "--data", str(data), "--name", name]
    cmd += rc_config.to_args(ClassifyConfig, "classify", values)
    if overwrite:
        cmd.append("--overwrite")
    return _launch(cmd, _jobs_dir() / f"classify.{name}.log", _job_file(name, "classify"), name, data, task="classify")


def _launch(cmd: list[str], log_path: Path, job_path: Path, name: str, data: Path, **fields: Any) -> Job:
    """Start `cmd` in its own session with its output in `log_path`; record the job in `job_path` and return it."""
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            cmd,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=state.REPO_ROOT,
            env=_child_env(),
            start_new_session=True,
        )
    _PROCS[proc.pid] = proc
    job = Job(persona=name, pid=proc.pid, cmd=cmd, log=str(log_path), started=time.time(), data=str(data), **fields)
    job_path.write_text(json.dumps(asdict(job), ensure_ascii=False), encoding="utf-8")
    return job


def progress_file(job: Job) -> Path:
    """Where the job's trainer writes its progress (finetune.trainer / finetune.classify_train)."""
    if job.task == "classify":
        return rc_config.runs_dir() / "classifiers" / job.persona / "progress.jsonl"
    return rc_config.runs_dir() / job.persona / "progress.jsonl"


def alive(pid: int) -> bool:
    proc = _PROCS.get(pid)
    if proc is not None:
        return proc.poll() is None
    try:  # started by an earlier server process: ask the OS
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z" and b"rolechat" in cmdline


def stop(job: Job) -> None:
    """Interrupt the run like Ctrl-C (the trainer keeps its last checkpoint for --resume)."""
    if alive(job.pid):
        try:
            os.killpg(job.pid, signal.SIGINT)
        except ProcessLookupError:
            pass


def read_progress(path: Path) -> list[dict[str, Any]]:
    """Complete records of a trainer progress file; a half-written last line is skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


@dataclass
class RunView:
    """What the page shows about one run."""

    job: Job
    state: str  # starting | running | evaluating (trained, the persona check still running) | done | failed | stopped
    records: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    log_tail: str = ""
    evaluation: dict[str, Any] | None = None  # the persona check's summary, when this run made one
    eval_error: str = ""  # why a requested persona check left no summary

    @property
    def steps(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("event") == "step"]

    @property
    def max_steps(self) -> int:
        for r in reversed(self.records):
            if r.get("max_steps"):
                return int(r["max_steps"])
        return 0


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(fh.tell() - LOG_TAIL_CHARS, 0))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def view(job: Job) -> RunView:
    """The run's state from its progress file and whether its process still lives."""
    records = [
        r for r in read_progress(progress_file(job)) if r.get("time", 0) >= job.started - 1
    ]  # ignore an earlier run's file
    last = records[-1] if records else {}
    running = alive(job.pid)
    if last.get("status") == "done":
        if not job.eval_persona:
            return RunView(job, "done", records)
        if running:
            return RunView(job, "evaluating", records)
        found = evaluation(job.persona, job.started)
        if found is not None:
            return RunView(job, "done", records, evaluation=found)
        tail = _tail(job.log)
        return RunView(job, "done", records, log_tail=tail, eval_error=_last_error_line(tail) or "?")
    if last.get("status") == "failed":
        return RunView(job, "failed", records, error=str(last.get("error", "")), log_tail=_tail(job.log))
    if running:
        return RunView(job, "running" if records else "starting", records)
    tail = _tail(job.log)  # the process ended without a final record: an early error, or it was killed
    return RunView(job, "stopped", records, error=_last_error_line(tail), log_tail=tail)


def _last_error_line(tail: str) -> str:
    """The CLI's own error (from its "error:" line to the end: rich may wrap it), else the last line."""
    lines = [line.rstrip() for line in tail.splitlines() if line.strip()]
    for i in range(len(lines) - 1, -1, -1):
        head = lines[i].lstrip().lower()
        if head.startswith(("error:", "config error:")) or head.split(":")[0].endswith("error"):
            return " ".join(line.strip() for line in lines[i:])[:1000]
    return lines[-1] if lines else ""


# -- the page -------------------------------------------------------------------------------------------


def _pick_dataset(task: str = "persona") -> Path | None:
    source = st.radio(
        t("train.source"),
        ["sample", "upload", "path"] if task == "persona" else ["upload", "path"],
        key="train_source",
        horizontal=True,
        format_func={s: t(f"train.source.{s}") for s in ("sample", "upload", "path")}.__getitem__,
    )
    if source == "sample":
        options = samples()
        if not options:
            st.caption(t("train.no_samples"))
            return None
        return st.selectbox(t("train.sample"), options, key="train_sample", format_func=lambda p: p.name)
    if source == "upload":
        kinds = ["json", "jsonl"] if task == "persona" else ["csv", "tsv", "jsonl", "json"]
        up = st.file_uploader(t("train.upload"), type=kinds, key=f"train_upload_{task}")
        if up is None:
            return None
        path = state.app_dir() / "datasets" / Path(up.name).name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = up.getvalue()
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
        return path
    raw = st.text_input(t("train.path"), key="train_path", placeholder="/path/to/data.json").strip()
    hint = access.path_roots_hint()
    if hint:
        st.caption(hint)
    if not raw:
        return None
    try:
        path = access.check_path(raw)  # inside [app] path_roots, or refused
    except access.PathRefused as exc:
        st.error(exc.message())
        return None
    if not path.is_file():
        st.error(t("train.path_missing", path=path))
        return None
    return path


def _show_lint(report: dict[str, Any]) -> None:
    length = report.get("length", {})
    cols = st.columns(4)
    cols[0].metric(t("train.lint.records"), report.get("records", 0))
    cols[1].metric(t("train.lint.used"), report.get("conversations", 0))
    cols[2].metric(t("train.lint.skipped"), report.get("skipped", 0) + report.get("duplicates_removed", 0))
    cols[3].metric(t("train.lint.examples"), f"{report.get('train_examples', 0)} / {report.get('eval_examples', 0)}")
    st.caption(
        t(
            "train.lint.line",
            model=report.get("model_id", "?"),
            template=report.get("template", "?"),
            tokens=report.get("tokens", 0),
            ratio=report.get("supervised_ratio", 0.0),
            min=length.get("min", 0),
            p50=length.get("p50", 0),
            p90=length.get("p90", 0),
            max=length.get("max", 0),
            truncated=report.get("truncated", 0),
            too_long=report.get("skipped_too_long", 0),
        )
    )
    issues = report.get("issues") or []
    if issues:
        with st.expander(t("train.lint.issues", n=report.get("skipped", len(issues))), expanded=False):
            for issue in issues:
                st.markdown(f"- {issue}")
    if report.get("example"):
        st.markdown(t("train.lint.example"))
        st.code(report["example"], language=None, wrap_lines=True)


def _lint_section(data: Path, system: str) -> dict[str, Any] | None:
    key = json.dumps([str(data), data.stat().st_mtime_ns, system], ensure_ascii=False)
    cache = st.session_state.setdefault("train_lints", {})
    if st.button(t("train.lint.run"), key="train_lint"):
        with st.spinner(t("train.lint.running")):
            try:
                cache[key] = lint(data, system or None)
            except (LintError, OSError, subprocess.TimeoutExpired) as exc:
                cache[key] = {"error": str(exc)}
    report = cache.get(key)
    if report is None:
        st.caption(t("train.lint.hint"))
    elif "error" in report:
        st.error(t("train.lint.failed", error=report["error"]))
    else:
        _show_lint(report)
    return report


def _persona_form(data: Path) -> None:
    from rolechat.llm.personas import PersonaError, check_name

    hint = SAMPLE_HINTS.get(data.stem, ("", "", ""))
    if st.session_state.get("train_hint_for") != str(data):  # a new dataset: offer its suggested settings
        st.session_state["train_hint_for"] = str(data)
        st.session_state["train_name"], st.session_state["train_display"], st.session_state["train_system"] = hint
    name = st.text_input(t("train.name"), key="train_name", help=t("train.name_help")).strip()
    display = st.text_input(t("train.display"), key="train_display").strip()
    system = st.text_area(t("train.system"), key="train_system", help=t("train.system_help")).strip()
    with st.expander(t("train.hparams"), expanded=False):
        st.caption(t("train.hparams_help"))
        hp = _hparam_inputs()
    check = st.checkbox(t("train.eval"), key="train_eval", help=t("train.eval_help"))
    exists = bool(name) and (rc_config.personas_dir() / name).exists()
    overwrite = st.checkbox(t("train.overwrite", name=name), key="train_overwrite") if exists else False
    _lint_section(data, system)
    running = [j for j in jobs() if alive(j.pid)]
    if running:
        st.info(t("train.busy", name=running[0].persona))
    if st.button(t("train.start"), type="primary", key="train_start", disabled=not name or bool(running)):
        try:
            check_name(name)
        except PersonaError as exc:
            st.error(str(exc))
            return
        if exists and not overwrite:
            st.error(t("train.exists", name=name))
            return
        job = start(
            data, name, system=system, display_name=display, overwrite=overwrite, hparams=hp, eval_persona=check
        )
        st.session_state["train_watch"] = job.persona
        st.rerun()


def _hparam_input(column, spec) -> Any:
    """One widget for one TrainConfig (or ClassifyConfig) field; None means "not set here"."""
    label = t(HPARAM_LABELS[spec.field]) if spec.field in HPARAM_LABELS else f"{spec.section}.{spec.field}"
    key = f"hp_{spec.field}" if spec.section == "train" else f"hp_{spec.section}_{spec.field}"
    if spec.kind is bool:
        choice = column.selectbox(
            label,
            [None, True, False],
            key=key,
            help=spec.help,
            format_func=lambda v: (
                f"{t('train.default')} ({'on' if spec.default else 'off'})" if v is None else ("on" if v else "off")
            ),
        )
        return choice
    if spec.kind in (int, float):
        fmt = "%g" if spec.kind is float else "%d"
        step = None if spec.kind is float else 1
        return column.number_input(
            label, value=None, placeholder=str(spec.default), format=fmt, step=step, key=key, help=spec.help
        )
    raw = column.text_input(
        label, key=key, placeholder=str(spec.default if spec.kind is str else ",".join(spec.default)), help=spec.help
    ).strip()
    return spec.parse(raw) if raw else None


def _hparam_inputs(section: str = "train") -> dict[str, Any]:
    """A widget per field of the section's config, from the table the CLI's flags come from: the page can set
    them all."""
    from rolechat.finetune.classify_config import ClassifyConfig
    from rolechat.finetune.config import TrainConfig

    specs = rc_config.flags(ClassifyConfig if section == "classify" else TrainConfig, section)
    first = [s for s in specs if s.field in HPARAM_LABELS]
    rest = [s for s in specs if s.field not in HPARAM_LABELS]
    values: dict[str, Any] = {}
    cols = st.columns(3)
    for i, spec in enumerate(first):
        values[spec.field] = _hparam_input(cols[i % 3], spec)
    with st.container(border=True):
        st.caption(t("train.more"))
        cols = st.columns(3)
        for i, spec in enumerate(rest):
            values[spec.field] = _hparam_input(cols[i % 3], spec)
    return values


def _chart(run: RunView) -> None:
    import pandas as pd

    steps = [(r["step"], r.get("loss")) for r in run.steps if r.get("loss") is not None]
    evals = [
        (r["step"], r.get("eval_loss"))
        for r in run.records
        if r.get("event") == "eval" and r.get("eval_loss") is not None and r.get("step") is not None
    ]
    if not steps and not evals:
        return
    frame = pd.DataFrame(
        {
            t("train.loss"): pd.Series(dict(steps), dtype=float),
            t("train.eval_loss"): pd.Series(dict(evals), dtype=float),
        }
    ).sort_index()
    frame.index.name = "step"
    st.line_chart(frame, x_label="step", y_label="loss")


def _draw(run: RunView) -> None:
    job = run.job
    st.markdown(
        t(
            "train.run_title",
            name=job.persona,
            data=Path(job.data).name,
            started=time.strftime("%H:%M:%S", time.localtime(job.started)),
        )
    )
    steps = run.steps
    step = steps[-1]["step"] if steps else 0
    total = run.max_steps
    if run.state == "evaluating":
        st.info(t("train.evaluating", name=job.persona))
    if run.state in ("starting", "running"):
        frac = step / total if total else 0.0
        st.progress(
            min(frac, 1.0),
            text=t("train.progress", step=step, total=total or "?") if run.state == "running" else t("train.starting"),
        )
    if steps:
        last = steps[-1]
        cols = st.columns(3)
        cols[0].metric(t("train.loss"), f"{last.get('loss', 0) or 0:.4f}")
        if job.task == "classify":
            before = next((r for r in run.records if r.get("event") == "eval" and r.get("phase") == "before"), {})
            cols[1].metric(t("train.acc_before"), f"{before.get('accuracy') or 0:.3f}")
        else:
            cols[1].metric(t("train.tokens_s"), f"{last.get('tokens_per_s', 0) or 0:,.0f}")
        cols[2].metric(t("train.elapsed"), f"{(last.get('time', job.started) - job.started):.0f} s")
    _chart(run)
    if run.state == "done":
        metrics = next((r.get("metrics") or {} for r in reversed(run.records) if r.get("event") == "done"), {})
        if job.task == "classify":
            st.success(t("train.clf_done", name=job.persona, acc=metrics.get("accuracy_after") or 0.0))
            confusion = rc_config.classifiers_dir() / job.persona / "confusion.png"
            if confusion.is_file():
                st.image(str(confusion), width=360)
        else:
            st.success(t("train.done", name=job.persona))
        if metrics:
            st.json(metrics, expanded=False)
        draw_evaluation(job.persona, run.evaluation, run.eval_error)
        if job.task == "classify":
            st.page_link("ui/pages/classify.py", label=t("train.go_classify"), icon=":material/label:")
        else:
            st.page_link("ui/pages/chat.py", label=t("train.go_chat"), icon=":material/chat:")
    elif run.state == "failed":
        st.error(t("train.failed", error=run.error))
    elif run.state == "stopped":
        st.warning(t("train.stopped", error=run.error or "?"))
    if run.log_tail and (run.state in ("failed", "stopped") or run.eval_error):
        with st.expander(t("train.log")):
            st.code(run.log_tail, language=None)
    stop_key = f"train_stop_{job.persona}" if job.task == "persona" else f"train_stop_{job.task}.{job.persona}"
    if run.state in ("starting", "running") and st.button(t("train.stop"), key=stop_key):
        stop(job)
    if run.state == "evaluating" and st.button(t("train.stop_eval"), key=stop_key):  # the persona is saved already
        stop(job)


@st.fragment(run_every=POLL_S)
def _live(job: Job) -> None:
    run = view(job)
    _draw(run)
    if run.state not in ("starting", "running", "evaluating"):
        st.rerun()  # the whole page: leave live mode, let the chat picker see the new persona


def _runs_section() -> None:
    all_jobs = jobs()
    if not all_jobs:
        return
    st.subheader(t("train.runs_header"))
    names = [j.persona if j.task == "persona" else f"{j.persona} ({t('train.task.' + j.task)})" for j in all_jobs]
    watch = st.session_state.pop("train_watch", None)
    if watch in names or st.session_state.get("train_run_pick") not in names:
        st.session_state["train_run_pick"] = watch if watch in names else names[0]
    picked = st.selectbox(t("train.run_pick"), names, key="train_run_pick")
    job = all_jobs[names.index(picked)]
    if alive(job.pid):
        _live(job)
    else:
        _draw(view(job))


def _classifier_form(data: Path) -> None:
    from rolechat.finetune.classifier import ClassifierError, check_name

    name = st.text_input(t("train.clf_name"), key="train_clf_name").strip()
    with st.expander(t("train.hparams"), expanded=False):
        st.caption(t("train.clf_hparams_help"))
        hp = _hparam_inputs("classify")
    exists = bool(name) and (rc_config.classifiers_dir() / name).exists()
    overwrite = st.checkbox(t("train.clf_overwrite", name=name), key="train_clf_overwrite") if exists else False
    running = [j for j in jobs() if alive(j.pid)]
    if running:
        st.info(t("train.busy", name=running[0].persona))
    if st.button(t("train.start"), type="primary", key="train_clf_start", disabled=not name or bool(running)):
        try:
            check_name(name)
        except ClassifierError as exc:
            st.error(str(exc))
            return
        if exists and not overwrite:
            st.error(t("train.clf_exists", name=name))
            return
        job = start_classifier(data, name, overwrite=overwrite, hparams=hp)
        st.session_state["train_watch"] = f"{job.persona} ({t('train.task.classify')})"
        st.rerun()


def render() -> None:
    st.title(t("train.title"))
    st.caption(t("train.intro"))
    _runs_section()
    st.subheader(t("train.data_header"))
    task = st.radio(
        t("train.task"),
        ["persona", "classify"],
        key="train_task",
        horizontal=True,
        format_func=lambda k: t(f"train.task.{k}"),
    )
    data = _pick_dataset(task)
    if data is None:
        return
    if task == "classify":
        _classifier_form(data)
    else:
        _persona_form(data)
