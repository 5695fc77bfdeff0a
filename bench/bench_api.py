"""`rolechat serve` under load: bursts of concurrent streams, /health probed meanwhile, disconnects, SIGTERM.

.venv/bin/python bench/bench_api.py [--bursts 41,64,200] [--max-tokens 8] [--disconnects 20]

Starts the real CLI (`python -m rolechat serve`, the demo model unless ROLECHAT_LLM_MODEL says otherwise)
in its own process with an empty ROLECHAT_HOME, then for each burst size fires that many streaming chat
requests at once while another thread probes /health every 50 ms; then opens and abandons streams after
their first chunk, timing the request that follows each; then stops the server with SIGTERM. Prints one
JSON line per measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
HELLO = [{"role": "user", "content": "你好"}]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(port: int, max_queue: int) -> subprocess.Popen:
    env = {**os.environ, "ROLECHAT_HOME": tempfile.mkdtemp(prefix="rolechat-bench-api-")}
    env["ROLECHAT_SERVER_MAX_QUEUE"] = str(max_queue)
    cmd = [sys.executable, "-m", "rolechat", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not start")


async def burst(url: str, n: int, max_tokens: int) -> list[int]:
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(base_url=url, timeout=1800, limits=limits) as client:
        body = {"messages": HELLO, "stream": True, "max_tokens": max_tokens, "temperature": 0}

        async def one() -> int:
            async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
                async for _ in resp.aiter_lines():
                    pass
                return resp.status_code

        return await asyncio.gather(*(one() for _ in range(n)))


def measure_burst(url: str, n: int, max_tokens: int) -> dict:
    latencies: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=url, timeout=30) as health:
            while not done.is_set():
                start = time.perf_counter()
                health.get("/health")
                latencies.append(time.perf_counter() - start)
                time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    started = time.perf_counter()
    statuses = asyncio.run(burst(url, n, max_tokens))
    wall = time.perf_counter() - started
    done.set()
    prober.join()
    latencies.sort()
    return {
        "burst": n,
        "max_tokens": max_tokens,
        "ok": statuses.count(200),
        "other": len(statuses) - statuses.count(200),
        "wall_s": round(wall, 2),
        "health_probes": len(latencies),
        "health_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "health_p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 1),
        "health_max_ms": round(latencies[-1] * 1000, 1),
    }


def measure_disconnects(url: str, rounds: int) -> dict:
    follow: list[float] = []
    body = {"messages": HELLO, "stream": True, "max_tokens": 400, "temperature": 0.7}
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(rounds):
            with client.stream("POST", "/v1/chat/completions", json=body) as resp:
                for line in resp.iter_lines():
                    if '"content": "' in line and '"role"' not in line:
                        break
            start = time.perf_counter()
            client.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 1, "temperature": 0})
            follow.append(time.perf_counter() - start)
    follow.sort()
    return {
        "disconnects": rounds,
        "next_request_p50_ms": round(statistics.median(follow) * 1000, 1),
        "next_request_max_ms": round(follow[-1] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bursts", default="41,64,200")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--disconnects", type=int, default=20)
    args = parser.parse_args()
    sizes = [int(n) for n in args.bursts.split(",")]
    port = free_port()
    proc = start(port, max(sizes))
    url = f"http://127.0.0.1:{port}"
    try:
        httpx.post(url + "/v1/chat/completions", json={"messages": HELLO, "max_tokens": 2}, timeout=120)  # warm up
        for n in sizes:
            print(json.dumps(measure_burst(url, n, args.max_tokens)), flush=True)
        print(json.dumps(measure_disconnects(url, args.disconnects)), flush=True)
    finally:
        start_stop = time.perf_counter()
        proc.terminate()
        code = proc.wait(timeout=60)
        print(json.dumps({"sigterm_exit_s": round(time.perf_counter() - start_stop, 2), "exit_code": code}))


if __name__ == "__main__":
    main()
