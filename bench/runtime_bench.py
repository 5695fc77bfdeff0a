"""Runtime benchmark: persona switch latency vs loading a fresh model with the adapter; TTFT and tokens/s.

    .venv/bin/python bench/runtime_bench.py [--model PATH] [--adapters 3] [--repeats 20] [--shape 0.5b] [--json]

Without --model it uses the built-in demo model. `--shape 0.5b` instead builds a randomly initialised model
with the layer shapes of Qwen2.5-0.5B (24 layers, hidden 896, MLP 4864; the demo tokenizer's small vocabulary)
and saves it to a temporary folder, so switching and loading are timed at a realistic depth and size.
Adapters are random LoRA adapters (rank 8, all-linear)
made for the benchmark in a temporary ROLECHAT_HOME. "Switch" is the time from a request naming another
persona to the model being ready for it: entering the runtime's persona context (peft `set_adapter`, or
`disable_adapter` for the base model) and leaving it, median of --repeats over a rotation of personas.
Forward passes right after a switch are reported beside it. "Fresh load" is what the classic scripts do:
load the base model and then the adapter with PeftModel.from_pretrained. "First token after a switch" is a
streamed reply (greedy) whose persona differs from the previous reply's, timed to its first token. Memory is the
process's resident set after the runtime loaded (the adapters are made before, in the same process) and the
adapters' own weights.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rolechat.settings import set_offline_env

set_offline_env()


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def rss_mb() -> float:
    """The resident set of this process now, in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_shaped(out: Path) -> str:
    """A random model with Qwen2.5-0.5B's layer shapes and the demo tokenizer (saved in fp32)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from rolechat.llm.demo import demo_model_path

    tok = AutoTokenizer.from_pretrained(demo_model_path())
    cfg = AutoConfig.for_model(
        "qwen2",
        vocab_size=len(tok),
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="")
    ap.add_argument("--adapters", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--shape", choices=["", "0.5b"], default="")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON line")
    args = ap.parse_args()
    os.environ["ROLECHAT_HOME"] = tempfile.mkdtemp(prefix="rolechat-bench-")

    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from rolechat import settings
    from rolechat.llm import LLMConfig, PersonaManifest, Runtime, fingerprint, resolve_model

    torch.set_num_threads(os.cpu_count() or 2)
    if args.shape:
        args.model = build_shaped(Path(os.environ["ROLECHAT_HOME"]) / "shaped-model")
    resolved = resolve_model(args.model or None, "")
    names = [f"p{i}" for i in range(args.adapters)]
    for i, name in enumerate(names):
        torch.manual_seed(i)
        base = AutoModelForCausalLM.from_pretrained(resolved.source, dtype=torch.float32)
        pm = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False))
        out = settings.personas_dir() / name
        pm.save_pretrained(out)
        PersonaManifest(name=name, base_model=resolved.model_id, base_fingerprint=fingerprint(base.config)).save(out)

    import gc

    gc.collect()
    rss_before = rss_mb()
    t = time.perf_counter()
    rt = Runtime.load(LLMConfig(model=args.model))
    startup = time.perf_counter() - t
    gc.collect()
    rss_loaded = rss_mb()
    adapter_mb = sum(p.numel() * p.element_size() for n, p in rt.model.named_parameters() if "lora_" in n) / 2**20
    msgs = [{"role": "user", "content": "你好，请介绍一下你自己。"}]
    rt.logits(msgs, "p0")  # warm-up

    same = median_time(lambda: rt.logits(msgs, "p0"), args.repeats)
    order = iter([names[(i + 1) % len(names)] for i in range(10 * args.repeats)] * 2)
    switched = median_time(lambda: rt.logits(msgs, next(order)), args.repeats)
    to_base = median_time(lambda: rt.logits(msgs, "base"), args.repeats)
    rotation = iter([*names, "base"] * (4 * args.repeats))

    def switch() -> None:
        with rt._persona_context(next(rotation)):
            pass

    switch_cost = median_time(switch, 4 * args.repeats)

    def fresh() -> None:
        base = AutoModelForCausalLM.from_pretrained(resolved.source, dtype=torch.float32)
        PeftModel.from_pretrained(base, str(settings.personas_dir() / "p1")).eval()

    fresh_load = median_time(fresh, max(3, args.repeats // 4))

    streams = []
    for _ in range(5):
        s = rt.stream(msgs, persona="base", params={"temperature": 0, "max_new_tokens": 64})
        s.join()
        streams.append(s.stats)
    ttft = statistics.median(s.time_to_first_token for s in streams)
    tps = statistics.median(s.tokens_per_second for s in streams)
    n_params = sum(p.numel() for p in rt.base_model.parameters())

    switched_streams = []  # each reply with another persona than the one before
    for i in range(args.repeats):
        s = rt.stream(msgs, persona=names[(i * 7 + 1) % len(names)], params={"temperature": 0, "max_new_tokens": 8})
        s.join()
        switched_streams.append(s.stats.time_to_first_token)
    ttft_switch = statistics.median(switched_streams)
    if args.json:
        print(
            json.dumps(
                {
                    "model": rt.info.model_id,
                    "params_m": round(n_params / 1e6, 1),
                    "adapters": args.adapters,
                    "startup_s": round(startup, 2),
                    "switch_ms": round(switch_cost * 1e3, 4),
                    "forward_same_ms": round(same * 1e3, 2),
                    "forward_switched_ms": round(switched * 1e3, 2),
                    "ttft_ms": round(ttft * 1e3, 1),
                    "ttft_switch_ms": round(ttft_switch * 1e3, 1),
                    "decode_tps": round(tps, 1),
                    "fresh_load_ms": round(fresh_load * 1e3, 1),
                    "rss_before_load_mb": round(rss_before),
                    "rss_loaded_mb": round(rss_loaded),
                    "adapter_weights_mb": round(adapter_mb, 2),
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                }
            )
        )
        return

    print(
        f"model: {rt.info.model_id} ({n_params / 1e6:.1f}M params, {rt.info.device}, {rt.info.dtype}); "
        f"{args.adapters} adapters; runtime start-up {startup:.2f} s"
    )
    print(f"forward pass, same persona (median):        {same * 1e3:8.2f} ms")
    print(f"forward pass, switched persona (median):    {switched * 1e3:8.2f} ms")
    print(f"forward pass, switched to base (median):    {to_base * 1e3:8.2f} ms")
    print(f"persona switch (set/disable adapter):       {switch_cost * 1e3:8.3f} ms")
    print(f"fresh load of base + adapter (median):      {fresh_load * 1e3:8.1f} ms")
    print(f"fresh load / switch:                        {fresh_load / max(switch_cost, 1e-9):8.0f}x")
    print(f"time to first token (median of 5):          {ttft * 1e3:8.1f} ms")
    print(f"greedy decode speed (median of 5, 64 tok):  {tps:8.1f} tokens/s")
    print(f"first token after a persona switch:         {ttft_switch * 1e3:8.1f} ms")
    print(f"resident set after loading (before):        {rss_loaded:8.0f} MB ({rss_before:.0f} MB)")
    print(f"adapter weights:                            {adapter_mb:8.2f} MB")


if __name__ == "__main__":
    main()
