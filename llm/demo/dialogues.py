"""The demo model's chat corpus: expands the hand-written phrases into a few thousand dialogues.

Four kinds of dialogue, all in the `{"messages": [...]}` shape the chat template renders:
single-turn topic Q&A, multi-turn chats stitched from several topics, the same with a persona
system prompt, and answer-from-context (RAG) dialogues whose system or user message holds
numbered "资料" passages about made-up things and whose answer cites the right passage as [k].
The RAG facts are random, so the model must copy from the context rather than memorise.

`python -m rolechat.llm.demo.dialogues` rewrites `corpus/dialogues.jsonl` (deterministic for a seed).
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import rolechat.llm.demo.phrases as P
from rolechat.llm.demo.layout import CORPUS_DIR

DIALOGUES_FILE = CORPUS_DIR / "dialogues.jsonl"

Fact = tuple[str, list[tuple[str, str]], str]  # passage, [(question, answer sentence)], topic name


def _turn(rng: random.Random, topic: str) -> tuple[str, str]:
    questions, answers = P.TOPICS[topic]
    return rng.choice(questions), rng.choice(answers)


@dataclass(frozen=True)
class _FactKind:
    """One kind of made-up fact: `draw` picks its random parts (in a fixed order, so a seed gives the same
    corpus), the templates turn them into the passage and the questions it answers."""

    draw: Callable[[random.Random], dict[str, str | int]]  # always holds "name": what the passage is about
    passage: str
    qa: tuple[tuple[str, str], ...]

    def __call__(self, rng: random.Random) -> Fact:
        parts = self.draw(rng)
        qa = [(q.format(**parts), a.format(**parts)) for q, a in self.qa]
        return self.passage.format(**parts), qa, str(parts["name"])


_PLACE = _FactKind(
    lambda rng: {
        "name": rng.choice(P.PLACE_HEADS) + rng.choice(P.PLACE_HEADS) + rng.choice(P.PLACE_TAILS),
        "where": rng.choice(P.PROVINCES),
        "year": rng.randint(1200, 2015),
        "known": rng.choice(P.FAMOUS_FOR),
    },
    "{name}位于{where}，始建于{year}年，以{known}闻名。",
    (
        ("{name}在哪里？", "{name}位于{where}。"),
        ("{name}是哪一年建成的？", "{name}始建于{year}年。"),
        ("{name}以什么闻名？", "{name}以{known}闻名。"),
    ),
)
_PERSON = _FactKind(
    lambda rng: {
        "name": rng.choice(P.SURNAMES) + rng.choice(P.GIVEN) + rng.choice(P.GIVEN),
        "job": rng.choice(P.JOBS),
        "city": rng.choice(P.CITIES),
        "hobby": rng.choice(P.HOBBIES),
    },
    "{name}是一名{job}，出生在{city}，平时喜欢{hobby}。",
    (
        ("{name}是做什么工作的？", "{name}是一名{job}。"),
        ("{name}出生在哪里？", "{name}出生在{city}。"),
        ("{name}有什么爱好？", "{name}平时喜欢{hobby}。"),
    ),
)


def _draw_product(rng: random.Random) -> dict[str, str | int]:
    parts: dict[str, str | int] = {
        "name": rng.choice(P.CITIES[:6]) + "牌" + rng.choice(P.ITEMS),
        "price": rng.randint(12, 899),
        "weight": rng.randint(50, 2000),
    }
    parts["c1"], parts["c2"] = rng.sample(P.COLORS, 2)
    return parts


_PRODUCT = _FactKind(
    _draw_product,
    "{name}售价{price}元，重约{weight}克，有{c1}和{c2}两种颜色。",
    (
        ("{name}多少钱？", "{name}售价{price}元。"),
        ("{name}有多重？", "{name}重约{weight}克。"),
        ("{name}有哪些颜色？", "{name}有{c1}和{c2}两种颜色。"),
    ),
)
_SCHEDULE = _FactKind(
    lambda rng: {
        "name": rng.choice(P.PLACE_HEADS) + rng.choice(P.PLACE_HEADS) + rng.choice(P.ORGS),
        "start": rng.randint(7, 10),
        "end": rng.randint(17, 21),
        "rest": rng.choice(P.WEEKDAYS),
    },
    "{name}每天{start}点开门，{end}点关门，{rest}闭馆休息。",
    (
        ("{name}几点开门？", "{name}每天{start}点开门。"),
        ("{name}几点关门？", "{name}每天{end}点关门。"),
        ("{name}哪天休息？", "{name}{rest}闭馆休息。"),
    ),
)
_EVENT = _FactKind(
    lambda rng: {
        "name": rng.choice(P.CITIES) + rng.choice(P.EVENTS),
        "month": rng.randint(1, 12),
        "day": rng.randint(1, 28),
        "where": rng.choice(P.CITIES) + rng.choice(P.ORGS),
    },
    "{name}将于{month}月{day}日在{where}举行，欢迎大家参加。",
    (
        ("{name}什么时候举行？", "{name}将于{month}月{day}日举行。"),
        ("{name}在哪里举行？", "{name}在{where}举行。"),
    ),
)

FACT_MAKERS: list[Callable[[random.Random], Fact]] = [_PLACE, _PERSON, _PRODUCT, _SCHEDULE, _EVENT]

RAG_SYSTEMS = [
    "你是一个知识库问答助手。请根据下面的资料回答用户的问题，并用 [编号] 标注出处。资料中没有的内容请说不知道。\n\n资料：\n{ctx}",
    "请只根据以下资料回答问题，回答时注明来源编号。\n\n资料：\n{ctx}",
    "已知资料：\n{ctx}\n\n请用上面的资料回答用户的问题。",
]
RAG_USERS = [
    "请根据以下资料回答问题。\n\n资料：\n{ctx}\n\n问题：{q}",
    "资料：\n{ctx}\n\n根据资料回答：{q}",
]
CITE_FORMS = ["根据资料[{k}]，{a}", "{a}[{k}]", "资料[{k}]提到，{a}"]


def rag_dialogue(rng: random.Random) -> dict:
    """One answer-from-context dialogue with 1-4 passages; about one in eight has no answer."""
    facts = [rng.choice(FACT_MAKERS)(rng) for _ in range(rng.randint(1, 4))]
    ctx = "\n".join(f"[{i}] {passage}" for i, (passage, _, _) in enumerate(facts, 1))
    if rng.random() < 0.12:
        _, qa, topic = rng.choice(FACT_MAKERS)(rng)
        question = qa[0][0]
        answer = rng.choice(P.NO_ANSWER).format(topic=topic)
    else:
        k = rng.randrange(len(facts))
        question, sentence = rng.choice(facts[k][1])
        answer = rng.choice(CITE_FORMS).format(k=k + 1, a=sentence)
    if rng.random() < 0.6:
        messages = [
            {"role": "system", "content": rng.choice(RAG_SYSTEMS).format(ctx=ctx)},
            {"role": "user", "content": question},
        ]
    else:
        messages = [{"role": "user", "content": rng.choice(RAG_USERS).format(ctx=ctx, q=question)}]
    return {"messages": messages + [{"role": "assistant", "content": answer}]}


def chat_dialogue(rng: random.Random, topics: list[str], system_rate: float = 0.3) -> dict:
    """A 1-3 turn chat over random topics, greetings most likely first, goodbyes last."""
    n = rng.choices([1, 2, 3], weights=[6, 3, 1])[0]
    picked = [rng.choice(topics) for _ in range(n)]
    if n > 1 and rng.random() < 0.5:
        picked[0] = rng.choice(["hello", "morning", "noon", "evening"])
    if n > 1 and rng.random() < 0.3:
        picked[-1] = rng.choice(["thanks", "bye"])
    messages = []
    if rng.random() < system_rate:
        messages.append({"role": "system", "content": rng.choice(P.SYSTEM_PROMPTS)})
    for topic in picked:
        question, answer = _turn(rng, topic)
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages}


def generate(seed: int = 0, n_chat: int = 3600, n_rag: int = 1400) -> list[dict]:
    """All dialogues: every (phrasing, answer) pair of every topic once, then random chats and RAG."""
    rng = random.Random(seed)
    out = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for questions, answers in P.TOPICS.values()
        for q in questions
        for a in answers
    ]
    topics = list(P.TOPICS)
    out += [chat_dialogue(rng, topics) for _ in range(n_chat)]
    out += [rag_dialogue(rng) for _ in range(n_rag)]
    rng.shuffle(out)
    return out


def write_jsonl(path: Path, dialogues: list[dict]) -> int:
    """Write one dialogue per line (the corpus format); returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for d in dialogues:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    return len(dialogues)


def write(path: Path = DIALOGUES_FILE, seed: int = 0) -> int:
    return write_jsonl(path, generate(seed))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DIALOGUES_FILE)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"wrote {write(args.out, args.seed)} dialogues to {args.out}")


if __name__ == "__main__":
    main()
