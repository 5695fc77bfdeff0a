"""bench/gpu_smoke.py off the GPU: its full-vocabulary tokenizer, its independent checks and exit codes, the
clear refusal without CUDA, and (slow) the whole run on a tiny model on CPU, bitsandbytes checks skipped."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_smoke.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_smoke", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_smoke"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def run_script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout
    )


def test_the_tokenizer_has_exactly_the_vocab_and_round_trips_text():
    smoke = load_script()
    assert len(smoke.byte_bpe(4096)) == 4096
    tok = smoke.byte_bpe(70_000)  # every byte pair and some triples (the GPU run uses 151,936)
    assert len(tok) == 70_000
    text = "你好，给我讲个故事吧。Hello, world!"
    ids = tok(text)["input_ids"]
    assert max(ids) < 70_000 and len(ids) < 0.7 * len(text.encode())  # byte pairs and triples merged
    assert tok.decode(ids) == text
    assert tok.convert_tokens_to_ids("<|im_end|>") == tok.eos_token_id
    prompt = tok.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False, enable_thinking=False)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


PROMPT = [{"role": "user", "content": "你好"}]


def test_a_failing_check_is_recorded_and_the_next_one_still_runs(tmp_path):
    smoke = load_script()
    s = smoke.Smoke(tmp_path, "cpu", tiny=True, timeout=10)
    s.run("needs the model", s.switching)  # nothing built: fails with the reason
    s.run("crashes", lambda: 1 / 0)
    s.run("passes", lambda: "fine")
    s.run("skipped", lambda: s.load_and_generate(quantization="4bit"))
    assert [r.status for r in s.results] == ["FAIL", "FAIL", "pass", "skip"]
    assert "build step failed" in s.results[0].detail
    assert s.results[1].detail.startswith("ZeroDivisionError") and "test_gpu_smoke.py" in s.results[1].detail
    table = smoke.table(s.results)
    assert table.splitlines()[0].split()[:3] == ["check", "result", "seconds"]
    assert "needs the model" in table and "FAIL" in table


def test_bitsandbytes_checks_skip_on_cpu(tmp_path):
    smoke = load_script()
    s = smoke.Smoke(tmp_path, "cpu", tiny=True, timeout=10)
    s.built = True
    result = s.run("4-bit", lambda: s.load_and_generate(quantization="4bit"))
    assert result.ok is None and result.status == "skip" and "CUDA" in result.detail


def test_exit_code_is_1_when_a_check_fails(monkeypatch, tmp_path):
    smoke = load_script()

    def all_checks(self):
        self.run("ok", lambda: "fine")
        self.run("broken", lambda: smoke.need(False, "wrong"))
        return self.results

    monkeypatch.setattr(smoke.Smoke, "all", all_checks)
    assert smoke.main(["--device", "cpu", "--tiny", "--keep", str(tmp_path / "work")]) == 1
    monkeypatch.setattr(smoke.Smoke, "all", lambda self: [*self.results, smoke.Result("ok", True, 0.1, None, "")])
    assert smoke.main(["--device", "cpu", "--tiny", "--keep", str(tmp_path / "work")]) == 0


def test_without_cuda_it_says_so_and_exits_2():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    out = run_script()
    assert out.returncode == 2
    assert "no CUDA GPU" in out.stderr and "--device cpu --tiny" in out.stderr
    assert "Traceback" not in out.stderr and not out.stdout
    refused = run_script("--device", "cpu")
    assert refused.returncode == 2 and "--tiny" in refused.stderr


@pytest.mark.slow
def test_the_tiny_cpu_run_passes_every_check_but_bitsandbytes():
    out = run_script("--device", "cpu", "--tiny", "--json", timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    report = json.loads(out.stdout)
    status = {c["check"]: c["status"] for c in report["checks"]}
    assert len(status) == 9
    skipped = [name for name, s in status.items() if s == "skip"]
    assert len(skipped) == 2 and all("bitsandbytes" in name for name in skipped)
    assert all(s == "pass" for name, s in status.items() if name not in skipped), status
    details = {c["check"]: c["detail"] for c in report["checks"]}
    assert "interrupted at step 10 of 30" in details["rolechat train (LoRA, CPU), SIGINT after checkpoint"]
    assert "from checkpoint-10 to step 30" in details["rolechat train --resume"]
