"""GPU smoke test: every CUDA-only path of rolechat once, on a random-init model with Qwen3-1.7B's shapes.

Nothing is downloaded. The script builds the model in a temporary folder (random weights, Qwen3-1.7B's
config: 28 layers, hidden 2048, GQA 16/8 heads of 128, vocab 151,936, tied embeddings) with a byte-level
BPE tokenizer of the full vocabulary size made in-process (256 bytes, then byte pairs, then byte triples,
plus Qwen's special tokens), and two random LoRA personas. Then, each check on its own (one failing
doesn't stop the others):

- bf16 and fp16: load through rolechat's runtime (`Runtime.load`, `llm.dtype`) and generate greedily;
- 4-bit and 8-bit: the same with `llm.quantization` (bitsandbytes), checking the layers are quantized;
- QLoRA: `rolechat train --qlora --max-steps 20 --save-steps 10` as a subprocess, interrupted (SIGINT)
  once checkpoint-10 is on disk; then `rolechat train --resume` finishes it from that checkpoint;
- merge: `rolechat merge` of a persona; the merged model's logits match base + adapter in the runtime;
- persona switching: one runtime, two adapters: their logits differ from each other and from the base,
  and the base logits are bit-identical after switching back.

It prints one table (check, result, seconds, peak GPU memory from torch.cuda.max_memory_allocated; for
subprocess checks the child's own peak) and exits 1 if any check failed, 2 without a CUDA GPU.

    python bench/gpu_smoke.py                  # one CUDA GPU; aims at < 5 minutes
    python bench/gpu_smoke.py --json           # the table as JSON
    python bench/gpu_smoke.py --device cpu --tiny   # same checks minus bitsandbytes, tiny model (tests use it)
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "examples" / "personas" / "cat.json"
SYSTEM = "你是一只名叫喵喵的猫娘，说话可爱，句尾常带“喵~”。"
PROMPT = [{"role": "user", "content": "你好，给我讲个故事吧。"}]
CLI_FLAG = "--run-cli"  # internal: run `rolechat ARGS...` in this process and write its peak GPU memory

# Qwen3-1.7B's config.json (the shapes that matter; weights are random).
QWEN3_1_7B = {
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 151936,
    "max_position_embeddings": 40960,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
TINY = {
    **QWEN3_1_7B,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "vocab_size": 4096,
    "max_position_embeddings": 2048,
}
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
# Qwen3's structure: ChatML, and an empty think block in the generation prompt when thinking is off.
QWEN3_TEMPLATE = (
    "{%- for m in messages -%}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}"
    "{%- if enable_thinking is defined and not enable_thinking -%}{{ '<think>\n\n</think>\n\n' }}{%- endif -%}"
    "{%- endif -%}"
)


@dataclass
class Result:
    check: str
    ok: bool | None  # None: skipped
    seconds: float
    peak_gpu_bytes: int | None
    detail: str

    @property
    def status(self) -> str:
        return "skip" if self.ok is None else "pass" if self.ok else "FAIL"


class CheckFailed(AssertionError):
    """A check ran but its result is wrong."""


class Skipped(Exception):
    """A check that doesn't apply here (bitsandbytes on CPU)."""


