"""Serving under load, side by side in one run: `rolechat serve` (local), `rolechat serve` on the remote
backend in front of vLLM's CPU build, and vLLM's CPU build direct.

    .venv/bin/python bench/bench_serving.py --vllm-python .venv-vllm/bin/python --seconds 60 --streams 12,32

Three personas (the demo model's base, the sample persona miaomiao and a random LoRA adapter) are served by
each; N client streams each send greedy requests (max_tokens 48) in a loop for a bounded time, cycling
through personas and prompts. Reported per setup and N: requests/s, p50/p95 latency and time to first
token, errors, replies that differ from the solo greedy reply of the same persona and prompt (computed first,
one at a time, on the same server), those that equal ANOTHER persona's solo reply (a wrong-persona symptom;
a batching engine's float32 kernels can also change a greedy reply without any mix-up), the server's RSS, and
the median latency of those solo requests (a lone request on an otherwise idle server).

The solo requests leave every prompt of the load in both servers' prefix caches (vLLM's automatic prefix caching,
rolechat's llm.prefix_cache_mb). `--fresh` makes every load request's prompt new (a numbered question): only the
persona's part of the prompt can be reused, as in real traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS = ["你好", "你是谁", "怎么训练一个角色？", "怎么建立知识库？", "今天天气怎么样？", "给我讲个故事吧"]
MAX_TOKENS = 48


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (vLLM runs its engine in a child)."""
    total = 0
    pids = [pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def wait_ready(url: str, proc: subprocess.Popen, seconds: float = 900) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before it was ready ({url})")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"{url} not ready after {seconds} s")


def start(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)


async def one_request(client: httpx.AsyncClient, url: str, model: str, prompt: str, extra: dict) -> dict:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
        **extra,
    }
    start = time.perf_counter()
    first = None
    text = ""
    async with client.stream("POST", url, json=body) as resp:
        if resp.status_code != 200:
            await resp.aread()
            return {"error": f"HTTP {resp.status_code}", "latency": time.perf_counter() - start}
        async for line in resp.aiter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            event = json.loads(line[5:])
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content") or ""
                if piece and first is None:
                    first = time.perf_counter() - start
                text += piece
    return {"text": text, "latency": time.perf_counter() - start, "ttft": first}


async def solo_replies(base_url: str, personas: list[str], extra: dict) -> tuple[dict, list[float]]:
    """Each persona's reply to each prompt, one request at a time, and the latency of each (a lone request)."""
    async with httpx.AsyncClient(timeout=600) as client:
        out, latencies = {}, []
        for persona in personas:
            for prompt in PROMPTS:
                r = await one_request(client, f"{base_url}/chat/completions", persona, prompt, extra)
                out[(persona, prompt)] = r.get("text")
                latencies.append(r["latency"])
        return out, latencies


