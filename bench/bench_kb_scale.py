"""A knowledge base of 10k-300k chunks: the index's own cost (manifest, Chroma, BM25) and query latency, no embedding.

    .venv/bin/python bench/bench_kb_scale.py --chunks 10000 100000 [--queries 100] [--work DIR]
    .venv/bin/python bench/bench_kb_scale.py --chunks 300000 --chroma-server   # the vectors on a `chroma run` server

Embedding is the whole cost of a real index run on a CPU (~10 chunks/s with multilingual-e5-small on 2 cores),
so a 100k-chunk knowledge base takes hours to embed; this script leaves the embedder's model out and measures
everything else on the real code paths:

1. The self-llm corpus (../shared/data/corpus/self-llm, 295 files) is indexed once with `KnowledgeBase.index`
   and an embedder that is the real multilingual-e5-small tokenizer (chunk boundaries as in a real run) with
   random unit vectors (384 dimensions) in place of the model: read, split, jieba-tokenized, stored. Its time
   per chunk is reported (`split_tokenize_ms_per_chunk`: reading, splitting and the BM25 tokenizing, which
   grow linearly with the corpus) and its chunks are the base of every size.
2. For each size, in a fresh process: a knowledge base of that many chunks made of copies of the base
   chunks, each copy varied by a character substitution of its own (30 of the corpus's CJK characters mapped
   to others, in the text and its BM25 tokens alike) so every chunk differs and the vocabulary grows; stored
   with the indexer's own `_store` (vectors into the manifest, one Chroma upsert per group of ~256 chunks,
   manifest rows per file) and the BM25 index built from the manifest (`_sync_bm25`).
3. In another fresh process: the knowledge base opened from disk, BM25 loaded, and `--queries` questions
   asked with `KnowledgeBase.search` in bm25 and hybrid mode (k 5). The hybrid's query vector is a random
   unit vector, so the query's embedding (~10-20 ms with e5 on these cores) is not in the latency.
With `--chroma-server` the script starts a Chroma server (`chroma run`, data in the work folder) and every knowledge
base keeps its vectors there (`rag.chroma_url`), as the scale-out path does; the server's own resident memory
(current and peak, from /proc) is reported after the build and after the queries, and its data folder's size.
Resident memory is read from /proc: the growth when BM25 loads, and when Chroma's first query loads its
index; peak RSS of each process, and of the BM25 build alone (Linux's peak RSS reset before it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPUS = ROOT.parent / "shared" / "data" / "corpus" / "self-llm"
DIM = 384
QUESTIONS = [
    "如何用vLLM部署Qwen模型",
    "LoRA微调需要多少显存",
    "ChatGLM3接入LangChain搭建知识库",
    "怎么安装transformers和peft",
    "模型下载用modelscope还是huggingface",
    "FastApi部署调用",
    "WebDemo部署",
    "Lora微调的数据格式是什么样的",
    "bf16和fp16有什么区别",
    "如何设置max_new_tokens",
]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    """Start the process's peak RSS (VmHWM) again from its current RSS (Linux: clear_refs 5); False if it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_since_reset_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))


def unit_vectors(n: int, seed: int):
    import numpy as np

    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def fake_embedder():
    """multilingual-e5-small's tokenizer (counting, chunk sizes, known share) with random unit vectors."""
    from rolechat.rag.embedder import Embedder
    from rolechat.rag.embedder_spec import resolve_spec

    class RandomVectors(Embedder):
        parallel_calls = 1

        def embed_array(self, texts, single_thread=False, query=False):
            seed = int(hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:12], 16)
            return unit_vectors(len(texts), seed)

        def embed_documents(self, texts):
            return self.embed_array(texts).tolist()

        def embed_query(self, text):
            return self.embed_array([text], query=True)[0].tolist()

    return RandomVectors.from_spec(resolve_spec("", "auto"))


def rag_config():
    """The knowledge bases' settings: the defaults, with the vectors on the Chroma server when one is given."""
    from rolechat.rag import RAGConfig

    return RAGConfig(chroma_url=os.environ.get("BENCH_CHROMA_URL", ""))