def need(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


# -- the model --------------------------------------------------------------------------------------------


def byte_bpe(vocab_size: int):
    """A byte-level BPE tokenizer with exactly `vocab_size` ids: bytes, byte pairs, byte triples, specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    regular = vocab_size - len(SPECIALS)
    vocab: dict[str, int] = {c: i for i, c in enumerate(alphabet)}
    merges: list[tuple[str, str]] = []
    pairs = ((a, b) for a in alphabet for b in alphabet)
    for a, b in pairs:
        if len(vocab) >= regular:
            break
        vocab[a + b] = len(vocab)
        merges.append((a, b))
    pair_tokens = [t for t in vocab if len(t) == 2]
    for ab in pair_tokens:
        for c in alphabet:
            if len(vocab) >= regular:
                break
            vocab[ab + c] = len(vocab)
            merges.append((ab, c))
        if len(vocab) >= regular:
            break
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[s for s in SPECIALS if s not in ("<|im_end|>", "<|endoftext|>")],
    )
    tok.chat_template = QWEN3_TEMPLATE
    if len(tok) != vocab_size:
        raise RuntimeError(f"tokenizer has {len(tok)} ids, expected {vocab_size}")
    return tok


def build_model(out: Path, shapes: dict, device: str) -> str:
    """Random-init Qwen3 model + tokenizer saved in `out`; returns a one-line description."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    tok = byte_bpe(shapes["vocab_size"])
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    cfg = AutoConfig.for_model(
        "qwen3", **shapes, bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    model.generation_config = GenerationConfig(
        max_new_tokens=32, do_sample=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    count = f"{params / 1e9:.2f}B" if params >= 1e9 else f"{params / 1e6:.2f}M"
    del model
    return f"{count} params, vocab {len(tok):,}, {str(dtype).replace('torch.', '')}, {size / 2**30:.2f} GiB"


def make_personas(base: Path, home: Path, device: str, names: tuple[str, ...]) -> None:
    """Random LoRA adapters (r 8, all linear layers, non-zero B) with their persona.json, one per name."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from rolechat.llm import PersonaManifest, fingerprint

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32 if device == "cpu" else torch.bfloat16)
    model.to(device)
    for seed, name in enumerate(names, 1):
        torch.manual_seed(seed)
        lora = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
        peft_model = get_peft_model(model, lora)
        out = home / "personas" / name
        peft_model.save_pretrained(out)
        PersonaManifest(
            name=name,
            display_name=name,
            system_prompt=SYSTEM,
            base_model=str(base.resolve()),
            base_fingerprint=fingerprint(model.config),
        ).save(out)
        model = peft_model.unload()
    del model


# -- the checks -------------------------------------------------------------------------------------------


class Smoke:
    def __init__(self, work: Path, device: str, tiny: bool, timeout: float) -> None:
        self.work, self.device, self.tiny, self.timeout = work, device, tiny, timeout
        self.model = work / "model"
        self.home = work / "home"
        self.results: list[Result] = []
        self.built = False
        steps = (30, 10) if tiny else (20, 10)  # a tiny model on CPU steps fast: leave room to interrupt it
        self.max_steps, self.save_steps = steps

    # -- running one check, timing it and measuring its peak GPU memory
    def run(self, name: str, fn: Callable[[], tuple[str, int | None] | str]) -> Result:
        import torch

        cuda = self.device == "cuda"
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        child_peak = None
        try:
            out = fn()
            detail, child_peak = out if isinstance(out, tuple) else (out, None)
            ok: bool | None = True
        except Skipped as exc:
            ok, detail = None, str(exc)
        except Exception as exc:  # each check stands alone: record it and go on
            ok = False
            detail = f"{type(exc).__name__}: {exc}".strip()
            if not isinstance(exc, CheckFailed):
                tb = traceback.extract_tb(exc.__traceback__)[-1]
                detail += f" ({Path(tb.filename).name}:{tb.lineno})"
        seconds = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated() if cuda else None  # this process, then the child's if higher
        if child_peak is not None:
            peak = max(peak or 0, child_peak)
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        result = Result(name, ok, round(seconds, 2), peak, detail)
        self.results.append(result)
        print(f"[{result.status}] {name} ({seconds:.1f} s): {detail}", file=sys.stderr, flush=True)
        return result

    def need_model(self) -> None:
        if not self.built:
            raise CheckFailed("no model: the build step failed")

    # -- building
    def build(self) -> str:
        self.model.mkdir(parents=True, exist_ok=True)
        detail = build_model(self.model, TINY if self.tiny else QWEN3_1_7B, self.device)
        make_personas(self.model, self.home, self.device, ("smoke_a", "smoke_b"))
        self.built = True
        return detail + "; personas smoke_a, smoke_b (random LoRA r 8)"

    # -- loading and generating through the runtime
    def _runtime(self, **overrides):
        from rolechat.llm import LLMConfig, Runtime

        return Runtime.load(LLMConfig(model=str(self.model), device=self.device, **overrides))

    def load_and_generate(self, dtype: str = "auto", quantization: str = "none") -> str:
        if quantization != "none" and self.device != "cuda":
            raise Skipped("bitsandbytes needs CUDA")
        self.need_model()
        if quantization != "none":
            import importlib.util

            if importlib.util.find_spec("bitsandbytes") is None:
                raise CheckFailed("bitsandbytes is not installed (pip install -r requirements.txt)")
        loaded = time.perf_counter()
        rt = self._runtime(dtype=dtype, quantization=quantization)
        load_s = time.perf_counter() - loaded
        try:
            if quantization == "none":
                need(rt.info.dtype == dtype, f"runtime reports dtype {rt.info.dtype}, asked for {dtype}")
            else:
                import bitsandbytes as bnb

                kind = bnb.nn.Linear4bit if quantization == "4bit" else bnb.nn.Linear8bitLt
                quantized = sum(isinstance(m, kind) for m in rt.base_model.modules())
                need(quantized >= 7 * (2 if self.tiny else 28), f"only {quantized} {kind.__name__} layers")
            need(rt.info.device.startswith(self.device), f"model on {rt.info.device}, expected {self.device}")
            need({"smoke_a", "smoke_b"} <= set(rt.persona_names()), f"personas not loaded: {rt.persona_names()}")
            stream = rt.stream(PROMPT, persona="smoke_a", params={"temperature": 0, "max_new_tokens": 24})
            text = stream.join()
            tokens = stream.stats.completion_tokens
            need(tokens > 0, "generated no tokens")
            again = rt.stream(PROMPT, persona="smoke_a", params={"temperature": 0, "max_new_tokens": 24}).join()
            need(again == text, "greedy generation is not deterministic")
            footprint = rt.base_model.get_memory_footprint() / 2**30
            return (
                f"load {load_s:.1f} s, weights {footprint:.2f} GiB, {tokens} tokens at "
                f"{stream.stats.tokens_per_second:.1f} tok/s with persona smoke_a"
            )
        finally:
            del rt

    # -- training through the CLI
    def _cli(self, peak_file: Path, *args: str) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve()), CLI_FLAG, str(peak_file), *args]

    def _env(self) -> dict[str, str]:
        return {**os.environ, "ROLECHAT_HOME": str(self.home), "ROLECHAT_LLM_MODEL": str(self.model)}

    def _child_peak(self, peak_file: Path) -> int | None:
        try:
            return int(peak_file.read_text())
        except (OSError, ValueError):
            return None

    def train_interrupted(self) -> tuple[str, int | None]:
        self.need_model()
        from rolechat import settings

        run = settings.runs_dir() / "smoke_trained"
        shutil.rmtree(run, ignore_errors=True)  # a --keep folder from an earlier run starts over
        shutil.rmtree(settings.personas_dir() / "smoke_trained", ignore_errors=True)
        args = ["train", "--data", str(DATA), "--persona", "smoke_trained", "--system", SYSTEM]
        args += ["--max-steps", str(self.max_steps), "--save-steps", str(self.save_steps)]
        args += ["--qlora"] if self.device == "cuda" else []
        peak_file = self.work / "peak-train.txt"
        log_path = self.work / "train.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                self._cli(peak_file, *args), cwd=ROOT, env=self._env(), stdout=log, stderr=subprocess.STDOUT
            )
            marker = run / f"checkpoint-{self.save_steps}" / "trainer_state.json"  # written last in a checkpoint
            deadline = time.monotonic() + self.timeout
            while proc.poll() is None and not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            interrupted = proc.poll() is None and marker.exists()
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                code = proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise CheckFailed("the run did not stop within 120 s of SIGINT") from None
        tail = log_path.read_text(errors="replace")[-600:]
        need(interrupted, f"never reached checkpoint-{self.save_steps} while running (exit {code}): {tail}")
        need(code == 130, f"exit code {code} after SIGINT, expected 130: {tail}")
        need("--resume" in tail, f"no resume hint after the interruption: {tail}")
        progress = [json.loads(line) for line in (run / "progress.jsonl").read_text().splitlines() if line.strip()]
        step = max((r.get("step", 0) for r in progress), default=0)
        need(step >= self.save_steps and step < self.max_steps, f"progress ends at step {step} of {self.max_steps}")
        mode = "QLoRA (4-bit NF4 base)" if self.device == "cuda" else "LoRA (fp32, CPU)"
        return f"{mode}: interrupted at step {step} of {self.max_steps}, exit 130", self._child_peak(peak_file)

    def train_resumed(self) -> tuple[str, int | None]:
        self.need_model()
        from rolechat import settings

        peak_file = self.work / "peak-resume.txt"
        out = subprocess.run(
            self._cli(peak_file, "train", "--persona", "smoke_trained", "--resume", "--json"),
            cwd=ROOT,
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=self.timeout,
        )
        need(out.returncode == 0, f"exit {out.returncode}: {out.stderr[-600:]}")
        metrics = json.loads(out.stdout[out.stdout.index("{") :])["metrics"]
        need(
            metrics.get("resumed_from") == f"checkpoint-{self.save_steps}",
            f"resumed from {metrics.get('resumed_from')!r}, expected checkpoint-{self.save_steps}",
        )
        need(metrics.get("steps") == self.max_steps, f"ended at step {metrics.get('steps')}, not {self.max_steps}")
        folder = settings.personas_dir() / "smoke_trained"
        need((folder / "adapter_config.json").is_file() and (folder / "persona.json").is_file(), "no persona folder")
        manifest = json.loads((folder / "persona.json").read_text(encoding="utf-8"))
        need(manifest.get("system_prompt") == SYSTEM, "the persona's system prompt was not kept across the resume")
        detail = (
            f"from checkpoint-{self.save_steps} to step {metrics['steps']}, "
            f"{metrics.get('tokens_per_s', 0):,} tokens/s, persona folder written"
        )
        return detail, self._child_peak(peak_file)

    # -- merging
    def merge(self) -> tuple[str, int | None]:
        self.need_model()
        import torch

        from rolechat.llm import load_model_and_tokenizer

        merged = self.work / "merged"
        shutil.rmtree(merged, ignore_errors=True)
        peak_file = self.work / "peak-merge.txt"
        out = subprocess.run(
            self._cli(peak_file, "merge", "--persona", "smoke_a", "--out", str(merged)),
            cwd=ROOT,
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=self.timeout,
        )
        need(out.returncode == 0, f"exit {out.returncode}: {(out.stderr or out.stdout)[-600:]}")
        rt = self._runtime(dtype="float32")
        try:
            ids = rt.encode(PROMPT, "smoke_a")
            with_adapter = rt.logits(PROMPT, "smoke_a")
            base = rt.logits(PROMPT, "base")
        finally:
            del rt
        gc.collect()
        model, _ = load_model_and_tokenizer(str(merged), device=self.device, dtype="float32")
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids], device=self.device)).logits[0, -1].float().cpu()
        del model
        adapter_effect = (with_adapter - base).abs().max().item()
        merge_error = (logits - with_adapter).abs().max().item()
        need(adapter_effect > 0, "the adapter does not change the logits")
        need(
            merge_error <= 0.1 * adapter_effect,
            f"merged logits differ from base+adapter by {merge_error:.4g} (adapter effect {adapter_effect:.4g})",
        )
        top2 = with_adapter.topk(2).values
        if (top2[0] - top2[1]).item() > 2 * merge_error:  # random weights: near-ties may flip on rounding alone
            need(int(logits.argmax()) == int(with_adapter.argmax()), "merged model picks another next token")
        detail = f"max |merged - base+adapter| {merge_error:.3g} vs adapter effect {adapter_effect:.3g}"
        return detail, self._child_peak(peak_file)

    # -- persona switching
    def switching(self) -> str:
        self.need_model()
        import torch

        rt = self._runtime(dtype="bfloat16" if self.device == "cuda" else "float32")
        try:
            base = rt.logits(PROMPT, "base")
            a = rt.logits(PROMPT, "smoke_a")
            b = rt.logits(PROMPT, "smoke_b")
            base_again = rt.logits(PROMPT, "base")
            a_again = rt.logits(PROMPT, "smoke_a")
            started = time.perf_counter()
            for persona in ("smoke_a", "smoke_b", "base") * 5:
                rt.logits(PROMPT[:1], persona)
            per_call = (time.perf_counter() - started) / 15 * 1000
        finally:
            del rt
        need(not torch.equal(a, base), "persona smoke_a gives the base model's logits")
        need(not torch.equal(a, b), "personas smoke_a and smoke_b give the same logits")
        need(torch.equal(base, base_again), "base logits changed after switching personas")
        need(torch.equal(a, a_again), "smoke_a's logits changed after switching away and back")
        return (
            f"base -> a -> b -> base -> a: base and a bit-identical on return, "
            f"max |a - base| {(a - base).abs().max().item():.3g}; {per_call:.1f} ms per switch + forward"
        )

    def all(self) -> list[Result]:
        self.run("build random-init model", self.build)
        self.run("load bf16 + generate", lambda: self.load_and_generate(dtype="bfloat16"))
        self.run("load fp16 + generate", lambda: self.load_and_generate(dtype="float16"))
        self.run("load 4-bit (bitsandbytes) + generate", lambda: self.load_and_generate(quantization="4bit"))
        self.run("load 8-bit (bitsandbytes) + generate", lambda: self.load_and_generate(quantization="8bit"))
        kind = "--qlora" if self.device == "cuda" else "(LoRA, CPU)"
        self.run(f"rolechat train {kind}, SIGINT after checkpoint", self.train_interrupted)
        self.run("rolechat train --resume", self.train_resumed)
        self.run("rolechat merge", self.merge)
        self.run("persona switching", self.switching)
        return self.results


# -- output -----------------------------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    def mem(n: int | None) -> str:
        return "-" if n is None else f"{n / 2**30:.2f} GiB"

    rows = [("check", "result", "seconds", "peak GPU mem", "detail")]
    rows += [(r.check, r.status, f"{r.seconds:.1f}", mem(r.peak_gpu_bytes), r.detail) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4])
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
    return "\n".join(lines)


def _run_cli(argv: list[str]) -> None:
    """`gpu_smoke.py --run-cli PEAK_FILE ARGS...`: `rolechat ARGS...`, then the child's peak GPU memory."""
    peak_file = Path(argv[0])

    def write_peak() -> None:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            peak_file.write_text(str(torch.cuda.max_memory_allocated()))

    atexit.register(write_peak)
    sys.argv = ["rolechat", *argv[1:]]
    from rolechat.cli import main as cli_main

    cli_main()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [CLI_FLAG]:
        _run_cli(argv[1:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model with the same structure (CPU runs)")
    ap.add_argument("--json", action="store_true", help="print the table as JSON")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per subprocess check")
    args = ap.parse_args(argv)

    try:
        import torch
    except ImportError as exc:
        print(f"gpu_smoke: torch is not importable ({exc}); install requirements.txt first", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_smoke: no CUDA GPU here (torch.cuda.is_available() is False). This script checks the CUDA-only "
            "paths; run it on a machine with one NVIDIA GPU, or use --device cpu --tiny for the same checks "
            "minus bitsandbytes on a tiny model.",
            file=sys.stderr,
        )
        return 2
    if args.device == "cpu" and not args.tiny:
        print("gpu_smoke: --device cpu needs --tiny (a 1.7B-shaped model on CPU takes far too long)", file=sys.stderr)
        return 2

    from transformers.utils import logging as hf_logging

    from rolechat.settings import set_offline_env

    set_offline_env()
    hf_logging.disable_progress_bar()
    for key in [k for k in os.environ if k.startswith(("ROLECHAT_LLM_", "ROLECHAT_TRAIN_"))]:
        del os.environ[key]  # the checks choose their own settings
    work = args.keep or Path(tempfile.mkdtemp(prefix="rolechat-gpu-smoke-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["ROLECHAT_HOME"] = str(work / "home")
    started = time.perf_counter()
    try:
        results = Smoke(work, args.device, args.tiny, args.timeout).all()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - started
    if args.json:
        device = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
        payload = {
            "device": device,
            "model": "tiny qwen3" if args.tiny else "random-init Qwen3-1.7B shapes",
            "seconds": round(total, 1),
            "checks": [{**asdict(r), "status": r.status} for r in results],
        }
        print(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        print(table(results))
        print(
            f"\n{sum(r.ok is True for r in results)} passed, {sum(r.ok is False for r in results)} failed, "
            f"{sum(r.ok is None for r in results)} skipped in {total:.0f} s"
        )
    return 1 if any(r.ok is False for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