async def load(
    base_url: str, personas: list[str], streams: int, seconds: float, extra: dict, solo: dict, fresh: bool = False
) -> dict:
    results: list[dict] = []
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=streams + 4, max_keepalive_connections=streams + 4)

    async def worker(i: int, client: httpx.AsyncClient) -> None:
        n = i
        while time.perf_counter() < stop_at:
            persona, prompt = personas[n % len(personas)], PROMPTS[(n // len(personas)) % len(PROMPTS)]
            asked = f"{prompt}（第{n}问）" if fresh else prompt  # fresh: a prompt no cache has seen
            n += streams
            try:
                r = await one_request(client, f"{base_url}/chat/completions", persona, asked, extra)
            except httpx.HTTPError as exc:
                r = {"error": type(exc).__name__, "latency": 0.0}
            if "text" in r and fresh:
                r["differs"] = r["other_persona"] = None
            elif "text" in r:
                r["differs"] = r["text"] != solo[(persona, prompt)]
                others = {solo[(p, prompt)] for p in personas if p != persona} - {solo[(persona, prompt)]}
                r["other_persona"] = r["differs"] and r["text"] in others
                if r["other_persona"]:  # whose reply it was instead
                    got = [p for p in personas if p != persona and solo[(p, prompt)] == r["text"]]
                    r["mixup"] = f"{persona}->{'/'.join(got)}"
            results.append(r)

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        await asyncio.gather(*(worker(i, client) for i in range(streams)))
    elapsed = time.perf_counter() - started
    ok = [r for r in results if "text" in r]
    lat = sorted(r["latency"] for r in ok) or [0.0]
    ttft = sorted(r["ttft"] for r in ok if r.get("ttft") is not None) or [0.0]

    def pct(values: list[float], q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))], 3)

    return {
        "requests": len(results),
        "requests_per_s": round(len(ok) / elapsed, 2),
        "p50_latency_s": round(statistics.median(lat), 3),
        "p95_latency_s": pct(lat, 0.95),
        "p50_ttft_s": round(statistics.median(ttft), 3),
        "p95_ttft_s": pct(ttft, 0.95),
        "errors": len(results) - len(ok),
        "differs_from_solo": "-" if fresh else sum(r["differs"] for r in ok),
        "mixups": dict(collections.Counter(r["mixup"] for r in ok if r.get("mixup"))),
        "another_personas_reply": "-" if fresh else sum(r["other_persona"] for r in ok),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm" / "bin" / "python"))
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--streams", default="12,32")
    ap.add_argument("--setups", default="local,remote,vllm", help="which of local, remote, vllm to run")
    ap.add_argument(
        "--fresh",
        action="store_true",
        help="every request asks a prompt never sent before (its persona prefix still repeats): what prefix caches "
        "reuse in real traffic; replies are not compared with solo ones (there are none)",
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--vllm-args", default="", help="more vLLM server flags, e.g. --vllm-args=--no-enable-prefix-caching"
    )
    args = ap.parse_args()

    from rolechat.llm import LLMConfig
    from rolechat.llm.demo import DEMO_MODEL_ID, demo_model_path
    from rolechat.llm.export import serving_plan
    from rolechat.settings import set_offline_env
    from tests.app_support import make_adapter

    set_offline_env()
    home = Path(tempfile.mkdtemp(prefix="rolechat-bench-serving-"))
    os.environ["ROLECHAT_HOME"] = str(home)
    model = demo_model_path()
    folder = make_adapter(model, home / "personas" / "zhuzhu", 7, system="你是竹竹。")
    manifest = json.loads((folder / "persona.json").read_text(encoding="utf-8"))
    (folder / "persona.json").write_text(json.dumps({**manifest, "base_model": DEMO_MODEL_ID}), encoding="utf-8")
    personas = ["base", "miaomiao", "zhuzhu"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1", "OMP_NUM_THREADS": "2"}
    setups = args.setups.split(",")
    procs: list[subprocess.Popen] = []
    rows = []
    try:
        vllm_url = None
        if "vllm" in setups or "remote" in setups:
            plan = serving_plan(LLMConfig(model=str(model)))
            port = free_port()
            argv = shlex.split(plan.vllm_command(port=port, dtype="float32")) + shlex.split(args.vllm_args)
            vllm = start([args.vllm_python, *argv[1:]], env, home / "vllm.log")
            procs.append(vllm)
            vllm_url = f"http://127.0.0.1:{port}/v1"
            wait_ready(f"{vllm_url}/models", vllm)
        servers = {}
        if "local" in setups:
            port = free_port()
            proc = start([sys.executable, "-m", "rolechat", "serve", "--port", str(port)], env, home / "local.log")
            procs.append(proc)
            servers["rolechat serve (local)"] = (proc, f"http://127.0.0.1:{port}/v1", {})
        if "remote" in setups:
            port = free_port()
            remote_env = {**env, "ROLECHAT_LLM_BACKEND": "openai", "ROLECHAT_LLM_BASE_URL": vllm_url}
            proc = start(
                [sys.executable, "-m", "rolechat", "serve", "--port", str(port)], remote_env, home / "remote.log"
            )
            procs.append(proc)
            servers["rolechat serve -> vLLM-CPU"] = (proc, f"http://127.0.0.1:{port}/v1", {})
        if "vllm" in setups:
            names = {"base": plan.served_name}
            servers["vLLM-CPU direct"] = (vllm, vllm_url, {"chat_template_kwargs": {"enable_thinking": False}})
        for name, (proc, url, extra) in servers.items():
            wait_ready(f"{url}/models", proc)
            models = [names.get(p, p) for p in personas] if name == "vLLM-CPU direct" else personas
            solo, solo_latency = asyncio.run(solo_replies(url, models, extra))
            alone = round(statistics.median(solo_latency), 3)
            for n in (int(s) for s in args.streams.split(",")):
                peak = rss_mb(proc.pid)
                result = asyncio.run(load(url, models, n, args.seconds, extra, solo, args.fresh))
                result |= {"setup": name, "streams": n, "server_rss_mb": round(max(peak, rss_mb(proc.pid)))}
                result["solo_p50_latency_s"] = alone
                rows.append(result)
                print(json.dumps(result, ensure_ascii=False), file=sys.stderr, flush=True)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    print(
        "| setup | streams | req/s | p50 s | p95 s | TTFT p50 s | TTFT p95 s | errors | differs from solo | "
        "another persona's reply | RSS MB | alone p50 s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['setup']} | {r['streams']} | {r['requests_per_s']} | {r['p50_latency_s']} | {r['p95_latency_s']} | "
            f"{r['p50_ttft_s']} | {r['p95_ttft_s']} | {r['errors']} | {r['differs_from_solo']}/{r['requests']} | "
            f"{r['another_personas_reply']} | {r['server_rss_mb']} | {r['solo_p50_latency_s']} |"
        )


if __name__ == "__main__":
    main()
