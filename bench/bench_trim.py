"""History trimming benchmark: fit a long chat into the context, as `Runtime.encode` does for every request.

    .venv/bin/python bench/bench_trim.py [--turns 1000] [--context 4096] [--reply 512] [--old]

Builds a chat of --turns user/assistant exchanges (Chinese role-play lines of varied length, a system
prompt) and times `llm.encoding.fit_prompt` with the demo model's tokenizer and chat template: CPU seconds
and the number of prompt renders. `--old` also times the former loop (drop one message, re-render the whole
chat, repeat) and checks that both give the same ids.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rolechat.settings import set_offline_env

set_offline_env()

LINES = [
    "皇上万福金安。",
    "今天天气很好，我们去御花园散步吧。",
    "臣妾做不到啊！",
    "本宫听说，太医院新来了一位温太医，医术很是高明，连皇后娘娘都夸他稳妥。",
    "你可知道，这宫里的规矩，一步走错，便是万劫不复。" * 3,
    "嗯。",
]


def chat(turns: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    msgs = [{"role": "system", "content": "你是甄嬛，说话要有宫廷味，回答简短。"}]
    for i in range(turns):
        msgs.append({"role": "user", "content": f"第{i}问：" + rng.choice(LINES)})
        msgs.append({"role": "assistant", "content": rng.choice(LINES)})
    msgs.append({"role": "user", "content": "最后，你还记得我们第一次见面吗？"})
    return msgs


def old_trim(tok, fmt, msgs, budget):
    """The former Runtime.encode loop: one whole re-render per dropped message."""
    from rolechat.llm.encoding import encode_prompt

    system, turns = msgs[:1], msgs[1:]
    ids, renders = encode_prompt(tok, fmt, system + turns), 1
    while len(ids) > budget and len(turns) > 1:
        turns = turns[1:]
        while turns and turns[0]["role"] != "user":
            turns = turns[1:]
        ids, renders = encode_prompt(tok, fmt, system + turns), renders + 1
    return ids, renders


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=1000)
    ap.add_argument("--context", type=int, default=4096)
    ap.add_argument("--reply", type=int, default=512)
    ap.add_argument("--old", action="store_true", help="also time the former one-render-per-turn loop")
    args = ap.parse_args()

    from transformers import AutoTokenizer

    import rolechat.llm.encoding as encoding
    from rolechat.llm.demo import demo_model_path
    from rolechat.llm.templates import resolve_format

    tok = AutoTokenizer.from_pretrained(demo_model_path())
    fmt = resolve_format(tok)
    msgs = chat(args.turns)
    budget = args.context - args.reply
    renders = 0
    real = encoding.encode_prompt

    def counted(*a, **k):
        nonlocal renders
        renders += 1
        return real(*a, **k)

    encoding.encode_prompt = counted
    full = len(real(tok, fmt, msgs))
    t = time.process_time()
    ids = encoding.fit_prompt(tok, fmt, msgs, budget)
    new_s = time.process_time() - t
    encoding.encode_prompt = real
    print(
        f"{args.turns} turns ({full:,} tokens) into {budget:,}: kept {len(ids):,} tokens; fit_prompt "
        f"{new_s:.3f} s CPU, {renders} renders"
    )
    if args.old:
        t = time.process_time()
        old, old_renders = old_trim(tok, fmt, msgs, budget)
        old_s = time.process_time() - t
        print(f"former loop: {old_s:.2f} s CPU, {old_renders} renders; same ids: {old == ids}; {old_s / new_s:,.0f}x")


if __name__ == "__main__":
    main()
