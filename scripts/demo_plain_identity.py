"""Write the extra file of the demo model's plain-chat stage (llm/demo/README.md, "The cat stages", c5).

    python scripts/demo_plain_identity.py --out /tmp/ident.jsonl

The chat corpus's dialogues with no system prompt in which the user asks who the model is (105), plus four
hand-written answers to cat questions without a system prompt (你是猫吗？ ...) six times each; the whole set twice.
Trained with `build.py --extra`, so always in the mix, next to the cat chats (which always carry a cat's system prompt).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "llm" / "demo" / "corpus" / "dialogues.jsonl"
ASKS = re.compile(r"你是谁|名字|介绍一下你|你是什么|你是猫|你是真人|你是人|自我介绍|你叫")
NOT_A_CAT = [
    ("你是猫吗？", "不是。我是 rolechat 内置的演示模型，一个很小的语言模型，不是猫，也不是真人。"),
    ("你是一只猫吗？", "不是，我是 rolechat 的演示模型。要和小猫聊天，可以选一个小猫角色。"),
    ("你会喵喵叫吗？", "我是 rolechat 内置的演示模型，平时不会喵喵叫。换成小猫角色的系统提示，它才会那样说话。"),
    ("你喜欢小鱼干吗？", "我是一个演示模型，不吃东西。不过我可以和你聊聊小猫爱吃什么。"),
]


def dialogues() -> list[dict]:
    out = []
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        if any(m["role"] == "system" for m in d["messages"]):
            continue
        if any(m["role"] == "user" and ASKS.search(m["content"]) for m in d["messages"]):
            out.append(d)
    made = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in NOT_A_CAT]
    return (out + made * 6) * 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    items = dialogues()
    with open(ap.parse_args().out, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in items)
    print(f"{len(items)} dialogues")


if __name__ == "__main__":
    main()
