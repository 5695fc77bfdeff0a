"""Prompt assembly per turn: a character with a 200-entry lorebook and a 50-turn history, on the demo model's
tokenizer and template.

Each turn is `Engine.prepare` exactly as the app, the CLI and the API call it: lorebook activation (keys
scanned in the recent messages, always-on entries, recursion), token counting of every part, the budgets,
and the fitting of the whole into the context (rendering and tokenizing the prompt with the chat template,
dropping what does not fit). Generation is not part of it. The history is 50 turns (100 messages) and does
not fit the demo model's 2,048-token context, so every turn also drops its oldest turns.

    .venv/bin/python bench/bench_prompt.py                 # 200 turns, the demo model
    .venv/bin/python bench/bench_prompt.py --turns 500 --entries 200 --history 50
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PLACES = "长安 洛阳 扬州 苏州 杭州 成都 开封 金陵 西域 岭南 江南 塞北 蜀中 关中 燕云 河西 漠北 东海 南疆 巴蜀".split()
THINGS = "酒楼 茶馆 书院 寺庙 码头 集市 驿站 镖局 药铺 客栈".split()


def lorebook(entries: int, seed: int = 0):
    """`entries` entries: 5 always-on, the rest keyed on a place+thing name (some with secondary keys, some
    regex, some placed after the character), each ~60 characters of world description."""
    from rolechat.conversation import Lorebook, LoreEntry

    rng = random.Random(seed)
    out = []
    for i in range(entries):
        place, thing = PLACES[i % len(PLACES)], THINGS[(i // len(PLACES)) % len(THINGS)]
        name = f"{place}{thing}"
        content = (
            f"{name}是{place}最有名的{thing}之一，{rng.choice(['老板姓王', '常有江湖人出入', '夜里灯火通明'])}，"
            f"{{{{char}}}}曾在这里{rng.choice(['说过书', '喝过酒', '躲过雨', '见过{{user}}'])}。"
        )
        if i < 5:
            out.append(LoreEntry(constant=True, content=f"世界设定{i}：{content}", comment=f"常驻{i}"))
            continue
        keys = [f"/{place}.{{0,2}}{thing}/"] if i % 7 == 0 else [name, f"{place}的{thing}"]
        entry = LoreEntry(
            keys=keys,
            content=content,
            comment=name,
            insertion_order=rng.randint(1, 200),
            position="after_char" if i % 3 == 0 else "before_char",
        )
        if i % 5 == 0:
            entry.secondary_keys, entry.selective = [place], True
        out.append(entry)
    return Lorebook(entries=out, scan_depth=4)


def history(turns: int, rng: random.Random) -> list[dict[str, str]]:
    out = []
    for i in range(turns):
        place, thing = rng.choice(PLACES), rng.choice(THINGS)
        out += [
            {"role": "user", "content": f"第{i}轮：我们明天去{place}{thing}看看吧，听说那里很热闹？"},
            {"role": "assistant", "content": f"好呀，{place}的{thing}我熟，路上再给你讲讲那里的故事。"},
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200, help="turns measured")
    parser.add_argument("--entries", type=int, default=200, help="lorebook entries")
    parser.add_argument("--history", type=int, default=50, help="history turns (user + assistant)")
    parser.add_argument("--model", default="", help="base model folder (default: the demo model)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    os.environ.setdefault("ROLECHAT_HOME", tempfile.mkdtemp(prefix="bench-prompt-"))
    from rolechat.settings import set_offline_env

    set_offline_env()
    import torch

    torch.set_num_threads(1)
    from rolechat.conversation import Character, Engine, UserPersona
    from rolechat.llm import LLMConfig, load_runtime

    rt = load_runtime(LLMConfig(model=args.model))
    engine = Engine(rt)
    card = Character(
        name="林夕",
        description="{{char}}是走遍天下的说书人，记性极好，说话带点古风。",
        personality="健谈、好奇",
        scenario="{{user}}与{{char}}结伴游历",
        mes_example="<START>\n{{user}}: 讲个故事吧\n{{char}}: 客官请坐，且听我慢慢道来。",
        post_history_instructions="保持{{char}}的口吻。",
        character_book=lorebook(args.entries),
    )
    user = UserPersona("小明", "一个爱喝茶的学生")
    rng = random.Random(1)
    past = history(args.history, rng)
    params = {"max_new_tokens": 256}
    started = time.perf_counter()
    engine.prepare("你好", character=card, history=past, user=user, params=params)  # warm-up: caches, imports
    first_ms = (time.perf_counter() - started) * 1000
    times, tokens, lore, dropped = [], [], [], []
    for _ in range(args.turns):
        message = (
            f"要不要去{rng.choice(PLACES)}{rng.choice(THINGS)}？顺路看看{rng.choice(PLACES)}的{rng.choice(THINGS)}。"
        )
        started = time.perf_counter()
        turn = engine.prepare(message, character=card, history=past, user=user, params=params)
        times.append((time.perf_counter() - started) * 1000)
        tokens.append(turn.prompt_tokens)
        lore.append(sum(1 for p in turn.parts if p.kind.startswith("lore") and p.included))
        dropped.append(sum(1 for p in turn.parts if p.kind == "history" and not p.included))
        assert turn.prompt_tokens <= turn.budget
        past = [*past[2:], {"role": "user", "content": message}, {"role": "assistant", "content": "好，走吧。"}]
    q = statistics.quantiles(times, n=20)
    result = {
        "model": rt.info.model_id,
        "context": rt.info.context_length,
        "budget": turn.budget,
        "turns": args.turns,
        "lorebook_entries": args.entries,
        "history_turns": args.history,
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(q[18], 2),
        "first_turn_ms": round(first_ms, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "mean_prompt_tokens": round(statistics.mean(tokens)),
        "mean_lore_entries_sent": round(statistics.mean(lore), 1),
        "mean_history_messages_dropped": round(statistics.mean(dropped), 1),
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    for key, value in result.items():
        print(f"{key:>32}: {value}")


if __name__ == "__main__":
    main()
