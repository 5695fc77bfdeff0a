"""Persona-training throughput on CPU: `rolechat train` vs the classic tutorial recipe vs LLaMA-Factory.

Same model (a ~5M-parameter Qwen2 built from a config, with a BPE tokenizer trained on the data), same data
(the first --examples records of huanhuan.json, same held-out split), same LoRA settings, learning rate,
schedule and optimizer steps per epoch (effective batch 8), one epoch each:

- rolechat: `rolechat train` with its defaults (random batches of 8 packed into rows of <= 512 tokens), run as
  a subprocess (`--train-args '--no-packing'` for length-grouped padded batches);
- recipe:   the classic tutorial setup: every example padded to 512 tokens, batch 1, gradient accumulation 8;
- llamafactory: `llamafactory-cli train` in its own venv (--lf-venv), batch 8, its fastest CPU settings
  (no gradient checkpointing, length-grouped sampling).

Reported: real (non-padding) tokens per second of training, padding fraction, and the held-out loss of
every resulting adapter measured by one function (finetune.model.evaluate_loss) on the same rows. With
several --seeds, rolechat and the recipe are compared seed by seed (each seed its own split, order and
LoRA init); --base trains on an existing model (e.g. the pretrained demo model) instead.

    python bench/bench_train.py --examples 1200 --lf-venv /tmp/lf-venv --json bench-train.json
    python bench/bench_train.py --examples 500 --seeds 1,2,3 --base llm/demo/model
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "huanhuan.json"
SYSTEM = "现在你要扮演皇帝身边的女人--甄嬛"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{%- for m in messages -%}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{%- endfor -%}{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)
LORA = {"rank": 8, "alpha": 32, "dropout": 0.1}
LR, BATCH, PAD_TO = 5e-4, 8, 512


def build_model(out: Path, records: list[dict]) -> Path:
    """A ~5M-parameter Qwen2 with a ChatML template and an 8k BPE vocabulary trained on the data."""
    if (out / "config.json").is_file():
        return out
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig, PreTrainedTokenizerFast

    lines = [r[k] for r in records for k in ("instruction", "output")] + [SYSTEM]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        lines,
        trainers.BpeTrainer(
            vocab_size=8000, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tok.chat_template = CHATML
    torch.manual_seed(0)
    cfg = AutoConfig.for_model(
        "qwen2",
        vocab_size=len(tok),
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    model = AutoModelForCausalLM.from_config(cfg)
    model.generation_config = GenerationConfig(
        max_new_tokens=64, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)
    print(f"built {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M-param model in {out}", file=sys.stderr)
    return out


def prepared_split(data: Path, model: Path, seed: int):
    """The held-out split `rolechat train --seed SEED` makes, rendered the same way."""
    from rolechat.finetune import TrainConfig
    from rolechat.finetune.trainer import prepare
    from rolechat.llm.config import LLMConfig

    return prepare(
        data, TrainConfig(eval_ratio=0.05, seed=seed, max_length=PAD_TO), LLMConfig(model=str(model)), system=SYSTEM
    )


def run_rolechat(data: Path, model: Path, home: Path, seed: int, extra: list[str] = ()) -> dict:
    env = {**os.environ, "ROLECHAT_HOME": str(home)}
    cmd = [
        sys.executable,
        "-m",
        "rolechat",
        "train",
        "--data",
        str(data),
        "--persona",
        "bench",
        "--base",
        str(model),
        "--system",
        SYSTEM,
        "--epochs",
        "1",
        "--batch-size",
        str(BATCH),
        "--grad-accum",
        "1",
        "--lr",
        str(LR),
        "--rank",
        str(LORA["rank"]),
        "--alpha",
        str(LORA["alpha"]),
        "--dropout",
        str(LORA["dropout"]),
        "--schedule",
        "linear",
        "--warmup-ratio",
        "0",
        "--eval-ratio",
        "0.05",
        "--seed",
        str(seed),
        "--max-length",
        str(PAD_TO),
        "--save-steps",
        "100000",
        "--logging-steps",
        "20",
        "--overwrite",
        "--json",
        *extra,
    ]
    print("$ " + " ".join(cmd), file=sys.stderr)
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"rolechat train failed:\n{out.stderr[-3000:]}")
    m = json.loads(out.stdout)["metrics"]
    return {
        "name": f"rolechat train ({' '.join(extra) or 'defaults: packed rows'}, batch 8)",
        "steps": m["steps"],
        "train_s": m["train_runtime_s"],
        "real_tokens": m["real_tokens"],
        "tokens_per_s": m["tokens_per_s"],
        "padding": m["padding_fraction"],
        "eval_loss": m["eval_loss_after"],
        "eval_loss_before": m["eval_loss_before"],
        "adapter": str(home / "personas" / "bench"),
    }


def run_recipe(prepared, model_dir: Path, out: Path, seed: int) -> dict:
    """The classic tutorial loop: pad every example to 512, batch 1, gradient accumulation 8, random order."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    pad = prepared.tokenizer.pad_token_id
    rows = [
        {
            "input_ids": e.input_ids + [pad] * (PAD_TO - len(e.input_ids)),
            "attention_mask": [1] * len(e.input_ids) + [0] * (PAD_TO - len(e.input_ids)),
            "labels": e.labels + [-100] * (PAD_TO - len(e.labels)),
        }
        for e in prepared.train
    ]
    collate = lambda batch: {k: torch.tensor([r[k] for r in batch]) for k in batch[0]}
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.use_cache = False
    torch.manual_seed(seed)
    model = get_peft_model(
        model,
        LoraConfig(
            r=LORA["rank"],
            lora_alpha=LORA["alpha"],
            lora_dropout=LORA["dropout"],
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        ),
    )
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=1,
        gradient_accumulation_steps=8,
        num_train_epochs=1,
        learning_rate=LR,
        lr_scheduler_type="linear",
        logging_steps=50,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=seed,
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_pin_memory=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate)
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    real = sum(len(e.input_ids) for e in prepared.train)
    model.save_pretrained(out / "adapter")
    row = {
        "name": "classic recipe (pad to 512, batch 1 x grad-accum 8)",
        "steps": result.global_step,
        "train_s": round(seconds, 2),
        "real_tokens": real,
        "tokens_per_s": round(real / seconds, 1),
        "padding": round(1 - real / (PAD_TO * len(rows)), 4),
        "adapter": str(out / "adapter"),
    }
    (out / "result.json").write_text(json.dumps(row))
    return row


