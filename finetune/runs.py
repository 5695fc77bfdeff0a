"""A training run's folder and life cycle, the skeleton persona and classifier training share.

Each run has one folder (persona: `runs_dir()/<persona>/`, classifier: `runs_dir()/classifiers/<name>/`):

- `run.json`, the run record: the data file and its hash, the settings and the base model, written when
  the run starts and read back by `--resume`, so a resumed run trains on what the killed one did;
- `progress.jsonl`, the progress file the app charts (format: `finetune.progress`);
- `checkpoint-N/`, the Trainer's checkpoints, which `--resume` continues from;
- `staging/`, the finished folder while it is written; it is moved into place whole, so a crash never
  leaves half an adapter where discovery looks.

The skeleton both trainers follow:

    run = RunFolder(run_dir(name))
    progress = run.progress_log(fresh=not resume)
    with failures_reported(progress):           # any failure ends up in the progress file, then propagates
        last, record = run.resume()             # --resume; a fresh run calls run.start_over(...) instead
        ...                                     # train (HF Trainer, checkpoints in run.path), see `fit`
        run.publish(staging, final, manifest, metrics, progress, step=..., title=...)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rolechat import settings as rc
from rolechat.finetune.model import TrainError
from rolechat.finetune.progress import ProgressLog, plot_loss, read_progress

__all__ = [
    "RUN_FILE",
    "RunFolder",
    "RunResult",
    "check_free",
    "data_hash",
    "data_record",
    "failures_reported",
    "fit",
    "place",
    "require_data",
    "run_folder",
    "run_metrics",
    "schedule_args",
]

RUN_FILE = "run.json"
PROGRESS_FILE = "progress.jsonl"
STAGING = "staging"


def run_folder(*parts: str) -> RunFolder:
    """A run's folder under `runs_dir()`: ("miaomiao",) for a persona, ("classifiers", "sentiment") for a classifier."""
    return RunFolder(rc.runs_dir().joinpath(*parts))


@dataclass
class RunResult:
    """A finished run: its name, where its folder went, its manifest and what it measured."""

    name: str
    output: Path
    manifest: Any
    metrics: dict[str, Any] = field(default_factory=dict)


def data_hash(path: str | Path) -> str:
    """A short digest of the data file: a resumed run refuses data that changed under it."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]


def data_record(path: str | Path) -> dict[str, str]:
    """The run record's data fields: the file (absolute, so --resume finds it from anywhere) and its hash."""
    return {"data": str(Path(path).resolve()), "data_hash": data_hash(path)}


def require_data(data: Any) -> None:
    """A fresh run needs a data file; only --resume takes it from the run record."""
    if data is None:
        raise TrainError("--data is required (except with --resume)")


def check_free(final: Path, what: str, overwrite: bool) -> None:
    """Before a fresh run: `final` (the finished folder, called `what` in the error) is replaced only with
    overwrite, and that is checked now rather than after hours of training."""
    if final.exists() and not overwrite:
        raise TrainError(f"{what} {final} already exists; pass --overwrite to replace it")


def place(staging: Path, final: Path, overwrite: bool) -> None:
    """Move the finished folder into place; an existing one is replaced only with overwrite. The old folder is
    renamed aside first, so `final` is never a mix of the two."""
    if final.exists():
        if not overwrite:
            raise TrainError(f"{final} already exists; pass --overwrite to replace it")
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        shutil.move(str(staging), str(final))
        shutil.rmtree(old, ignore_errors=True)
    else:
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(final))


@contextlib.contextmanager
def failures_reported(progress: ProgressLog) -> Iterator[None]:
    """Write any failure (Ctrl-C included) to the progress file before it propagates: the app watching the
    file learns that the run ended and why."""
    try:
        yield
    except BaseException as exc:
        message = str(exc) or type(exc).__name__
        if isinstance(exc, KeyboardInterrupt):
            message = "interrupted (resume with --resume)"
        progress.write("error", status="failed", step=progress.step, error=message)
        raise


def schedule_args(cfg: Any, folder: Path, total_steps: int) -> dict[str, Any]:
    """The TrainingArguments both runs take alike from the fields their configs share (`finetune.config.LoraRun`
    checks them): checkpoint folder, batch, epochs or steps, schedule, logging, checkpoints, seeds."""
    return {
        "output_dir": str(folder),
        "per_device_train_batch_size": cfg.batch_size,
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps or -1,
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": cfg.schedule,
        "warmup_steps": math.ceil(total_steps * cfg.warmup_ratio),
        "weight_decay": cfg.weight_decay,
        "logging_steps": cfg.logging_steps,
        "logging_first_step": True,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": cfg.save_total_limit,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "disable_tqdm": True,  # the progress callback draws the bar
        "remove_unused_columns": False,
        "label_names": ["labels"],
    }


