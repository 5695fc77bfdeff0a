"""What a turn costs with a card near chat.card_max_mb: a 19 MB card of 19,000 lorebook entries, and one whose
6-million-character description can never fit the context, imported as personas and chatted with on the demo
model (`Engine.prepare`, no generation).

    .venv/bin/python bench/bench_bigcard.py            # 3 turns each; prints seconds per turn and peak RSS
"""

from __future__ import annotations

import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHARS = "长安洛阳西市东市曲江大雁塔金吾卫宵禁上元灯会胡商波斯夜明珠师父醒木茶楼说书剑客江湖皇城宫廷书生酒肆牡丹"


def cards(folder: Path) -> list[Path]:
    rng = random.Random(0)
    entries = [
        {
            "keys": ["".join(rng.sample(CHARS, 3)) for _ in range(2)],
            "content": "".join(rng.choice(CHARS) for _ in range(300)),
            "insertion_order": rng.randint(0, 200),
            "enabled": True,
            "extensions": {},
        }
        for _ in range(19_000)
    ]
    book = {
        "spec": "chara_card_v2",
        "data": {"name": "大书", "description": "一本很大的书。", "character_book": {"entries": entries}},
    }
    long = {"spec": "chara_card_v2", "data": {"name": "长文", "description": "长" * 6_000_000}}
    paths = []
    for name, card in (("book.json", book), ("long.json", long)):
        (folder / name).write_text(json.dumps(card, ensure_ascii=False), encoding="utf-8")
        paths.append(folder / name)
    return paths


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="rolechat-bigcard-"))
    os.environ["ROLECHAT_HOME"] = str(folder / "home")
    from rolechat.conversation import Engine
    from rolechat.conversation.characters import import_card
    from rolechat.llm import LLMConfig, load_runtime
    from rolechat.settings import set_offline_env

    set_offline_env()
    names = [import_card(path)[1].name for path in cards(folder)]
    engine = Engine(load_runtime(LLMConfig()))
    history = [{"role": "assistant", "content": "你好"}]
    for name in names:
        for turn in range(3):
            start = time.perf_counter()
            try:
                done = engine.prepare("我们去长安西市吧", character=name, history=history, params={"max_new_tokens": 8})
                outcome = f"{done.prompt_tokens} prompt tokens"
            except ValueError as exc:
                outcome = type(exc).__name__
            print(f"{name} turn {turn + 1}: {time.perf_counter() - start:.2f} s ({outcome})")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
