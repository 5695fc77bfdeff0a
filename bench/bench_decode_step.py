"""One batched decode step on the demo model, four ways: the base model alone, every row on one LoRA adapter, and
rows mixing the base with two adapters, by peft's `adapter_names` path and by llm/lora_batch.py's
matmuls (what `rolechat serve` runs when personas share a batch). With --profile, the operators the mixed steps
spend their time in.

    .venv/bin/python bench/bench_decode_step.py [--rows 32] [--prompt 60] [--steps 40] [--profile]

Each way is run twice, interleaved (the machine drifts); the prefill is one forward pass of all rows at once.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--prompt", type=int, default=60, help="prompt tokens per row")
    ap.add_argument("--steps", type=int, default=40, help="decode steps timed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()

    from rolechat.settings import set_process_env

    set_process_env()
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, DynamicCache

    from rolechat.llm import lora_batch
    from rolechat.llm.demo import demo_model_path
    from tests.app_support import make_adapter

    torch.set_num_threads(args.threads)
    base = demo_model_path()
    work = Path(tempfile.mkdtemp(prefix="rolechat-bench-step-"))
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    peft = PeftModel.from_pretrained(model, make_adapter(base, work / "a1", 1), adapter_name="a1")
    peft.load_adapter(make_adapter(base, work / "a2", 2), adapter_name="a2")
    rows, width = args.rows, args.prompt
    names = [["__base__", "a1", "a2"][i % 3] for i in range(rows)]

    def context(way: str):
        if way == "base":
            return peft.disable_adapter()
        if way == "per_row":
            return lora_batch.per_row(lora_batch.lora_layers(peft), names)
        return contextlib.nullcontext()

    def run(way: str) -> tuple[float, float]:
        torch.manual_seed(0)
        ids = torch.randint(100, 1000, (rows, width))
        extra = {"adapter_names": names} if way == "mixed" else {}
        peft.set_adapter("a1")
        with torch.inference_mode(), context(way):
            start = time.perf_counter()
            out = peft(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                past_key_values=DynamicCache(config=model.config),
                use_cache=True,
                logits_to_keep=1,
                **extra,
            )
            prefill = time.perf_counter() - start
            mask, last = torch.ones(rows, width), out.logits[:, -1].argmax(-1)
            start = time.perf_counter()
            for step in range(args.steps):
                mask = torch.cat([mask, torch.ones(rows, 1)], 1)
                out = peft(
                    input_ids=last[:, None],
                    attention_mask=mask,
                    position_ids=torch.full((rows, 1), width + step),
                    past_key_values=out.past_key_values,
                    use_cache=True,
                    **extra,
                )
                last = out.logits[:, -1].argmax(-1)
            return prefill, (time.perf_counter() - start) / args.steps

    print(f"demo model, {rows} rows, {width}-token prompts, {args.steps} decode steps, {args.threads} threads")
    print("| rows' adapters | prefill ms | decode step ms | tokens/s |\n|---|---|---|---|")
    labels = {
        "base": "none (base)",
        "single": "one adapter",
        "mixed": "base + 2 adapters mixed, peft's adapter_names",
        "per_row": "base + 2 adapters mixed, llm/lora_batch.py",
    }
    for way in ("base", "single", "mixed", "per_row") * 2:
        prefill, step = run(way)
        print(f"| {labels[way]} | {prefill * 1000:.1f} | {step * 1000:.2f} | {rows / step:.0f} |")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for way in ("mixed", "per_row"):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                run(way)
            print(labels[way])
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


if __name__ == "__main__":
    main()
