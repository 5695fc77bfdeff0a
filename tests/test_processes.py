"""finetune.processes and `rolechat train` on several CPU processes: one batch shared, one report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rolechat.finetune.config import TrainConfig
from rolechat.finetune.processes import SPLIT, cpu_processes, device_batch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_auto_takes_one_process_per_core_up_to_a_divisor_of_the_batch(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    cfg = TrainConfig(batch_size=8)
    assert cpu_processes(cfg, "cpu", 2) == 2
    assert cpu_processes(cfg, "cpu", 3) == 2  # 3 does not divide 8
    assert cpu_processes(cfg, "cpu", 16) == 4  # at most 4
    assert cpu_processes(TrainConfig(batch_size=6), "cpu", 16) == 3
    assert cpu_processes(TrainConfig(batch_size=7), "cpu", 4) == 1
    assert cpu_processes(cfg, "cpu", 1) == 1
    assert cpu_processes(cfg, "cuda", 16) == 1  # GPUs: the user's own torchrun / accelerate launch
    assert cpu_processes(TrainConfig(batch_size=8, cpu_processes=1), "cpu", 16) == 1
    assert cpu_processes(TrainConfig(batch_size=8, cpu_processes=8), "cpu", 2) == 8
    monkeypatch.setenv("RANK", "0")  # already one of the processes
    assert cpu_processes(cfg, "cpu", 2) == 1


def test_the_processes_share_the_batch_only_when_rolechat_started_them(monkeypatch):
    cfg = TrainConfig(batch_size=8)
    monkeypatch.delenv(SPLIT, raising=False)
    assert device_batch(cfg, 2) == 8  # torchrun by hand: per device, as on GPUs
    monkeypatch.setenv(SPLIT, "1")
    assert device_batch(cfg, 2) == 4 and device_batch(cfg, 1) == 8


def test_a_process_count_that_does_not_divide_the_batch_is_refused():
    with pytest.raises(ValueError, match="cpu_processes.*divide batch_size"):
        TrainConfig(batch_size=8, cpu_processes=3)
    with pytest.raises(ValueError, match="cpu_processes"):
        TrainConfig(cpu_processes=-1)


def test_a_resumed_run_is_split_by_the_batch_it_started_with(monkeypatch):
    from rolechat.cli.train import _run_config
    from rolechat.finetune.runs import run_folder

    monkeypatch.delenv("RANK", raising=False)
    flags = TrainConfig()  # --resume takes no training flags: these are the defaults (batch 16)
    assert cpu_processes(_run_config("p", flags, resume=True), "cpu", 4) == 1  # nothing recorded yet
    record = run_folder("p").record_path
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"config": TrainConfig(batch_size=6).to_dict()}), encoding="utf-8")
    assert cpu_processes(_run_config("p", flags, resume=True), "cpu", 4) == 3  # 6 is shared by 3, not 4
    assert _run_config("p", flags, resume=False) is flags


def _train(tiny_qwen2, tmp_path, processes: int):
    data = tmp_path / "d.json"
    rows = [
        {"instruction": f"问题{i}：今天过得怎么样？", "output": f"回答{i}：很好。" * (1 + i % 3)} for i in range(40)
    ]
    data.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    env = {
        **os.environ,
        "ROLECHAT_HOME": str(tmp_path / f"home{processes}"),
        "ROLECHAT_TRAIN_CPU_PROCESSES": str(processes),
        "PYTHONPATH": ROOT,
    }
    args = ["train", "--data", str(data), "--persona", "p", "--base", str(tiny_qwen2), "--epochs", "1"]
    args += ["--batch-size", "4", "--seed", "3", "--eval-ratio", "0", "--json"]  # 40 examples: 10 batches of 4
    return subprocess.run(
        [sys.executable, "-m", "rolechat", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_two_processes_train_the_same_steps_and_report_once(tiny_qwen2, tmp_path):
    one, two = _train(tiny_qwen2, tmp_path, 1), _train(tiny_qwen2, tmp_path, 2)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    solo, shared = json.loads(one.stdout)["metrics"], json.loads(two.stdout)["metrics"]  # one JSON document each
    assert shared["steps"] == solo["steps"] > 0  # the batch is shared, not doubled
    assert shared["real_tokens"] == solo["real_tokens"]  # every example trained once, across the processes
    assert shared["train_loss"] == pytest.approx(solo["train_loss"], rel=0.05)
    assert (tmp_path / "home2" / "personas" / "p" / "adapter_model.safetensors").is_file()
    assert two.stderr.count("progress: ") == 1
    lines = [line for line in two.stderr.splitlines() if not line.startswith(("progress:", "training"))]
    assert not [line for line in lines if "warn" in line.lower() or "torch.distributed" in line], lines
