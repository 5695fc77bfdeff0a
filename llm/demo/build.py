"""Builds the demo model from the project's own corpus: a byte-level BPE tokenizer, then a tiny Qwen2.

    python -m rolechat.llm.demo.build [--out DIR] [--steps N] [--seed S] [--threads T]
    python -m rolechat.llm.demo.build --base DIR --positions 2048 --block-size 1024 ...   # continue a built model

Training ids come from `llm.encoding.encode_turns`, the same path persona training and the runtime use,
so the demo model sees exactly the prompt ids it will get (including the empty think block the
runtime writes when thinking is off). Loss is on assistant replies plus `<|im_end|>` (and on the plain
prose), which is what teaches the model to stop. CPU, fp32, deterministic for a seed and thread count;
the weights are stored in fp16 to keep the shipped folder small (load with dtype=torch.float32).
`--base` continues training an already built demo model (its tokenizer and weights) with a longer context
(`--positions`, `--block-size`): how the shipped model learnt the app's long RAG prompts
(corpus/rag_dialogues.jsonl) on top of the chat model; `--other-share` keeps part of the chat corpus in the mix.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rolechat.llm.demo import DEMO_MODEL_ID, MARKER_FILE, SHIPPED_MODEL_DIR
from rolechat.llm.demo.dialogues import CORPUS_DIR

log = logging.getLogger(__name__)

RAG_FILE = "rag_dialogues.jsonl"  # the app's exact RAG prompt (written by scripts/demo_rag_dialogues.py)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{%- for m in messages -%}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}"
    "{%- if enable_thinking is defined and not enable_thinking -%}{{ '<think>\n\n</think>\n\n' }}{%- endif -%}"
    "{%- endif -%}"
)


QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass
class BuildSettings:
    """Sizes and schedule of the demo build (defaults: ~6 min on 2 CPU cores, ~9 MB of weights)."""

    steps: int = 500
    seed: int = 0
    vocab_size: int = 5000
    hidden_size: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 768
    block_size: int = 256
    batch_size: int = 8
    lr: float = 3e-3
    warmup: int = 30
    loss_on: str = "reply"  # "reply": assistant replies + <|im_end|> only; "all": every token
    thinking_off_rate: float = 0.8  # share of turns rendered as the runtime does by default (empty think block)
    threads: int = 0  # torch CPU threads; 0 = torch's default (1 is faster on a machine busy with other work)
    positions: int = 1024  # max_position_embeddings (RoPE: no parameters, so raising it costs nothing)
    base: str = ""  # continue training this built demo model (its tokenizer and weights) instead of from scratch
    other_share: float = 1.0  # share of the dialogues outside rag_dialogues.jsonl (and of the prose) trained on

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.loss_on not in ("reply", "all"):
            raise ValueError(f"loss_on must be 'reply' or 'all', got {self.loss_on!r}")
        if self.block_size > self.positions:
            raise ValueError(f"block_size ({self.block_size}) must be <= positions ({self.positions})")
        if not 0 < self.other_share <= 1:
            raise ValueError(f"other_share must be in (0, 1], got {self.other_share}")


def load_corpus(corpus_dir: Path = CORPUS_DIR) -> tuple[list[dict], list[str]]:
    """Dialogues from every *.jsonl (one {"messages": [...]} per line) and prose paragraphs from *.txt."""
    dialogues, prose = [], []
    for path in sorted(corpus_dir.glob("*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                item["messages"][0]["role"]
                item["rag"] = path.name == RAG_FILE
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise ValueError(f'{path}:{n}: not a {{"messages": [...]}} record ({exc})') from exc
            dialogues.append(item)
    for path in sorted(corpus_dir.glob("*.txt")):
        prose += [p.strip() for p in path.read_text(encoding="utf-8").splitlines() if p.strip()]
    if not dialogues:
        raise ValueError(f"no dialogues (*.jsonl) found in {corpus_dir}")
    return dialogues, prose


def train_tokenizer(texts: list[str], vocab_size: int, positions: int = 1024):
    """A byte-level BPE tokenizer with the ChatML special tokens and chat template (no default system)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    # Qwen2's own split, since AutoTokenizer loads this folder as a Qwen2Tokenizer that imposes it anyway.
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    # max_token_length (in bytes) stops merges into whole memorised sentences: at most ~3 CJK characters a token.
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        max_token_length=9,
    )
    bpe.train_from_iterator(texts, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        model_max_length=positions,
    )
    tok.chat_template = CHATML
    return tok


