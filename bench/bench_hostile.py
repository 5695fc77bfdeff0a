"""Hostile input, at full size, through the commands users run: what each costs and how it ends.

.venv/bin/python bench/bench_hostile.py [--only index,cards,cli,api] [--bomb-mb 150]

In a fresh ROLECHAT_HOME (a temporary folder) it builds:
- docx bombs: `--bomb-mb` of document.xml in ~1.4 MB (ratio ~110, the shape of the issue's) and in ~2.3 MB
  (ratio ~65, under the bomb ratio but over rag.max_expanded_mb), a 2 KB JSON nested 1,000 deep and 10 good
  Markdown files, indexed with `rolechat index` (wall time, peak RSS, each file's outcome);
- character cards nested 100,000 deep (JSON and PNG) and one with `extensions` 900 deep, imported with
  `rolechat character import` (time, exit code, the error line, whether a traceback leaked);
- a card whose lorebook keys backtrack for hours on "aaa…!" (`/(a+)+$/`, `/(a|aa)+$/`, V3 `(x+x+)+y`), chatted
  with through `rolechat chat -m` and through `rolechat serve` with /health probed every 50 ms meanwhile; then
  SIGTERM to the server while a request backtracks with chat.lore_regex_timeout = 20 s.
Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROLECHAT = str(Path(sys.executable).with_name("rolechat"))
SLOW_MESSAGE = "a" * 47 + "!"


def docx_bomb(path: Path, megabytes: float, every: int) -> Path:
    """A real docx whose document.xml holds `megabytes` of short paragraphs, one in `every` a random number."""
    import docx

    base = io.BytesIO()
    document = docx.Document()
    document.add_paragraph("好的开头")
    document.save(base)
    source = zipfile.ZipFile(io.BytesIO(base.getvalue()))
    xml = source.read("word/document.xml").decode()
    head, tail = xml.split("<w:body>")
    cut = tail.rindex("<w:sectPr")
    rng = random.Random(0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for item in source.infolist():
            if item.filename != "word/document.xml":
                out.writestr(item, source.read(item.filename))
                continue
            with out.open(item.filename, "w", force_zip64=True) as f:
                f.write((head + "<w:body>" + tail[:cut]).encode())
                written = 0
                while written < megabytes * 1e6:
                    texts = (rng.randrange(10**8) if i % every == 0 else "炸弹炸弹" for i in range(2000))
                    block = "".join(f"<w:p><w:r><w:t>{t}</w:t></w:r></w:p>" for t in texts).encode()
                    f.write(block)
                    written += len(block)
                f.write(tail[cut:].encode())
    return path


def run(args: list[str], env: dict, timeout: float = 600) -> dict:
    """A rolechat command in its own process: wall time, peak RSS, exit code, the last stderr lines."""
    start = time.perf_counter()
    proc = subprocess.run([ROLECHAT, *args], env=env, capture_output=True, text=True, timeout=timeout)
    return {
        "seconds": round(time.perf_counter() - start, 2),
        "exit": proc.returncode,
        "traceback": "Traceback" in proc.stderr,
        "stderr": proc.stderr.strip().splitlines()[-3:],
        "stdout": proc.stdout,
        "err": proc.stderr,
    }


def peak_rss_mb(args: list[str], env: dict) -> tuple[dict, float]:
    """run() in a fresh interpreter that reports its child's peak RSS (getrusage of children is per process)."""
    code = (
        "import json, resource, subprocess, sys, time; s = time.perf_counter(); "
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "print(json.dumps({'exit': p.returncode, 'seconds': time.perf_counter() - s, 'stdout': p.stdout, "
        "'stderr': p.stderr, 'rss': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))"
    )
    out = json.loads(
        subprocess.run(
            [sys.executable, "-c", code, ROLECHAT, *args], env=env, capture_output=True, text=True, timeout=1200
        ).stdout
    )
    return out, out["rss"]


def bench_index(work: Path, env: dict, bomb_mb: float) -> None:
    docs = work / "docs"
    docs.mkdir()
    for i in range(10):
        (docs / f"好{i}.md").write_text(f"# 第{i}篇\n\n茶园第{i}号区域的开放时间和参观须知。\n", encoding="utf-8")
    (docs / "deep.json").write_text("[" * 1000 + "]" * 1000, encoding="utf-8")
    for name, every in (("bomb-110x.docx", 25), ("bomb-65x.docx", 12)):
        docx_bomb(docs / name, bomb_mb, every)
    sizes = {p.name: p.stat().st_size for p in docs.iterdir() if p.suffix == ".docx"}
    result, rss = peak_rss_mb(["index", str(docs), "--kb", "hostile", "--json"], env)
    report = json.loads(result["stdout"])
    outcomes = {Path(f["path"]).name: (f["status"], f["reason"]) for f in report["files"]}
    search = run(["search", "茶园第7号区域", "--kb", "hostile", "-k", "1", "--mode", "bm25", "--json"], env)
    top = Path(json.loads(search["stdout"])[0]["source"]).name
    print(
        json.dumps(
            {
                "bench": "index",
                "seconds": round(result["seconds"], 1),
                "peak_rss_mb": round(rss),
                "docx_bytes": sizes,
                "outcomes": outcomes,
                "search_top": top,
            },
            ensure_ascii=False,
        )
    )


