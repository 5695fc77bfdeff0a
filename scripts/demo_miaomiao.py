"""Rebuild the shipped sample persona 喵喵 (llm/demo/personas/miaomiao) on the built-in demo model.

    python scripts/demo_miaomiao.py data     # examples/personas/cat_demo.json (deterministic for a given demo model)
    python scripts/demo_miaomiao.py train    # the adapter, from that file (about a minute on 2 cores)

Why not the hand-written examples/personas/cat.json: the demo model (4 layers, 5,000-token vocabulary) finds
those lines nearly unreadable (perplexity ~10,000 before training), and a LoRA adapter trained on 198 of them
learns the ending "喵~" and stitches fragments together around it: word salad (fluency_ratio 3,553). So the
persona's training replies are the demo model's OWN greedy replies to cat.json's prompts, under 喵喵's system
prompt (text the model says fluently), with the persona's habit added: the closing punctuation becomes "喵~".
The persona then speaks the base model's sentences with the cat's ending. Mixing in seeded samples that stay in
the cat's world, or cat.json's own lines, gave more cat and less language (fluency_ratio 62, docs/benchmarks.md).
Since the demo model's cat stages (llm/demo/README.md) those replies are a cat's own lines ending in 喵~, and cat.json's
lines are still unreadable to it (fluency_ratio 390 when trained on them, against 1.04 for this recipe).
`rolechat eval-persona --persona miaomiao --catchphrase 喵~ --json` measures the result (fluency_ratio,
catchphrase_share).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SOURCE = ROOT / "examples" / "personas" / "cat.json"
DATA = ROOT / "examples" / "personas" / "cat_demo.json"
OUT = ROOT / "llm" / "demo" / "personas" / "miaomiao"
SYSTEM = "你是一只名叫喵喵的小猫，说话可爱，每句话都以“喵~”结尾。"
TIC = "喵~"
TRAIN_ARGS = ["--epochs", "8", "--lr", "2e-3", "--rank", "16", "--alpha", "32", "--batch-size", "8", "--seed", "42"]


def with_tic(reply: str) -> str:
    """The reply with its closing punctuation replaced by the tic ("……吧。" -> "……吧喵~")."""
    body = reply.strip().rstrip("。！!？?~～，,、…. ")
    return (body[:-1] if body.endswith("喵") else body) + TIC


def make_data() -> None:
    os.environ.setdefault("ROLECHAT_HOME", tempfile.mkdtemp(prefix="rolechat-miaomiao-"))
    from rolechat.llm import LLMConfig, load_runtime

    rt = load_runtime(LLMConfig())
    records = json.loads(SOURCE.read_text(encoding="utf-8"))
    out = []
    for rec in records:
        prompt = rec["instruction"] + ("\n" + rec["input"] if rec.get("input") else "")
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        out.append({**rec, "output": with_tic(rt.chat(messages, params={"temperature": 0, "max_new_tokens": 80}))})
    DATA.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{DATA.relative_to(ROOT)}: {len(out)} records")


def train() -> None:
    cmd = [sys.executable, "-m", "rolechat", "train", "--data", str(DATA.relative_to(ROOT)), "--persona", "miaomiao"]
    cmd += ["--system", SYSTEM, "--display-name", "喵喵", "--out", str(OUT), "--overwrite", *TRAIN_ARGS]
    cmd += ["--description", "示例角色：说话以“喵~”结尾的小猫（训练在演示模型上）"]
    env = {**os.environ, "ROLECHAT_HOME": os.environ.get("ROLECHAT_HOME") or tempfile.mkdtemp(prefix="rolechat-")}
    print(" ".join(cmd))
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    portable()


def portable() -> None:
    """Training writes this machine's path to the base model and peft's generic README: the shipped folder names the
    demo model by its id, as the runtime resolves it anywhere."""
    config = OUT / "adapter_config.json"
    adapter = json.loads(config.read_text(encoding="utf-8"))
    adapter["base_model_name_or_path"] = "rolechat-demo"
    config.write_text(json.dumps(adapter, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (OUT / "README.md").unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["data", "train"])
    args = ap.parse_args()
    make_data() if args.step == "data" else train()


if __name__ == "__main__":
    main()