def _examples(tok, dialogues: list[dict], prose: list[str], cfg: BuildSettings) -> list[tuple[list[int], list[int]]]:
    from rolechat.llm.encoding import encode_turns, supervised_rows
    from rolechat.llm.templates import resolve_format

    fmt = resolve_format(tok)
    rng = random.Random(cfg.seed)
    out = []
    for d in dialogues:
        if not d.get("rag") and rng.random() >= cfg.other_share:
            continue
        thinking = rng.random() >= cfg.thinking_off_rate
        for row in supervised_rows(encode_turns(tok, fmt, d["messages"], enable_thinking=thinking)):
            ids = row.input_ids
            out.append((ids, list(ids) if cfg.loss_on == "all" else row.labels))
    for p in prose:
        if rng.random() >= cfg.other_share:
            continue
        ids = tok(p + tok.pad_token, add_special_tokens=False)["input_ids"]
        out.append((ids, list(ids)))
    return out


def _blocks(examples, block: int, rng: random.Random):
    """Pack shuffled examples into fixed-length blocks (an example never straddles two blocks)."""
    order = [i for i, (ids, _) in enumerate(examples) if len(ids) <= block]  # never cut off a reply
    rng.shuffle(order)
    ids_blocks, label_blocks, cur_ids, cur_labels = [], [], [], []
    for i in order:
        ids, labels = examples[i]
        if len(cur_ids) + len(ids) > block:
            pad = block - len(cur_ids)
            ids_blocks.append(cur_ids + [0] * pad)
            label_blocks.append(cur_labels + [-100] * pad)
            cur_ids, cur_labels = [], []
        cur_ids += ids
        cur_labels += labels
    return ids_blocks, label_blocks


