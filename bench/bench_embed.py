"""Embedding runtime throughput: batch size and how texts are grouped into batches, as indexing runs them.

Chunks of a corpus (default ../shared/data/corpus/self-llm, split with the default settings) are embedded
the way `KnowledgeBase.index` does it: groups of 256 texts, sorted by length, cut into calls of 32 texts,
one single-threaded ONNX call per core at once, each call running batches of --batch-sizes texts. The
configurations are run in turn, --repeats times (this machine's speed drifts by 10-20% over minutes, so
compare the best and the median of interleaved runs, not single runs). Reported per configuration: wall
seconds, CPU seconds spent in embedding calls, and the share of padding tokens in the batches.

    .venv/bin/python bench/bench_embed.py [--texts 768] [--repeats 3] [--batch-sizes 32,16,8,4,1] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "corpus" / "self-llm"
GROUP, CALL = 256, 32


def corpus_chunks(corpus: Path, count_tokens, chunk_size: int, overlap: int, limit: int) -> list[str]:
    from rolechat.rag.loaders import SUPPORTED, LoadError, parse
    from rolechat.rag.splitting import split_file

    texts: dict[str, None] = {}
    for path in sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED):
        try:
            loaded = parse(SUPPORTED[path.suffix.lower()], path, path.read_bytes())
        except LoadError:
            continue
        for chunk in split_file(loaded, count_tokens, chunk_size, overlap, limit):
            texts[chunk.text] = None
    return list(texts)


def calls_for(texts: list[str], lengths: list[int]) -> list[list[str]]:
    calls = []
    for start in range(0, len(texts), GROUP):
        order = sorted(range(start, min(start + GROUP, len(texts))), key=lambda i: lengths[i])
        calls += [[texts[i] for i in order[s : s + CALL]] for s in range(0, len(order), CALL)]
    return calls


def padding(calls: list[list[str]], tokens: dict[str, int], batch: int) -> float:
    """Padding share when each call's texts are re-sorted by tokens and run in batches of `batch`."""
    real = padded = 0
    for call in calls:
        counts = sorted(tokens[t] for t in call)
        for s in range(0, len(counts), batch):
            part = counts[s : s + batch]
            real += sum(part)
            padded += max(part) * len(part)
    return 1 - real / padded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--texts", type=int, default=768, help="distinct chunks taken from the middle of the corpus")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", default="32,16,8,4,1")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        sys.exit(f"corpus not found: {args.corpus} (the shared data folder is absent)")
    os.environ.setdefault("ROLECHAT_HOME", tempfile.mkdtemp(prefix="rolechat-bench-embed-"))
    from rolechat.settings import set_offline_env

    set_offline_env()
    from rolechat.rag import RAGConfig
    from rolechat.rag.embedder import Embedder

    cfg = RAGConfig()
    probe = Embedder(cfg.embedder, cfg.embedder_backend)
    every = corpus_chunks(args.corpus, probe.count_tokens, cfg.chunk_size, cfg.chunk_overlap, probe.max_tokens)
    middle = max(0, len(every) // 2 - args.texts // 2)
    texts = every[middle : middle + args.texts]
    counts = [n + probe.special_tokens for n in probe.count_tokens(texts)]
    tokens = dict(zip(texts, counts))
    grouped = {"tokens": calls_for(texts, counts), "chars": calls_for(texts, [len(t) for t in texts])}
    configs = [("chars", 32)] + [("tokens", int(b)) for b in args.batch_sizes.split(",")]
    embedders = {b: Embedder(cfg.embedder, cfg.embedder_backend, b) for _, b in configs}
    for emb in embedders.values():
        emb.embed_array(["warm up"], single_thread=True)
    runs: dict[str, list[tuple[float, float]]] = {}
    for _ in range(args.repeats):
        for order, batch in configs:
            emb, cpu, lock = embedders[batch], [0.0], threading.Lock()

            def call(part, emb=emb, cpu=cpu, lock=lock):
                t0 = time.thread_time()
                emb.embed_array(part, single_thread=True)
                with lock:
                    cpu[0] += time.thread_time() - t0

            start = time.perf_counter()
            with ThreadPoolExecutor(probe.parallel_calls) as pool:
                list(pool.map(call, grouped[order]))
            runs.setdefault(f"{order}/{batch}", []).append((time.perf_counter() - start, cpu[0]))
    result = {"texts": len(texts), "tokens": sum(counts), "workers": probe.parallel_calls, "configs": []}
    for order, batch in configs:
        walls = [w for w, _ in runs[f"{order}/{batch}"]]
        cpus = [c for _, c in runs[f"{order}/{batch}"]]
        result["configs"].append(
            {
                "sorted_by": order,
                "batch": batch,
                "padding": round(padding(grouped[order], tokens, batch), 3),
                "wall_best_s": round(min(walls), 1),
                "wall_median_s": round(statistics.median(walls), 1),
                "cpu_median_s": round(statistics.median(cpus), 1),
                "tokens_per_s": round(sum(counts) / statistics.median(walls)),
            }
        )
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['texts']} chunks, {result['tokens']} tokens, {result['workers']} single-threaded calls at once")
    print("sorted by  batch  padding  wall best  wall median  cpu median  tokens/s")
    for c in result["configs"]:
        print(
            f"{c['sorted_by']:>9}  {c['batch']:>5}  {c['padding']:>7.1%}  {c['wall_best_s']:>9}  "
            f"{c['wall_median_s']:>11}  {c['cpu_median_s']:>10}  {c['tokens_per_s']:>8}"
        )


if __name__ == "__main__":
    main()