def run_llamafactory(prepared, model_dir: Path, work: Path, venv: Path, seed: int = 42) -> dict:
    """LLaMA-Factory 0.9.x on the same training conversations, its fastest CPU settings, batch 8."""
    work.mkdir(parents=True, exist_ok=True)
    convs = {c.record: c for c in prepared.data.conversations}
    train_records = sorted({e.record for e in prepared.train})
    rows = [
        {
            "instruction": convs[r].messages[-2]["content"],
            "input": "",
            "output": convs[r].messages[-1]["content"],
            "system": SYSTEM,
        }
        for r in train_records
    ]
    (work / "huanhuan_train.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    (work / "dataset_info.json").write_text(
        json.dumps(
            {
                "huanhuan": {
                    "file_name": "huanhuan_train.json",
                    "columns": {"prompt": "instruction", "query": "input", "response": "output", "system": "system"},
                }
            }
        )
    )
    out = work / "out"
    yaml = {
        "model_name_or_path": str(model_dir),
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": LORA["rank"],
        "lora_alpha": LORA["alpha"],
        "lora_dropout": LORA["dropout"],
        "lora_target": "all",
        "dataset": "huanhuan",
        "dataset_dir": str(work),
        "template": "qwen",
        "cutoff_len": PAD_TO,
        "overwrite_cache": True,
        "preprocessing_num_workers": 1,
        "output_dir": str(out),
        "overwrite_output_dir": True,
        "logging_steps": 50,
        "save_strategy": "no",
        "plot_loss": False,
        "report_to": "none",
        "per_device_train_batch_size": BATCH,
        "gradient_accumulation_steps": 1,
        "learning_rate": LR,
        "num_train_epochs": 1.0,
        "lr_scheduler_type": "linear",
        "warmup_ratio": 0.0,
        "bf16": False,
        "fp16": False,
        "disable_gradient_checkpointing": True,
        "train_sampling_strategy": "group_by_length",
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": False,
        "seed": seed,
        "use_cpu": True,
    }
    cfg = work / "train.yaml"  # JSON is valid YAML; llamafactory-cli mis-reads .json configs (0.9.5)
    cfg.write_text(json.dumps(yaml, ensure_ascii=False, indent=1))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "DISABLE_VERSION_CHECK": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "WANDB_DISABLED": "true",
        "TOKENIZERS_PARALLELISM": "false",
    }
    cmd = [str(venv / "bin" / "llamafactory-cli"), "train", str(cfg)]
    print("$ " + " ".join(cmd), file=sys.stderr)
    proc = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"llamafactory-cli failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    results = json.loads((out / "all_results.json").read_text())
    real = sum(len(e.input_ids) for e in prepared.train)
    return {
        "name": "LLaMA-Factory 0.9.5 (batch 8, grouped, no grad. checkpointing)",
        "steps": json.loads((out / "trainer_state.json").read_text())["global_step"],
        "train_s": round(results["train_runtime"], 2),
        "real_tokens": real,
        "tokens_per_s": round(real / results["train_runtime"], 1),
        "padding": None,
        "adapter": str(out),
    }