def server_memory(pid: int) -> dict:
    """The Chroma server's resident memory now and at its peak (MB)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: round(int(fields[f].split()[0]) / 1024) for k, f in (("rss_mb", "VmRSS"), ("peak_rss_mb", "VmHWM"))}


def build_base(work: Path) -> dict:
    """Index the corpus once (random vectors); pickle its files and chunks for the sizes."""
    from rolechat.rag import KnowledgeBase

    kb = KnowledgeBase("base", rag_config(), embeddings=fake_embedder(), root=work)
    started = time.perf_counter()
    report = kb.index([CORPUS])
    seconds = time.perf_counter() - started
    files = kb.manifest.files()
    chunks = kb.manifest.chunks()
    by_file: dict[str, list] = {}
    for c in chunks:
        by_file.setdefault(c.path, []).append(c)
    chars = sorted({ch for c in chunks for ch in c.text if "\u4e00" <= ch <= "\u9fff"})
    with open(work / "base.pkl", "wb") as f:
        pickle.dump({"files": files, "chunks": by_file, "chars": chars}, f)
    kb.close()
    return {
        "base_files": len(files),
        "base_chunks": len(chunks),
        "base_index_s": round(seconds, 1),
        "split_tokenize_ms_per_chunk": round(seconds * 1000 / len(chunks), 2),
        "base_chunks_added": report.chunks_added,
    }


def build_size(work: Path, size: int) -> dict:
    """A knowledge base of `size` chunks: varied copies of the base, stored by the indexer's own code."""
    from dataclasses import replace

    from rolechat.rag import KnowledgeBase
    from rolechat.rag.knowledge_base import _FLUSH_CHUNKS, IndexReport, _Group

    with open(work / "base.pkl", "rb") as f:
        base = pickle.load(f)
    name = f"kb{size}"
    shutil.rmtree(work / name, ignore_errors=True)
    kb = KnowledgeBase(name, rag_config(), embeddings=fake_embedder(), root=work)
    report = IndexReport(name)
    kb._check_settings(report)
    kb.manifest.set(name=name, collection=kb.collection_name())
    chars, made, copy = base["chars"], 0, 0
    chroma_ids: set[str] = set()
    store_s, pending, pending_chunks = 0.0, [], 0

    def flush() -> None:
        nonlocal store_s, pending, pending_chunks
        if not pending:
            return
        keys = [c.vec_key for _, chunks, _ in pending for c in chunks]
        done: Future = Future()
        done.set_result(unit_vectors(len(keys), made))
        started = time.perf_counter()
        kb._store(_Group(pending, {}, [(keys, done)]), chroma_ids, report, lambda p: None)
        store_s += time.perf_counter() - started
        pending, pending_chunks = [], 0

    while made < size:
        rng = random.Random(copy)
        table = str.maketrans(dict(zip(rng.sample(chars, 30), rng.sample(chars, 30)))) if copy else {}
        for path, chunks in base["chunks"].items():
            if made >= size:
                break
            key = f"{path}#copy{copy}"
            chunks = chunks[: size - made]
            rows = []
            for c in chunks:
                text = c.text.translate(table)
                rows.append(
                    replace(
                        c,
                        id=hashlib.sha256(f"{key}\x00{c.location}\x00{text}".encode()).hexdigest()[:32],
                        path=key,
                        text=text,
                        tokens=c.tokens.translate(table),
                        vec_key=hashlib.sha256(text.encode()).hexdigest()[:32],
                    )
                )
            row = replace(base["files"][path], path=key, chunks=len(rows))
            pending.append((row, rows, "indexed"))
            pending_chunks += len(rows)
            made += len(rows)
            if pending_chunks >= _FLUSH_CHUNKS:
                flush()
        copy += 1
    flush()
    store_peak = peak_mb()
    rss_before = rss_mb()
    peak_reset = reset_peak()
    started = time.perf_counter()
    kb._sync_bm25(force=True, load=False)
    bm25_s = time.perf_counter() - started
    bm25_peak = peak_since_reset_mb() if peak_reset else None
    vocab = len(kb._bm25._vocab)
    kb.close()
    folders = {"chroma": work / "chroma-server" if os.environ.get("BENCH_CHROMA_URL") else work / name / "chroma"}
    folders["bm25"] = work / name / "bm25"
    disk = {
        part: round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20)
        for part, folder in folders.items()
    }
    disk["manifest"] = round(sum(p.stat().st_size for p in (work / name).glob("manifest.sqlite*")) / 2**20)
    return {
        "chunks": made,
        "copies": copy,
        "store_s": round(store_s, 1),
        "bm25_build_s": round(bm25_s, 1),
        "bm25_vocab": vocab,
        "disk_mb": disk,
        "build_peak_rss_mb": round(max(store_peak, bm25_peak or peak_mb())),
        "store_peak_rss_mb": round(store_peak),
        # the BM25 build's own peak (reading the manifest's rows, indexing, saving) over the RSS it started from
        "bm25_build_rss_before_mb": round(rss_before),
        "bm25_build_peak_rss_mb": round(bm25_peak) if bm25_peak is not None else None,
    }


