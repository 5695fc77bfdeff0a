"""Character memory per turn: a 3,000-line memory of 甄嬛 (huanhuan.json instruction -> output pairs), on the
demo model's tokenizer.

Each turn is the engine's memory hook exactly as `Engine.prepare` calls it (`Engine.memory`): the memory
file's stat (is the cached index still current?), the BM25 search of the new message plus the last reply,
and the greedy packing of the best exchanges into `chat.memory_tokens` (512), counting each with the
runtime's tokenizer (cached per text, as for every part). That is the latency memory adds to a turn; the
rest of `prepare` is measured by bench_prompt.py. The messages are the dataset's lines after the first
3,000 (never in the memory). Building the index (once per memory file version: it is cached on disk) and
loading it from that cache (a restart) are timed separately; the build includes loading jieba's dictionary.

    .venv/bin/python bench/bench_memory.py                     # 3,000 lines, 500 turns
    .venv/bin/python bench/bench_memory.py --lines 3000 --turns 500 --data /work/shared/data/huanhuan.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = Path("/work/shared/data/huanhuan.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="JSON list of {instruction, output}")
    parser.add_argument("--lines", type=int, default=3000, help="memory entries (the first N pairs)")
    parser.add_argument("--turns", type=int, default=500, help="turns measured")
    parser.add_argument("--model", default="", help="base model folder (default: the demo model)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    os.environ.setdefault("ROLECHAT_HOME", tempfile.mkdtemp(prefix="bench-memory-"))
    from rolechat.settings import set_offline_env

    set_offline_env()
    import torch

    torch.set_num_threads(1)
    from rolechat.conversation import Character, Engine, UserPersona
    from rolechat.conversation.characters import save_character
    from rolechat.llm import LLMConfig, load_runtime
    from rolechat.llm.memoryfile import MEMORY_FILE, MemoryEntry, write_memory

    pairs = json.loads(args.data.read_text(encoding="utf-8"))
    memory = [MemoryEntry(p["output"], p["instruction"], f"huanhuan:{i}") for i, p in enumerate(pairs[: args.lines])]
    messages = [p["instruction"] for p in pairs[args.lines :]] or [p["instruction"] for p in pairs]
    folder = save_character(Character(name="甄嬛", description="{{char}}是大理寺少卿甄远道之女。"), "zhenhuan")
    write_memory(folder / MEMORY_FILE, memory)

    rt = load_runtime(LLMConfig(model=args.model))
    rt.reload_personas()
    engine = Engine(rt)
    user = UserPersona("皇上")
    started = time.perf_counter()
    engine.memory("zhenhuan", ["你好"], user)  # first use: reads the file and builds the index
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    Engine(rt).memory("zhenhuan", ["你好"], user)  # a new engine (a restart): the index comes from the disk cache
    load_s = time.perf_counter() - started
    times, kept, tokens = [], [], []
    last_reply = ""
    for turn in range(args.turns):
        message = messages[turn % len(messages)]
        started = time.perf_counter()
        parts = engine.memory("zhenhuan", [last_reply, message], user)
        times.append((time.perf_counter() - started) * 1000)
        kept.append(len(parts))
        tokens.append(sum(p.tokens for p in parts))
        assert tokens[-1] <= engine.chat_cfg.memory_tokens
        last_reply = parts[0].text.rsplit("：", 1)[-1] if parts else ""
    q = statistics.quantiles(times, n=20)
    result = {
        "model": rt.info.model_id,
        "memory_lines": len(memory),
        "turns": args.turns,
        "memory_tokens": engine.chat_cfg.memory_tokens,
        "index_build_s": round(build_s, 2),
        "index_load_cached_s": round(load_s, 2),
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(q[18], 2),
        "mean_entries_sent": round(statistics.mean(kept), 1),
        "mean_memory_tokens": round(statistics.mean(tokens)),
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    for key, value in result.items():
        print(f"{key:>20}: {value}")


if __name__ == "__main__":
    main()