def fit(trainer: Any, last: str | None) -> tuple[Any, float]:
    """Run `trainer` (from checkpoint `last`, if any) and time it: (its TrainOutput, seconds)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # our bar and progress file replace the raw log dicts
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=last)
    return output, time.perf_counter() - started


def run_metrics(output: Any, trainer: Any, runtime: float) -> dict[str, Any]:
    """The metrics every finished run reports first: loss, steps, epochs, seconds."""
    return {
        "train_loss": output.training_loss,
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0.0, 4),
        "train_runtime_s": round(runtime, 2),
    }


@dataclass(frozen=True)
class RunFolder:
    """One training run's folder (see the module docstring for what it holds)."""

    path: Path

    @property
    def record_path(self) -> Path:
        return self.path / RUN_FILE

    @property
    def progress_path(self) -> Path:
        return self.path / PROGRESS_FILE

    @property
    def staging(self) -> Path:
        return self.path / STAGING

    def progress_log(self, *, fresh: bool, enabled: bool = True) -> ProgressLog:
        """The run's progress file; a fresh run empties it, a resumed one appends."""
        return ProgressLog(self.progress_path, enabled=enabled, fresh=fresh)

    def checkpoints(self) -> list[Path]:
        return sorted(self.path.glob("checkpoint-*")) if self.path.is_dir() else []

    def resume(self) -> tuple[str, dict[str, Any]]:
        """(last checkpoint, run record) of an interrupted run; refuses when there is none, or when the data
        file changed since the run started (its steps would mean something else)."""
        from transformers.trainer_utils import get_last_checkpoint

        if not self.record_path.is_file():
            raise TrainError(f"nothing to resume: {self.record_path} not found (start the run without --resume)")
        last = get_last_checkpoint(str(self.path)) if self.path.is_dir() else None
        if last is None:
            raise TrainError(
                f"nothing to resume: no checkpoint in {self.path} yet (they are written every --save-steps steps)"
            )
        record = self.read_record()
        if data_hash(record["data"]) != record["data_hash"]:
            raise TrainError(f"{record['data']} changed since the run started; start over with --overwrite")
        return last, record

    def read_record(self) -> dict[str, Any]:
        """The run record as written by `write_record` (OSError when there is none, ValueError when unreadable)."""
        return json.loads(self.record_path.read_text(encoding="utf-8"))

    def start_over(self, what: str, overwrite: bool) -> None:
        """Before a fresh run: refuse while an unfinished run of `what` left checkpoints, unless overwrite
        removes them (a fresh run writing beside them would resume from the wrong steps later)."""
        if not self.checkpoints():
            return
        if not overwrite:
            raise TrainError(
                f"an unfinished run of {what} has checkpoints in {self.path}; pass --resume to continue it or "
                "--overwrite to start over"
            )
        self.clear_checkpoints()

    def clear_checkpoints(self) -> None:
        for old in self.checkpoints():
            shutil.rmtree(old, ignore_errors=True)

    def write_record(self, record: dict[str, Any]) -> None:
        """Save the run record (run.json) that --resume reads back."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.record_path.write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")

    def fresh_staging(self) -> Path:
        """An empty staging folder path (what a killed run left there is removed)."""
        shutil.rmtree(self.staging, ignore_errors=True)
        return self.staging

    def publish(
        self,
        final: Path,
        manifest: Any,
        metrics: dict[str, Any],
        progress: ProgressLog,
        *,
        step: int,
        title: str,
        overwrite: bool,
    ) -> None:
        """Finish the staged folder (metrics.json, loss.png, then the manifest), move it to `final`, drop the
        checkpoints and write the progress file's "done" line. The manifest goes last: discovery lists only
        folders that have one, so a folder is never listed half written."""
        staging = self.staging
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        plot_loss(read_progress(progress.path), staging / "loss.png", title=title if title.isascii() else "")
        manifest.save(staging)
        place(staging, final, overwrite)
        self.clear_checkpoints()
        progress.write("done", status="done", step=step, output=final, metrics=metrics)