def query_size(work: Path, size: int, queries: int) -> dict:
    """Open the knowledge base from disk and time `queries` questions in bm25 and hybrid mode."""
    from rolechat.rag import KnowledgeBase

    with open(work / "base.pkl", "rb") as f:
        base = pickle.load(f)
    rng = random.Random(7)
    headings = [c.headings.split(" > ")[-1] for cs in base["chunks"].values() for c in cs if c.headings]
    asked = (QUESTIONS + rng.sample(headings, max(0, queries - len(QUESTIONS))))[:queries]
    kb = KnowledgeBase(f"kb{size}", rag_config(), embeddings=fake_embedder(), root=work)
    kb.embeddings.tokenizer  # noqa: B018  (its load is not the index's)
    out: dict = {}
    rss0 = rss_mb()
    started = time.perf_counter()
    kb.bm25  # noqa: B018
    out["bm25_load_s"] = round(time.perf_counter() - started, 2)
    out["bm25_rss_mb"] = round(rss_mb() - rss0)
    rss1 = rss_mb()
    started = time.perf_counter()
    kb.search(asked[0], mode="dense")
    out["chroma_first_query_s"] = round(time.perf_counter() - started, 2)
    out["chroma_rss_mb"] = round(rss_mb() - rss1)
    for mode in ("bm25", "hybrid"):
        kb.search(asked[0], mode=mode)  # its first: the section starts are read once per index version
        times, found = [], 0
        for q in asked:
            started = time.perf_counter()
            docs = kb.search(q, mode=mode)
            times.append((time.perf_counter() - started) * 1000)
            found += bool(docs)
        times.sort()
        out[f"{mode}_p50_ms"] = round(statistics.median(times), 1)
        out[f"{mode}_p95_ms"] = round(times[int(len(times) * 0.95) - 1], 1)
        out[f"{mode}_answered"] = found
    out["query_peak_rss_mb"] = round(peak_mb())
    kb.close()
    return out


def child(args: list[str]) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    done = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(done.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--work", type=Path, default=None, help="folder for the knowledge bases (default: temporary)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--chroma-server", action="store_true", help="keep the vectors on a Chroma server it starts")
    parser.add_argument("--phase", choices=["base", "build", "query"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    from rolechat.settings import set_offline_env

    set_offline_env()
    if args.phase:
        work = args.work
        result = (
            build_base(work)
            if args.phase == "base"
            else build_size(work, args.chunks[0])
            if args.phase == "build"
            else query_size(work, args.chunks[0], args.queries)
        )
        print(json.dumps(result, ensure_ascii=False))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-kb-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    server = start_chroma(work) if args.chroma_server else None
    try:
        base = child(["--phase", "base", "--work", str(work)])
        print(json.dumps({"corpus": str(CORPUS), **base}, ensure_ascii=False), flush=True)
        for size in args.chunks:
            built = child(["--phase", "build", "--work", str(work), "--chunks", str(size)])
            if server:
                built["server_after_build"] = server_memory(server.pid)
            asked = child(
                ["--phase", "query", "--work", str(work), "--chunks", str(size), "--queries", str(args.queries)]
            )
            if server:
                asked["server_after_queries"] = server_memory(server.pid)
            print(json.dumps({**built, **asked}, ensure_ascii=False), flush=True)
            if not args.keep:
                shutil.rmtree(work / f"kb{size}", ignore_errors=True)
    finally:
        if server:
            server.terminate()
            server.wait(30)
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def start_chroma(work: Path) -> subprocess.Popen:
    """`chroma run` on a free loopback port, data in work/chroma-server; its URL goes to the children."""
    import socket

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    chroma = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    argv = [chroma, "run", "--path", str(work / "chroma-server"), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            sys.exit("the Chroma server did not start")
        time.sleep(0.2)
    os.environ["BENCH_CHROMA_URL"] = url  # the children inherit it
    return proc


if __name__ == "__main__":
    main()