def build(
    out_dir: str | Path = SHIPPED_MODEL_DIR,
    settings: BuildSettings | None = None,
    corpus_dir: Path = CORPUS_DIR,
    progress: bool = True,
    command: str = "python -m rolechat.llm.demo.build",
) -> Path:
    """Train tokenizer + model from the corpus and save them (with generation config and marker) to out_dir."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    cfg = settings or BuildSettings()
    out = Path(out_dir)
    t0 = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    dialogues, prose = load_corpus(corpus_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.base:  # continue a built model: same tokenizer and weights, longer context
        tok = AutoTokenizer.from_pretrained(cfg.base)
        tok.model_max_length = cfg.positions
        model = AutoModelForCausalLM.from_pretrained(
            cfg.base, dtype=torch.float32, max_position_embeddings=cfg.positions
        )
        mcfg = model.config
        mcfg.save_pretrained(out)
        tok.save_pretrained(out)
    else:
        texts = [m["content"] for d in dialogues for m in d["messages"]] + prose
        tok = train_tokenizer(texts, cfg.vocab_size, cfg.positions)
        mcfg = AutoConfig.for_model(
            "qwen2",
            vocab_size=len(tok),
            hidden_size=cfg.hidden_size,
            intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.layers,
            num_attention_heads=cfg.heads,
            num_key_value_heads=cfg.kv_heads,
            head_dim=cfg.hidden_size // cfg.heads,
            max_position_embeddings=cfg.positions,
            rope_theta=10000.0,
            tie_word_embeddings=True,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            bos_token_id=None,
            use_cache=True,
        )
        # Train on the tokenizer exactly as the runtime will load it (AutoTokenizer on the saved folder).
        mcfg.save_pretrained(out)
        tok.save_pretrained(out)
        tok = AutoTokenizer.from_pretrained(out)
        model = AutoModelForCausalLM.from_config(mcfg, dtype=torch.float32)
    examples = _examples(tok, dialogues, prose, cfg)
    n_tokens = sum(len(ids) for ids, _ in examples)
    log.info(
        "%d dialogues, %d prose lines -> %d examples, %d tokens, vocab %d",
        len(dialogues),
        len(prose),
        len(examples),
        n_tokens,
        len(tok),
    )
    long = sum(len(ids) > cfg.block_size for ids, _ in examples)
    if long:
        log.warning("%d examples longer than block_size %d are left out", long, cfg.block_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.05)

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))

    rng = random.Random(cfg.seed)
    ids_blocks, label_blocks = _blocks(examples, cfg.block_size, rng)
    cursor, epoch = 0, 0
    model.train()
    bar = tqdm(range(cfg.steps), desc="training demo model", disable=not progress, unit="step")
    for step in bar:
        if cursor + cfg.batch_size > len(ids_blocks):
            epoch += 1
            ids_blocks, label_blocks = _blocks(examples, cfg.block_size, rng)
            cursor = 0
        x = torch.tensor(ids_blocks[cursor : cursor + cfg.batch_size])
        y = torch.tensor(label_blocks[cursor : cursor + cfg.batch_size])
        cursor += cfg.batch_size
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = model(input_ids=x, labels=y, use_cache=False).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 10 == 0 or step == cfg.steps - 1:
            bar.set_postfix(loss=f"{loss.item():.3f}", epoch=epoch)
    model.eval()

    model.generation_config = GenerationConfig(
        do_sample=True,
        temperature=0.7,
        top_p=0.9,
        top_k=40,
        repetition_penalty=1.1,
        max_new_tokens=200,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model.to(torch.float16).save_pretrained(out)
    tok.save_pretrained(out)
    elapsed = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    marker = {
        "model_id": DEMO_MODEL_ID,
        "description": "rolechat's built-in demo model: a tiny Qwen2 trained from scratch on Chinese text the "
        "project wrote (llm/demo/corpus). For smoke tests and offline demos, not real use.",
        "built_with": command,
        "params": n_params,
        "train_tokens_per_epoch": n_tokens,
        "build_seconds": round(elapsed, 1),
        "torch": torch.__version__,
        "settings": asdict(cfg),
    }
    (out / MARKER_FILE).write_text(json.dumps(marker, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    log.info("saved demo model (%d params, final loss %.3f) to %s in %.0f s", n_params, loss.item(), out, elapsed)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="Build rolechat's demo model from llm/demo/corpus.")
    ap.add_argument("--out", type=Path, default=SHIPPED_MODEL_DIR, help="output folder (default: the shipped one)")
    ap.add_argument("--steps", type=int, default=BuildSettings.steps)
    ap.add_argument("--seed", type=int, default=BuildSettings.seed)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--positions", type=int, default=BuildSettings.positions, help="max_position_embeddings")
    ap.add_argument("--block-size", type=int, default=BuildSettings.block_size, help="training sequence length")
    ap.add_argument("--batch-size", type=int, default=BuildSettings.batch_size)
    ap.add_argument("--lr", type=float, default=BuildSettings.lr)
    ap.add_argument("--warmup", type=int, default=BuildSettings.warmup)
    ap.add_argument("--base", default="", help="continue training this built demo model instead of from scratch")
    ap.add_argument(
        "--other-share",
        type=float,
        default=BuildSettings.other_share,
        help="share of the non-RAG dialogues and prose trained on (e.g. 0.3 when continuing a model)",
    )
    ap.add_argument("--loss-on", choices=["reply", "all"], default=BuildSettings.loss_on)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    command = " ".join(["python -m rolechat.llm.demo.build", *(shlex.quote(a) for a in sys.argv[1:])])
    build(
        args.out,
        command=command,
        settings=BuildSettings(
            steps=args.steps,
            seed=args.seed,
            loss_on=args.loss_on,
            threads=args.threads,
            positions=args.positions,
            block_size=args.block_size,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup=args.warmup,
            base=str(args.base),
            other_share=args.other_share,
        ),
    )


if __name__ == "__main__":
    main()
