"""How often the demo model's knowledge-base answers hold the right fact, through the app's real RAG path.

Indexes `knowledge/` and `bench/data/unseen_docs/` (three documents written for this benchmark, nothing of
which is in the demo model's training data: checked below) into two knowledge bases of a throw-away
ROLECHAT_HOME with the default settings, then asks every question through `rolechat.conversation.Engine`
(default retriever and k, the exact answer prompt the app sends) and generates greedily with the runtime:

    .venv/bin/python bench/bench_demo_answers.py                 # the configured model (default: the demo model)
    .venv/bin/python bench/bench_demo_answers.py --model DIR     # another build, e.g. a checkpoint
    .venv/bin/python bench/bench_demo_answers.py --show          # print every reply

Question sets (bench/data/): `demo_questions_knowledge.jsonl` (paraphrases about knowledge/, written apart
from the training questions), `demo_questions_unseen.jsonl` (about the unseen documents), each
{"question", "gold": [acceptable fact strings]}; `demo_questions_absent.jsonl` ({"question", "kb"}: the
documents do not answer it). Scores: share of replies holding a gold string (a, b); share of absent
questions answered with 「资料中没有提到」 or the app's fixed not-found reply (c), with the share of ANSWERABLE
questions answered so (a model that always says it scores 100% on (c)); a reply saying it never counts as
holding the fact; replies with U+FFFD; loops
(a reply that ran to the token limit or repeats a 3+ character piece three times in a row).

(d) copying from documents nobody wrote by hand: `--invented N` (default 40) answerable prompts over invented
documents shaped like the app's chunks (`scripts/demo_rag_dialogues.py --app-chunks`, seed INVENTED_SEED, which no
build uses), sent as rendered to the model; a reply counts when it holds the answer sentence as the passage
writes it. In distribution for the builds that train on such documents, so it measures the copying skill, not
transfer (b does that); cheap and with more questions than (b), it tells checkpoints apart.

Then a regression check for plain chat with characters, no knowledge base: the sample characters shipped
beside the demo model (苏晚, 小满: cards, no adapter) each get CARD_MESSAGES; counted are replies that leak
prompt text (a template tag, `assistant`, the RAG prompt's 「有用的回答」), replies that say 「资料中没有提到」
although no passages were given, and replies that cite passages (`[1]`, 「资料1」) that were never given. A build
that learns the RAG prompt too well shows it here first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "bench" / "data"
KNOWLEDGE = ROOT / "knowledge"
UNSEEN = DATA / "unseen_docs"
CORPUS = ROOT / "llm" / "demo" / "corpus"
NOTHING = "资料中没有提到"
INVENTED_SEED = 1000  # never a build's seed: the builds train on seeds 0-2 of scripts/demo_rag_dialogues.py
LOOP = re.compile(r"(.{3,}?)\1\1")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def check_unseen(questions: list[dict]) -> None:
    """Fail loudly if a benchmark question or a sentence of an unseen document is in the training corpus."""
    corpus = "\n".join(p.read_text(encoding="utf-8") for p in sorted(CORPUS.glob("*.jsonl")))
    corpus += "\n".join(p.read_text(encoding="utf-8") for p in sorted(CORPUS.glob("*.txt")))
    for q in questions:
        if json.dumps(q["question"], ensure_ascii=False).strip('"') in corpus:
            sys.exit(f"benchmark question is in the training corpus: {q['question']}")
    for doc in sorted(UNSEEN.iterdir()):
        for sentence in re.split(r"[。\n]", doc.read_text(encoding="utf-8")):
            sentence = sentence.strip("# ")
            if len(sentence) >= 8 and sentence in corpus:
                sys.exit(f"{doc.name}: sentence is in the training corpus: {sentence}")


def is_nothing_found(reply: str) -> bool:
    """The model's 「资料中没有提到……」 or the app's fixed reply when nothing was retrieved."""
    return NOTHING in reply or reply.startswith("知识库中没有找到")


def ask(engine, kb: str, question: str, max_new_tokens: int) -> dict:
    start = time.perf_counter()
    turn, stream = engine.reply(
        question, knowledge_base=kb, condense=False, params={"temperature": 0, "max_new_tokens": max_new_tokens}
    )
    text = stream.join()
    stats = getattr(stream, "stats", None)
    ran_out = bool(stats and stats.finish_reason == "length")
    return {
        "question": question,
        "reply": text,
        "sources": [row["file"] for row in turn.sources],
        "seconds": round(time.perf_counter() - start, 2),
        "broken": "\ufffd" in text,
        "loop": ran_out or bool(LOOP.search(text)),
        "cites": bool(re.search(r"\[\d\]", text)),
    }


CARD_CHARACTERS = ("suwan", "xiaoman")
CARD_MESSAGES = (
    "你好",
    "今天想聊点什么？",
    "西市有什么好玩的？",
    "你叫什么名字？",
    "给我讲讲你自己吧",
    "你喜欢做什么？",
)
LEAK = re.compile(r"</?think>|<\|im_|^assistant|有用的回答")
CITE = re.compile(r"\[\d+\]|资料\[?\d")  # a citation: in a card chat there are no passages to cite


def invented_prompts(chunks: list, n: int) -> list[dict]:
    """n answerable dialogues over app-shaped invented documents (the reply: the sentence, then [k])."""
    import random

    import demo_rag_dialogues as gen

    rows = gen.synthetic(random.Random(INVENTED_SEED), gen.answer_template(), chunks, 3 * n, app_chunks=True)
    return [r for r in rows if NOTHING not in r["messages"][-1]["content"]][:n]


def ask_invented(runtime, row: dict, max_new_tokens: int) -> dict:
    gold = re.sub(r"^根据\[\d\]，|\[\d\]|。$", "", row["messages"][-1]["content"]).rstrip("。")
    text = runtime.chat(row["messages"][:-1], params={"temperature": 0, "max_new_tokens": max_new_tokens})
    return {
        "question": row["messages"][-2]["content"].rsplit("问题：", 1)[-1].split("\n")[0],
        "reply": text,
        "gold": gold,
        "ok": gold in text,
    }


def card_chats(engine, max_new_tokens: int) -> list[dict]:
    out = []
    for character in CARD_CHARACTERS:
        for message in CARD_MESSAGES:
            turn, stream = engine.reply(
                message, character=character, params={"temperature": 0, "max_new_tokens": max_new_tokens}
            )
            text = stream.join().strip()
            out.append(
                {
                    "question": f"{character}: {message}",
                    "reply": text,
                    "leak": bool(LEAK.search(text)),
                    "nothing_found": NOTHING in text,
                    "cites": bool(CITE.search(text)),
                    "loop": bool(LOOP.search(text)),
                }
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder (default: the configured model, i.e. the demo one)")
    ap.add_argument("--max-new-tokens", type=int, default=200)
    ap.add_argument("--show", action="store_true", help="print every question and reply")
    ap.add_argument("--limit", type=int, default=0, help="ask only the first N questions of each set (a smoke run)")
    ap.add_argument("--json", type=Path, default=None, help="also write every reply here")
    ap.add_argument("--invented", type=int, default=40, help="questions over invented documents for (d); 0: skip")
    args = ap.parse_args()

    known, unseen, absent = (
        read_jsonl(DATA / f"demo_questions_{name}.jsonl") for name in ("knowledge", "unseen", "absent")
    )
    check_unseen(known + unseen + absent)
    if args.limit:
        known, unseen, absent = known[: args.limit], unseen[: args.limit], absent[: args.limit]
    os.environ["ROLECHAT_HOME"] = tempfile.mkdtemp(prefix="rolechat-bench-demo-")
    from rolechat.settings import set_offline_env

    set_offline_env()
    sys.path.insert(0, str(ROOT / "scripts"))
    import demo_rag_dialogues as gen

    from rolechat.conversation import Engine
    from rolechat.llm import LLMConfig, load_runtime
    from rolechat.rag import KnowledgeBase

    chunks = []
    for name, folder in (("knowledge", KNOWLEDGE), ("unseen", UNSEEN)):
        kb = KnowledgeBase(name)
        kb.index([str(folder)])
        if name == "knowledge":  # real chunks: a quarter of (d)'s prompts have one among the passages
            chunks = gen.kb_documents(kb)
        kb.close()
    t0 = time.perf_counter()
    runtime = load_runtime(LLMConfig(model=args.model) if args.model else LLMConfig())
    load_s = time.perf_counter() - t0
    engine = Engine(runtime)

    results: dict[str, list[dict]] = {"knowledge": [], "unseen": [], "absent": []}
    for set_name, items in (("knowledge", known), ("unseen", unseen)):
        for item in items:
            r = ask(engine, set_name, item["question"], args.max_new_tokens)
            r["nothing_found"] = is_nothing_found(r["reply"])
            r["ok"] = not r["nothing_found"] and any(g in r["reply"] for g in item["gold"])
            results[set_name].append(r)
    for item in absent:
        r = ask(engine, item["kb"], item["question"], args.max_new_tokens)
        r["ok"] = r["nothing_found"] = is_nothing_found(r["reply"])
        results["absent"].append(r)

    rows = [r for rs in results.values() for r in rs]
    prompts = invented_prompts(chunks, args.invented) if args.invented else []
    invented = [ask_invented(runtime, r, args.max_new_tokens) for r in prompts]
    cards = card_chats(engine, args.max_new_tokens)
    if args.show:
        for set_name, rs in results.items():
            for r in rs:
                flag = "ok " if r["ok"] else "-- "
                print(f"{flag}[{set_name}] {r['question']} -> {r['reply']}")
        for r in invented:
            print(f"{'ok ' if r['ok'] else '-- '}[invented] {r['question']} -> {r['reply']}")
        for r in cards:
            flag = "-- " if r["leak"] or r["nothing_found"] or r["cites"] else "ok "
            print(f"{flag}[card chat] {r['question']} -> {r['reply']}")
    print(f"model: {runtime.model_path if hasattr(runtime, 'model_path') else args.model or 'configured'}")
    print(f"load: {load_s:.2f} s; replies: {len(rows)}, {sum(r['seconds'] for r in rows) / len(rows):.2f} s each")
    for label, key in (
        ("(a) knowledge/ paraphrases, gold fact", "knowledge"),
        ("(b) unseen documents, gold fact", "unseen"),
        ("(c) absent facts, 'nothing found'", "absent"),
    ):
        rs = results[key]
        print(f"{label}: {sum(r['ok'] for r in rs)}/{len(rs)} = {sum(r['ok'] for r in rs) / len(rs):.0%}")
    if invented:
        ok = sum(r["ok"] for r in invented)
        print(f"(d) invented documents, answer sentence copied: {ok}/{len(invented)} = {ok / len(invented):.0%}")
    answered = results["knowledge"] + results["unseen"]
    print(f"cite [n] (a+b): {sum(r['cites'] for r in answered)}/{len(answered)}")
    # (c) means little if the model says it for everything: how often it says it when the passages DO answer
    print(f"'nothing found' on answerable questions (a+b): {sum(r['nothing_found'] for r in answered)}/{len(answered)}")
    print(f"broken characters (U+FFFD): {sum(r['broken'] for r in rows)}; loops: {sum(r['loop'] for r in rows)}")
    leaks, refusals, cites, loops = (sum(r[k] for r in cards) for k in ("leak", "nothing_found", "cites", "loop"))
    print(
        f"card chats without a knowledge base: {leaks}/{len(cards)} leak prompt text, "
        f"{refusals}/{len(cards)} say 'nothing found', {cites}/{len(cards)} cite passages they were not given, "
        f"{loops} loop"
    )
    if args.json:
        results["card_chats"] = cards
        results["invented"] = invented
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
