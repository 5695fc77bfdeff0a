"""Lone-request latency of servers side by side: greedy requests (max_tokens 48) alternate between them, one at a
time, so machine load drifts alike for all; prints each server's median and mean latency and whether their
replies agree. For before/after comparisons of `rolechat serve` from two checkouts:

    (cd OLD && ROLECHAT_HOME=H .venv/bin/python -m rolechat serve --port 8771) &
    (cd NEW && ROLECHAT_HOME=H .venv/bin/python -m rolechat serve --port 8772) &
    .venv/bin/python bench/bench_alone.py http://127.0.0.1:8771 http://127.0.0.1:8772 --rounds 4

The personas asked are `--personas`, by default `base` and the first two other personas all servers list.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

PROMPTS = ["你好", "你是谁", "怎么训练一个角色？", "怎么建立知识库？", "今天天气怎么样？", "给我讲个故事吧"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("urls", nargs="+", help="server roots, e.g. http://127.0.0.1:8771")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--personas", default="", help="comma-separated; default: base and two personas all servers list")
    args = ap.parse_args()
    urls = [u.rstrip("/") for u in args.urls]
    latency: dict[str, list[float]] = {u: [] for u in urls}
    replies: dict[str, dict] = {u: {} for u in urls}
    with httpx.Client(timeout=600) as client:
        listed = [{m["id"] for m in client.get(u + "/v1/models").json()["data"]} for u in urls]
        personas = (
            args.personas.split(",") if args.personas else ["base", *sorted(set.intersection(*listed) - {"base"})][:3]
        )
        for n in range(args.rounds):
            for persona in personas:
                for prompt in PROMPTS:
                    for url in urls if n % 2 == 0 else urls[::-1]:
                        body = {
                            "model": persona,
                            "messages": [{"role": "user", "content": prompt}],
                            "max_tokens": 48,
                            "temperature": 0,
                        }
                        start = time.perf_counter()
                        resp = client.post(url + "/v1/chat/completions", json=body)
                        latency[url].append(time.perf_counter() - start)
                        replies[url][(persona, prompt)] = resp.json()["choices"][0]["message"]["content"]
    for url in urls:
        values = latency[url]
        print(f"{url}: median {statistics.median(values):.3f} s, mean {statistics.mean(values):.3f} s, n {len(values)}")
    print("personas:", ", ".join(personas), "| same replies:", all(replies[u] == replies[urls[0]] for u in urls))


if __name__ == "__main__":
    main()