def eval_adapters(prepared, model_dir: Path, rows: list[dict]) -> None:
    """Held-out loss of each adapter, measured the same way for all (token-weighted, supervised tokens only)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from rolechat.finetune.batching import ExampleDataset, PadCollator
    from rolechat.finetune.model import evaluate_loss

    held = ExampleDataset(prepared.eval).rows
    collator = PadCollator(prepared.tokenizer.pad_token_id)
    for row in rows:
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, row["adapter"])
        row["eval_loss"] = round(evaluate_loss(model, held, collator, 16), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=1200, help="first N records of huanhuan.json (0 = all)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/rolechat-bench-train"))
    ap.add_argument(
        "--base",
        type=Path,
        default=None,
        help="an existing model folder (e.g. llm/demo/model) instead of the random-init 5M model",
    )
    ap.add_argument(
        "--seeds",
        default="42",
        help="comma-separated seeds: each gives its own held-out split, data order and LoRA init, "
        "for rolechat and the recipe alike; LLaMA-Factory runs with the first only (every one with --lf-seeds)",
    )
    ap.add_argument("--lf-venv", type=Path, default=None, help="venv with llamafactory installed (skip if absent)")
    ap.add_argument(
        "--lf-seeds", action="store_true", help="run LLaMA-Factory with every seed (its split, order and init)"
    )
    ap.add_argument("--train-args", default="", help="extra `rolechat train` flags, e.g. '--packing'")
    ap.add_argument("--skip-recipe", action="store_true")
    ap.add_argument(
        "--reuse-recipe",
        action="store_true",
        help="reuse the recipe adapters (and timings) a previous run left in --work for the same seeds",
    )
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch/OpenMP threads for every run (1 avoids OpenMP spin-wait collapse on a busy machine)",
    )
    a = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(a.threads)
    if not DATA.is_file():
        raise SystemExit(f"{DATA} not found (the shared data folder is needed for this benchmark)")
    from rolechat.settings import set_offline_env

    set_offline_env()
    import torch

    torch.set_num_threads(a.threads)
    a.work.mkdir(parents=True, exist_ok=True)
    records = json.loads(DATA.read_text(encoding="utf-8"))
    subset = records[: a.examples] if a.examples else records
    data = a.work / "data.json"
    data.write_text(json.dumps(subset, ensure_ascii=False), encoding="utf-8")
    model = a.base.resolve() if a.base else build_model(a.work / "model-5m", records)
    seeds = [int(x) for x in a.seeds.split(",") if x.strip()]
    runs = []
    for n, seed in enumerate(seeds):
        prepared = prepared_split(data, model, seed)
        rows = [run_rolechat(data, model, a.work / f"home-{seed}", seed, a.train_args.split())]
        if not a.skip_recipe:
            saved = a.work / f"recipe-{seed}" / "result.json"
            if a.reuse_recipe and saved.is_file():
                rows.append(json.loads(saved.read_text()))
            else:
                rows.append(run_recipe(prepared, model, a.work / f"recipe-{seed}", seed))
        if (n == 0 or a.lf_seeds) and a.lf_venv and (a.lf_venv / "bin" / "llamafactory-cli").exists():
            try:
                rows.append(run_llamafactory(prepared, model, a.work / f"lf-{seed}", a.lf_venv, seed))
            except RuntimeError as exc:
                print(exc, file=sys.stderr)
        eval_adapters(prepared, model, rows)
        runs.append({"seed": seed, "train": len(prepared.train), "held_out": len(prepared.eval), "rows": rows})
        print(
            f"seed {seed}: " + ", ".join(f"{r['name'].split(' (')[0]} {r['eval_loss']}" for r in rows), file=sys.stderr
        )

    first = runs[0]
    head = (
        f"data: {first['train']} train / {first['held_out']} held-out examples of {data.name} "
        f"({a.examples or 'all'} records), model {model.name}, torch threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(head)
    print(f"seed {first['seed']}:")
    print("| run | steps | train s | real tokens/s | padding | held-out loss |")
    print("|---|---|---|---|---|---|")
    rows = first["rows"]
    ours = rows[0]["tokens_per_s"]
    for r in rows:
        pad = "-" if r["padding"] is None else f"{r['padding']:.1%}"
        speed = f"{r['tokens_per_s']:,.0f}" + ("" if r is rows[0] else f" (ours {ours / r['tokens_per_s']:.1f}x)")
        print(f"| {r['name']} | {r['steps']} | {r['train_s']} | {speed} | {pad} | {r['eval_loss']} |")
    print(f"held-out loss before training: {rows[0]['eval_loss_before']:.4f}")
    if len(runs) > 1 and not a.skip_recipe:
        print("\n| seed | held-out loss before | rolechat | recipe | rolechat - recipe | speed-up |")
        print("|---|---|---|---|---|---|")
        diffs = []
        for run in runs:
            ours_row, recipe_row = run["rows"][0], run["rows"][1]
            diffs.append(ours_row["eval_loss"] - recipe_row["eval_loss"])
            print(
                f"| {run['seed']} | {ours_row['eval_loss_before']:.4f} | {ours_row['eval_loss']:.4f} | "
                f"{recipe_row['eval_loss']:.4f} | {diffs[-1]:+.4f} | "
                f"{ours_row['tokens_per_s'] / recipe_row['tokens_per_s']:.1f}x |"
            )
        print(
            f"mean difference {sum(diffs) / len(diffs):+.4f} over {len(diffs)} seeds "
            f"(negative: rolechat's adapter has the lower held-out loss)"
        )
    against = [(run, next((r for r in run["rows"] if r["name"].startswith("LLaMA-Factory")), None)) for run in runs]
    if len(runs) > 1 and all(lf for _, lf in against):
        print("\n| seed | rolechat tokens/s | LLaMA-Factory tokens/s | speed-up | rolechat loss | LLaMA-Factory loss |")
        print("|---|---|---|---|---|---|")
        for run, lf in against:
            ours_row = run["rows"][0]
            print(
                f"| {run['seed']} | {ours_row['tokens_per_s']:,.0f} | {lf['tokens_per_s']:,.0f} | "
                f"{ours_row['tokens_per_s'] / lf['tokens_per_s']:.2f}x | {ours_row['eval_loss']:.4f} | "
                f"{lf['eval_loss']:.4f} |"
            )
    if a.json:
        a.json.write_text(json.dumps({"header": head, "runs": runs}, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
