"""The run folder both trainers share: resume point, start-over, publishing, failure records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rolechat.finetune.model import TrainError
from rolechat.finetune.progress import read_progress
from rolechat.finetune.runs import RunFolder, check_free, data_record, failures_reported, place


def started_run(tmp_path: Path, *checkpoints: int) -> tuple[RunFolder, Path]:
    """A run folder as a killed run leaves it: its record and the given checkpoints."""
    data = tmp_path / "data.jsonl"
    data.write_text('{"text": "好", "label": "1"}\n', encoding="utf-8")
    run = RunFolder(tmp_path / "runs" / "p")
    run.write_record({"persona": "p", **data_record(data), "config": {"epochs": 2.0}})
    for step in checkpoints:
        (run.path / f"checkpoint-{step}").mkdir()
    return run, data


def test_resume_point_is_the_highest_checkpoint_with_the_run_record(tmp_path):
    run, data = started_run(tmp_path, 2, 10, 4)
    (run.path / "checkpoint-99.txt").write_text("not a checkpoint folder")
    last, record = run.resume()
    assert Path(last).name == "checkpoint-10"
    assert record["config"] == {"epochs": 2.0} and record["data"] == str(data.resolve())


def test_nothing_to_resume_without_a_record_or_a_checkpoint(tmp_path):
    with pytest.raises(TrainError, match="run.json not found"):
        RunFolder(tmp_path / "never").resume()
    run, _ = started_run(tmp_path)
    with pytest.raises(TrainError, match="no checkpoint in"):
        run.resume()


def test_resume_refuses_data_that_changed_since_the_run_started(tmp_path):
    run, data = started_run(tmp_path, 2)
    data.write_text('{"text": "坏", "label": "0"}\n', encoding="utf-8")
    with pytest.raises(TrainError, match="changed since the run started"):
        run.resume()


def test_start_over_refuses_checkpoints_unless_overwrite_clears_them(tmp_path):
    run, _ = started_run(tmp_path, 2, 4)
    with pytest.raises(TrainError, match="--resume to continue it or --overwrite"):
        run.start_over("'p'", overwrite=False)
    assert len(run.checkpoints()) == 2
    run.start_over("'p'", overwrite=True)
    assert run.checkpoints() == [] and run.record_path.is_file()
    with pytest.raises(TrainError, match="nothing to resume"):
        run.resume()
    RunFolder(tmp_path / "empty").start_over("'q'", overwrite=False)  # nothing left behind: nothing to refuse


def test_place_replaces_an_existing_folder_only_with_overwrite(tmp_path):
    final = tmp_path / "out" / "p"
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "new.txt").write_text("new")
    place(staging, final, overwrite=False)
    assert (final / "new.txt").read_text() == "new" and not staging.exists()
    staging.mkdir()
    (staging / "newer.txt").write_text("newer")
    with pytest.raises(TrainError, match="already exists"):
        place(staging, final, overwrite=False)
    place(staging, final, overwrite=True)
    assert sorted(p.name for p in final.iterdir()) == ["newer.txt"]
    assert sorted(p.name for p in final.parent.iterdir()) == ["p"]  # the old folder set aside is gone
    with pytest.raises(TrainError, match="persona folder .* already exists"):
        check_free(final, "persona folder", overwrite=False)
    check_free(final, "persona folder", overwrite=True)


def test_publish_writes_metrics_and_manifest_moves_the_folder_and_drops_checkpoints(tmp_path):
    run, _ = started_run(tmp_path, 2)
    progress = run.progress_log(fresh=True)
    progress.write("step", step=1, loss=2.0)
    staging = run.fresh_staging()
    staging.mkdir()
    (staging / "adapter_model.safetensors").write_bytes(b"weights")

    class Manifest:
        def save(self, folder: Path) -> None:
            assert (folder / "metrics.json").is_file()  # the manifest comes last
            (folder / "manifest.json").write_text("{}")

    final = tmp_path / "adapters" / "p"
    run.publish(final, Manifest(), {"steps": 1}, progress, step=1, title="p", overwrite=False)
    assert json.loads((final / "metrics.json").read_text()) == {"steps": 1}
    assert (final / "manifest.json").is_file() and (final / "adapter_model.safetensors").is_file()
    assert run.checkpoints() == [] and not run.staging.exists()
    done = read_progress(run.progress_path)[-1]
    assert (done["event"], done["status"], done["output"]) == ("done", "done", str(final))


@pytest.mark.parametrize(
    ("error", "message"),
    [(RuntimeError("disk full"), "disk full"), (KeyboardInterrupt(), "interrupted (resume with --resume)")],
)
def test_a_failure_is_written_to_the_progress_file_then_raised(tmp_path, error, message):
    run = RunFolder(tmp_path / "run")
    progress = run.progress_log(fresh=True)
    progress.step = 7
    with pytest.raises(type(error)):
        with failures_reported(progress):
            raise error
    last = read_progress(run.progress_path)[-1]
    assert (last["event"], last["status"], last["step"], last["error"]) == ("error", "failed", 7, message)


def test_a_resumed_run_appends_to_its_progress_file(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.progress_log(fresh=True).write("start")
    run.progress_log(fresh=False).write("start")
    assert len(read_progress(run.progress_path)) == 2
    run.progress_log(fresh=True)
    assert read_progress(run.progress_path) == []