def bench_cards(work: Path, env: dict) -> None:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    deep = '{"name": "深", "data": ' + "[" * 100_000 + "]" * 100_000 + "}"
    (work / "deep100k.json").write_text(deep, encoding="utf-8")
    info = PngInfo()
    info.add_text("chara", base64.b64encode(deep.encode()).decode())
    Image.new("RGB", (64, 64)).save(work / "deep100k.png", pnginfo=info)
    extensions = '{"spec": "chara_card_v2", "data": {"name": "深", "extensions": ' + '{"a": ' * 900 + "{}" + "}" * 900
    (work / "ext900.json").write_text(extensions + "}}", encoding="utf-8")
    for name in ("deep100k.json", "deep100k.png", "ext900.json"):
        result = run(["character", "import", str(work / name)], env)
        shown = {k: v for k, v in result.items() if k not in ("stdout", "err")}
        print(json.dumps({"bench": "card", "file": name, **shown}, ensure_ascii=False))


def slow_card(work: Path, env: dict, name: str, keys: list[str]) -> None:
    entries = [
        {"keys": [k], "content": f"设定{i}", "comment": f"条目{i}", "use_regex": not k.startswith("/")}
        for i, k in enumerate(keys)
    ]
    entries.append({"keys": ["!"], "content": "叹号设定", "comment": "叹号"})
    card = {
        "spec": "chara_card_v3",
        "spec_version": "3.0",
        "data": {"name": name, "first_mes": "你好。", "character_book": {"entries": entries}},
    }
    path = work / f"{name}.json"
    path.write_text(json.dumps(card, ensure_ascii=False), encoding="utf-8")
    imported = run(["character", "import", str(path)], env)
    assert imported["exit"] == 0, imported


def bench_cli(work: Path, env: dict) -> None:
    slow_card(work, env, "slowcli", ["/(a+)+$/", "/(a|aa)+$/", "(x+x+)+y"])
    base = ["chat", "--persona", "slowcli", "--max-new-tokens", "8", "--show-prompt", "-m"]
    for message in ("你好", SLOW_MESSAGE):
        result = run([*base, message], env)
        notice = "chat.lore_regex_timeout" in result["err"]  # the notice in what the model saw
        print(
            json.dumps(
                {
                    "bench": "cli-chat",
                    "message": message,
                    "seconds": result["seconds"],
                    "exit": result["exit"],
                    "notice": notice,
                    "traceback": result["traceback"],
                },
                ensure_ascii=False,
            )
        )


def _serve(env: dict, port: int, timeout: float) -> subprocess.Popen:
    import httpx

    env = {**env, "ROLECHAT_CHAT_LORE_REGEX_TIMEOUT": str(timeout), "ROLECHAT_CHAT_LORE_SCAN_SECONDS": "60"}
    proc = subprocess.Popen(
        [ROLECHAT, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.3)
    raise RuntimeError("rolechat serve did not start")


def _probed(url: str, action) -> tuple[object, list[float]]:
    """action() while /health is probed every 50 ms; (its result, the probes' latencies)."""
    import httpx

    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                start = time.perf_counter()
                client.get(url + "/health")
                latencies.append(time.perf_counter() - start)
                time.sleep(0.05)

    thread = threading.Thread(target=probe)
    thread.start()
    try:
        return action(), latencies
    finally:
        stop.set()
        thread.join()


def bench_api(work: Path, env: dict) -> None:
    import httpx

    slow_card(work, env, "slowapi", ["/(a+)+$/", "/(a|aa)+$/", "(x+x+)+y"])
    slow_card(work, env, "slowapi2", ["/(aa|a)+$/"])
    for timeout, model in ((0.25, "slowapi"), (20.0, "slowapi2")):
        port = 8700 + int(timeout)
        proc, url = _serve(env, port, timeout), f"http://127.0.0.1:{port}"
        body = {"model": model, "messages": [{"role": "user", "content": SLOW_MESSAGE}], "max_tokens": 8}

        def chat(body=body, url=url) -> float:
            start = time.perf_counter()
            assert httpx.post(url + "/v1/chat/completions", json=body, timeout=120).status_code == 200
            return time.perf_counter() - start

        if timeout < 1:
            seconds, latencies = _probed(url, chat)
            proc.terminate()
            proc.wait(timeout=60)
            print(
                json.dumps(
                    {
                        "bench": "api-chat",
                        "lore_regex_timeout": timeout,
                        "chat_seconds": round(seconds, 2),
                        "health_probes": len(latencies),
                        "health_max_ms": round(max(latencies) * 1000),
                    }
                )
            )
            continue
        threading.Thread(target=lambda: _quiet(chat), daemon=True).start()
        _, latencies = _probed(url, lambda: time.sleep(4))  # the request backtracks meanwhile
        start = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        print(
            json.dumps(
                {
                    "bench": "api-sigterm",
                    "lore_regex_timeout": timeout,
                    "health_probes": len(latencies),
                    "health_max_ms": round(max(latencies) * 1000),
                    "exit": code,
                    "sigterm_to_exit_s": round(time.perf_counter() - start, 2),
                }
            )
        )


def _quiet(action) -> None:
    try:
        action()
    except Exception:  # the server is stopped under it on purpose
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="index,cards,cli,api")
    parser.add_argument("--bomb-mb", type=float, default=150.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rolechat-hostile-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "ROLECHAT_HOME": str(work / "home")}
        wanted = set(args.only.split(","))
        if "index" in wanted:
            bench_index(work, env, args.bomb_mb)
        if "cards" in wanted:
            bench_cards(work, env)
        if "cli" in wanted:
            bench_cli(work, env)
        if "api" in wanted:
            bench_api(work, env)


if __name__ == "__main__":
    main()
