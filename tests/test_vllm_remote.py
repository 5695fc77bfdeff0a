"""A real engine: vLLM's CPU build serves the demo model and two persona adapters, started on loopback with the
command `rolechat export vllm` prints; rolechat on the remote backend gives, for the base model, each persona
and a prompt-only character, the same greedy reply as in-process, one at a time and all at once.

vLLM lives in its own virtual environment (it pins another transformers): `.ci/run` installs it into
`.venv-vllm` (or set ROLECHAT_VLLM_PYTHON). Without it the test is skipped with that message.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from rolechat import settings
from rolechat.llm import LLMConfig, Runtime, load_runtime
from rolechat.llm.demo import DEMO_MODEL_ID, SAMPLE_PERSONAS_DIR, demo_model_path
from rolechat.llm.export import serving_plan
from tests.app_support import make_adapter

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = Path(os.environ.get("ROLECHAT_VLLM_PYTHON") or ROOT / ".venv-vllm" / "bin" / "python")
PROMPTS = ["你好", "你是谁", "怎么训练一个角色？"]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VLLM_PYTHON.is_file(), reason=f"vLLM's CPU build not installed at {VLLM_PYTHON}"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def vllm_server(tmp_path):
    model = demo_model_path()
    folder = make_adapter(model, settings.personas_dir() / "zhuzhu", 7, system="你是竹竹。")  # a second adapter
    manifest = json.loads((folder / "persona.json").read_text(encoding="utf-8"))
    (folder / "persona.json").write_text(json.dumps({**manifest, "base_model": DEMO_MODEL_ID}), encoding="utf-8")
    plan = serving_plan(LLMConfig(model=str(model)))
    assert {"miaomiao", "zhuzhu"} <= set(plan.adapters)
    port = free_port()
    argv = shlex.split(plan.vllm_command(port=port, dtype="float32"))
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    log = open(tmp_path / "vllm.log", "wb")
    proc = subprocess.Popen([str(VLLM_PYTHON), *argv[1:]], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vLLM exited with {proc.returncode}:\n{(tmp_path / 'vllm.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(2)
    else:
        proc.kill()
        pytest.fail("vLLM did not start within 600 s")
    yield model, url
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_remote_greedy_replies_equal_in_process_for_the_base_model_and_every_persona(vllm_server):
    model, url = vllm_server
    local = Runtime.load(LLMConfig(model=str(model)))
    remote = load_runtime(LLMConfig(model=str(model), backend="openai", base_url=url))
    assert SAMPLE_PERSONAS_DIR.is_dir()
    names = remote.persona_names()
    assert {"base", "miaomiao", "zhuzhu"} <= set(names) and names == local.persona_names()
    characters = [n for n in names if n not in ("base", "miaomiao", "zhuzhu")]  # prompt-only sample characters
    params = {"temperature": 0, "max_new_tokens": 48}
    expected = {}
    for persona in ["base", "miaomiao", "zhuzhu", *characters[:1]]:
        for prompt in PROMPTS:
            messages = [{"role": "user", "content": prompt}]
            expected[persona, prompt] = local.chat(messages, persona, params)
            assert remote.chat(messages, persona, params) == expected[persona, prompt], (persona, prompt)
    # Concurrently, so vLLM batches base rows with persona rows: with as many LoRA slots as adapters, its CPU
    # kernels gave base rows the last slot's adapter (index -1); the exported --max-loras keeps a slot spare.
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(persona, prompt) for _ in range(4) for persona in ("base", "miaomiao", "zhuzhu") for prompt in PROMPTS]
    with ThreadPoolExecutor(len(jobs)) as pool:
        replies = list(pool.map(lambda j: remote.chat([{"role": "user", "content": j[1]}], j[0], params), jobs))
    wrong = [(job, reply) for job, reply in zip(jobs, replies) if reply != expected[job]]
    assert not wrong, f"{len(wrong)} of {len(jobs)} concurrent replies differ from in-process: {wrong[:3]}"
