"""Training progress as others see it: a JSON-lines file, a console bar, and the loss-curve PNG.

The progress file (`runs_dir()/<persona>/progress.jsonl`) is what the Streamlit app charts while
`rolechat train` runs in the background. One JSON object per line, appended and flushed as it happens:

    {"event": "start", "time": ..., "persona": ..., "max_steps": N, "examples": {...}, "resumed_from": step|null}
    {"event": "eval", "time": ..., "step": N, "phase": "before"|"during"|"after", "eval_loss": x, "perplexity": y}
    {"event": "step", "time": ..., "step": N, "max_steps": N, "epoch": e, "loss": x, "learning_rate": lr,
     "tokens_per_s": t, "padding_fraction": p}          (the last two in persona runs only)
    {"event": "done", "time": ..., "status": "done", "step": N, "output": "<adapter folder>", "metrics": {...}}
    {"event": "error", "time": ..., "status": "failed", "step": N|null, "error": "<message>"}

Every line carries `"status"`: "running" until the final "done" or "error" line. A line that is not yet
complete (the writer died mid-line) should be ignored by readers; `read_progress` does that.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

__all__ = ["ProgressLog", "progress_callback", "perplexity", "read_progress", "plot_loss"]

log = logging.getLogger(__name__)


class ProgressLog:
    """Append-only JSON-lines progress file (main process only)."""

    def __init__(self, path: str | Path, *, enabled: bool = True, fresh: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.step: int | None = None  # the last finished optimizer step, for the error record
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if fresh:
                self.path.write_text("", encoding="utf-8")

    def write(self, event: str, status: str = "running", **fields: Any) -> None:
        if not self.enabled:
            return
        record = {"event": event, "status": status, "time": round(time.time(), 3)}
        record.update({k: _clean(v) for k, v in fields.items()})
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()


def perplexity(loss: float | None) -> float | None:
    return math.exp(min(loss, 50.0)) if loss is not None else None


def progress_callback(progress: ProgressLog, show_bar: bool, *, world: int = 1):
    """The transformers callback that both trainers use: a console bar and the progress file's "step" records.

    Set `.tokens` to a callable returning (real, seen) token counts so far (after the Trainer exists) and
    every "step" record also has tokens_per_s (real tokens, times `world` processes) and padding_fraction.
    Logged eval losses become "eval" records (phase "during") with their perplexity.
    """
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def __init__(self) -> None:
            self.tokens = None
            self.bar = None
            self.last = (0.0, 0)

        def on_train_begin(self, args, state, control, **kwargs):
            if self.tokens is not None:
                self.last = (time.perf_counter(), self.tokens()[0])
            if show_bar and state.is_world_process_zero:
                from tqdm.auto import tqdm

                self.bar = tqdm(
                    total=state.max_steps, initial=state.global_step, desc="training", unit="step", dynamic_ncols=True
                )

        def on_step_end(self, args, state, control, **kwargs):
            progress.step = state.global_step
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" in logs:
                record = {"step": state.global_step, "max_steps": state.max_steps, "epoch": logs.get("epoch")}
                record.update(loss=logs["loss"], learning_rate=logs.get("learning_rate"))
                postfix = {"loss": f"{logs['loss']:.4f}"}
                if self.tokens is not None:
                    now, (real, seen) = time.perf_counter(), self.tokens()
                    rate = (real - self.last[1]) * world / max(now - self.last[0], 1e-9)
                    self.last = (now, real)
                    record.update(tokens_per_s=rate, padding_fraction=1 - real / seen if seen else 0.0)
                    postfix["tok_s"] = f"{rate:,.0f}"
                progress.write("step", **record)
                if self.bar is not None:
                    self.bar.set_postfix(postfix, refresh=False)
            if "eval_loss" in logs:
                progress.write(
                    "eval",
                    phase="during",
                    step=state.global_step,
                    eval_loss=logs["eval_loss"],
                    perplexity=perplexity(logs["eval_loss"]),
                )

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()

    return ProgressCallback()


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def read_progress(path: str | Path) -> list[dict[str, Any]]:
    """All complete records of a progress file ([] if it doesn't exist yet)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_loss(records: list[dict[str, Any]], out: str | Path, title: str = "") -> Path | None:
    """Draw train loss (and eval loss, if any) against step into a PNG; None when there is nothing to draw."""
    steps = [(r["step"], r["loss"]) for r in records if r.get("event") == "step" and r.get("loss") is not None]
    evals = [
        (r["step"], r["eval_loss"])
        for r in records
        if r.get("event") == "eval" and r.get("eval_loss") is not None and r.get("step") is not None
    ]
    if not steps and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    if steps:
        ax.plot(*zip(*steps), label="train loss", linewidth=1.2)
    if evals:
        ax.plot(*zip(*evals), "o--", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    return out
