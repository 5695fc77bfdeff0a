"""Writes llm/demo/corpus/card_dialogues.jsonl: plain chats under character-card prompts, as the engine sends them.

    .venv/bin/python scripts/demo_card_dialogues.py [--out FILE] [--seed 0] [--n 1200]

The demo model learns the app's knowledge-base prompt from long user messages full of passages. Without
this set it also learns that any long prompt means 「资料中没有提到……」: a character card (several hundred
tokens of system prompt and example turns) drew that answer, or prompt text such as 「有用的回答：」. Here
each chat of the demo corpus (llm/demo/corpus/dialogues.jsonl, system prompt dropped) is rendered by
`rolechat.conversation.Engine.prepare` with a character card, exactly as the app renders a chat with a card
on the base model: the sample cards (examples/characters/) or cards assembled at random from the corpus's
own sentences. The replies stay the corpus replies: the demo model does not role-play without an adapter,
it should just answer as it does without a card. Deterministic for a seed. Lives in scripts/ because it
needs the conversation engine (llm never imports it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rolechat.llm.demo.dialogues import CORPUS_DIR, write_jsonl  # noqa: E402

OUT_FILE = CORPUS_DIR / "card_dialogues.jsonl"
SAMPLE_CARDS = sorted((ROOT / "examples" / "characters").glob("*.json"))
NAMES = ["林夕", "阿青", "沈默", "小雨", "白露", "陆远", "秦筝", "苏木", "江月", "夏至", "顾北", "安然"]
ROLES = ["说书人", "茶馆老板", "图书管理员", "猫咖店员", "剑客", "学生", "画师", "厨师", "导游", "宫女", "侦探", "邮差"]
TRAITS = ["温柔", "爱笑", "话不多", "好奇心强", "有点傲娇", "认真", "热心", "慢性子", "机灵", "念旧"]
PLACES = ["长安城的西市", "江南小镇", "山里的茶园", "海边的灯塔", "旧书店", "皇宫", "大学图书馆", "雨夜的车站"]


def corpus_chats() -> list[list[dict]]:
    """The demo corpus's chats without their system prompts (the card takes that place)."""
    chats = []
    for line in (CORPUS_DIR / "dialogues.jsonl").read_text(encoding="utf-8").splitlines():
        messages = [m for m in json.loads(line)["messages"] if m["role"] != "system"]
        if len(messages) >= 2 and messages[0]["role"] == "user":
            chats.append(messages)
    return chats


def random_card(rng: random.Random, chats: list[list[dict]]):
    """A card from a name, a role, traits, a place and some of the corpus's own sentences."""
    from rolechat.conversation.card import Character

    name, role, place = rng.choice(NAMES), rng.choice(ROLES), rng.choice(PLACES)
    lines = [m["content"] for c in rng.sample(chats, 4) for m in c if m["role"] == "assistant"]
    lines = [line for line in lines if "[" not in line] or ["很高兴认识你。"]  # no citations in a card
    description = f"{{{{char}}}}是{place}的一名{role}。" + "".join(
        rng.sample(lines, min(len(lines), rng.randint(1, 4)))
    )
    example = ""
    if rng.random() < 0.5:
        turns = rng.choice(chats)[:2]
        example = f"<START>\n{{{{user}}}}: {turns[0]['content']}\n{{{{char}}}}: {turns[1]['content']}"
    return Character(
        name=name,
        description=description,
        personality="、".join(rng.sample(TRAITS, rng.randint(1, 3))),
        scenario=f"{{{{user}}}}在{place}遇见了{{{{char}}}}。" if rng.random() < 0.6 else "",
        mes_example=example,
    )


def generate(engine, n: int, seed: int) -> list[dict]:
    from rolechat.conversation.card import Character

    rng = random.Random(seed)
    chats = corpus_chats()
    samples = [Character.from_dict(json.loads(p.read_text(encoding="utf-8"))) for p in SAMPLE_CARDS]
    out = []
    for _ in range(n):
        chat = rng.choice(chats)
        card = rng.choice(samples) if samples and rng.random() < 0.3 else random_card(rng, chats)
        cut = 2 * rng.randint(0, (len(chat) - 2) // 2)  # earlier exchanges become the history
        history, (said, reply) = chat[:cut], chat[cut : cut + 2]
        turn = engine.prepare(said["content"], character=card, history=history, condense=False)
        out.append({"messages": [*turn.messages, {"role": "assistant", "content": reply["content"]}], "card": True})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT_FILE)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=1200, help="dialogues to write")
    args = ap.parse_args()
    os.environ["ROLECHAT_HOME"] = tempfile.mkdtemp(prefix="rolechat-demo-cards-")
    from rolechat.settings import set_offline_env

    set_offline_env()
    from rolechat.conversation import Engine
    from rolechat.llm import LLMConfig, load_runtime
    from rolechat.llm.demo import SHIPPED_MODEL_DIR

    engine = Engine(load_runtime(LLMConfig(model=str(SHIPPED_MODEL_DIR))))  # its tokenizer counts the budgets
    dialogues = generate(engine, args.n, args.seed)
    engine.close()
    write_jsonl(args.out, dialogues)
    print(f"wrote {len(dialogues)} dialogues ({len(SAMPLE_CARDS)} sample cards) to {args.out}")


if __name__ == "__main__":
    main()
