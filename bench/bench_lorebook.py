"""Lorebook activation speed: a 200-entry lorebook over a 50-turn chat, timed per turn (p50 / p95).

.venv/bin/python bench/bench_lorebook.py [--entries 200] [--turns 50] [--scan-depth 4] [--repeats 5] [--budget N]

The lorebook is generated from a fixed seed: Chinese keys (2-4 characters) drawn from a vocabulary, a
tenth of the entries regex keys, a fifth selective (all four logics), a few constant, recursion on. Each
turn appends a user message and a reply that mention a few keys; the activation scans the last
`--scan-depth` messages (and, with `--scan-depth 100`, the whole chat). Token counts come from the demo
model's tokenizer, as the engine counts them. Prints one JSON line per setting.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHARS = "长安洛阳西市东市曲江大雁塔金吾卫宵禁上元灯会胡商波斯夜明珠师父醒木茶楼说书剑客江湖皇城宫廷书生酒肆牡丹"


def build_book(n: int, rng: random.Random):
    from rolechat.conversation.lorebook import LOGICS, Lorebook, LoreEntry

    entries = []
    for i in range(n):
        keys = ["".join(rng.sample(CHARS, rng.randint(2, 4))) for _ in range(rng.randint(1, 3))]
        if i % 10 == 0:
            keys = [f"/{keys[0][0]}[{CHARS[:6]}]{{1,2}}/"]
        entry = LoreEntry(
            keys=keys,
            content="".join(rng.choice(CHARS) for _ in range(rng.randint(30, 120))),
            insertion_order=rng.randint(0, 200),
            constant=i % 50 == 0,
            position=rng.choice(["before_char", "after_char"]),
        )
        if i % 5 == 1:
            entry.selective = True
            entry.secondary_keys = ["".join(rng.sample(CHARS, 2)) for _ in range(2)]
            entry.selective_logic = LOGICS[i % 4]
        entries.append(entry)
    return Lorebook(entries=entries, token_budget=600, recursive_scanning=True, max_recursion_steps=3)


def chat(turns: int, book, rng: random.Random) -> list[str]:
    keys = [k for e in book.entries for k in e.keys if not k.startswith("/")]
    messages = []
    for _ in range(turns):
        for _ in range(2):
            filler = "".join(rng.choice(CHARS) for _ in range(rng.randint(20, 80)))
            messages.append(filler + "".join(rng.sample(keys, 2)) + filler[:10])
    return messages


def main() -> None:
    from rolechat.conversation.worldinfo import activate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200)
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--scan-depth", type=int, nargs="+", default=[4, 100])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--budget",
        type=int,
        default=None,
        help="the scan's token budget, as the engine passes it (default: none, only the book's token_budget of 600)",
    )
    args = parser.parse_args()

    from tokenizers import Tokenizer

    from rolechat.llm.demo import SHIPPED_MODEL_DIR

    tokenizer = Tokenizer.from_file(str(SHIPPED_MODEL_DIR / "tokenizer.json"))

    def count_tokens(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    rng = random.Random(0)
    book = build_book(args.entries, rng)
    messages = chat(args.turns, book, rng)
    for depth in args.scan_depth:
        book.scan_depth = depth
        times, active = [], []
        for _ in range(args.repeats):
            for turn in range(1, args.turns + 1):
                history = messages[: turn * 2]
                start = time.perf_counter()
                got = activate(book, history, count_tokens, args.budget)
                times.append((time.perf_counter() - start) * 1000)
                active.append(len(got))
        times.sort()
        print(
            json.dumps(
                {
                    "entries": args.entries,
                    "turns": args.turns,
                    "scan_depth": depth,
                    "budget": args.budget,
                    "p50_ms": round(statistics.median(times), 3),
                    "p95_ms": round(times[int(len(times) * 0.95) - 1], 3),
                    "mean_active_entries": round(statistics.mean(active), 1),
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                }
            )
        )


if __name__ == "__main__":
    main()
