"""Builds the demo model from the project's own corpus: a byte-level BPE tokenizer, then a tiny Qwen2.

    python -m rolechat.llm.demo.build [--out DIR] [--steps N] [--seed S] [--threads T]
    python -m rolechat.llm.demo.build --base DIR --loss-on reply ...   # continue a built model

Training ids come from `llm.encoding.encode_turns`, the same path persona training and the runtime use,
so the demo model sees exactly the prompt ids it will get (including the empty think block the
runtime writes when thinking is off). Loss is on every token by default (`--loss-on all`: copying names
within the RAG passages trains the copying the answers need) or on assistant replies plus `<|im_end|>` only
(`--loss-on reply`); the reply's `<|im_end|>` is what teaches the model to stop. Each example is its own row
in batches of similar lengths (`--batch-tokens`). CPU, fp32, deterministic for a seed and thread count;
the weights are stored in fp16 to keep the shipped folder small (load with dtype=torch.float32).
`--base` continues training an already built demo model (its tokenizer and weights) with a longer context
(`--positions`, `--block-size`): how the shipped model learnt the app's long RAG prompts
(corpus/rag_dialogues.jsonl) on top of the chat model; `--other-share` keeps part of the chat corpus in the mix,
`--synthetic-share` part of the invented-document RAG prompts, `--save-every N` saves along the way.
`--add-chars N` (with `--base`) gives the N most common Chinese characters and every character of the corpus
their own token: merges appended to the base's tokenizer, new embeddings started from the byte tokens they join;
`--add-chars-of FILE...` does the same for the characters of some files only (the cat chats: 喵, 爪, 蹭, ...).
`--device cuda` trains any stage on a GPU (not measured here: no GPU; only CPU runs are bit-reproducible).
`--deepen N` (with `--base`) inserts N copies after each layer, their output projections zero, so the deeper
model starts out computing what the base did.
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
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rolechat.llm.demo.chars import common_chars, is_han
from rolechat.llm.demo.layout import CORPUS_DIR, DEMO_MODEL_ID, MARKER_FILE, SHIPPED_MODEL_DIR

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

RAG_FILES = ("rag_dialogues.jsonl", "rag_knowledge.jsonl")  # the app's exact RAG prompt (scripts/demo_rag_dialogues.py)
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
    """Sizes and schedule of the demo build (defaults: 3.8M parameters, 7.6 MB of fp16 weights, 500 steps)."""

    steps: int = 500
    seed: int = 0
    vocab_size: int = 8000
    token_bytes: int = 3  # longest token in bytes: 3 = one Chinese character, never two
    hidden_size: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 640
    block_size: int = 1280  # longest example trained on (tokens)
    batch_tokens: int = 3072  # padded tokens per batch (examples of similar length are batched together)
    lr: float = 3e-3
    warmup: int = 30
    loss_on: str = "all"  # "all": every token (copying names within a passage teaches copying); "reply": replies only
    thinking_off_rate: float = 0.8  # share of turns rendered as the runtime does by default (empty think block)
    threads: int = 0  # torch CPU threads; 0 = torch's default (1 is faster on a machine busy with other work)
    positions: int = 2048  # max_position_embeddings (RoPE: no parameters, so raising it costs nothing)
    base: str = ""  # continue training this built demo model (its tokenizer and weights) instead of from scratch
    other_share: float = 1.0  # share of the dialogues outside rag_dialogues.jsonl (and of the prose) trained on
    synthetic_share: float = 1.0  # share of the invented-document RAG dialogues trained on (all train the tokenizer)
    save_every: int = 0  # also save the model every N steps (0: only at the end)
    context_weight: float = 1.0  # with loss_on "all": weight of the prompt tokens' loss next to the replies' (1.0)
    curriculum_steps: int = 0  # the first N steps train only on examples of at most curriculum_len tokens
    curriculum_len: int = 512
    copy_share: float = 0.0  # add this many (x the examples) copy drills: a random character sequence, then again
    extra: tuple[str, ...] = ()  # more dialogue files (jsonl) trained as RAG dialogues, e.g. another seed's set
    drills: int = 0  # with base: train N steps on copy drills only (the induction stage), no corpus
    add_chars: int = 0  # with base: give the N most common Chinese characters, and the corpus's, their own token
    add_chars_of: tuple[str, ...] = ()  # with base: give every Chinese character of these corpus files its own token
    deepen: int = 0  # with base: after each layer, N copies of it whose output projections start at zero
    device: str = "cpu"  # "cuda" or "cuda:N": train on an accelerator (fp32 still; CPU runs stay bit-reproducible)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.loss_on not in ("reply", "all"):
            raise ValueError(f"loss_on must be 'reply' or 'all', got {self.loss_on!r}")
        if self.block_size > self.positions:
            raise ValueError(f"block_size ({self.block_size}) must be <= positions ({self.positions})")
        if not 0 < self.other_share <= 1:
            raise ValueError(f"other_share must be in (0, 1], got {self.other_share}")
        if self.token_bytes < 1 or self.batch_tokens < 1 or self.save_every < 0:
            raise ValueError(
                f"token_bytes and batch_tokens must be >= 1 and save_every >= 0, got {self.token_bytes}, "
                f"{self.batch_tokens}, {self.save_every}"
            )
        if not 0 < self.synthetic_share <= 1:
            raise ValueError(f"synthetic_share must be in (0, 1], got {self.synthetic_share}")
        if not 0 <= self.copy_share <= 2:
            raise ValueError(f"copy_share must be in [0, 2], got {self.copy_share}")
        if not 0 <= self.context_weight <= 1:
            raise ValueError(f"context_weight must be in [0, 1], got {self.context_weight}")
        for name, verb in (("add_chars", "extend"), ("deepen", "deepen"), ("drills", "drill")):  # stages on a base
            n = getattr(self, name)
            if n < 0 or (n and not self.base):
                raise ValueError(f"{name} must be >= 0 and needs base (a built model to {verb}), got {n}")
        if self.add_chars_of and not self.base:
            raise ValueError("add_chars_of needs base (a built model to extend)")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.curriculum_steps < 0 or self.curriculum_len < 1:
            raise ValueError(
                f"curriculum_steps must be >= 0 and curriculum_len >= 1, got {self.curriculum_steps}, "
                f"{self.curriculum_len}"
            )


def load_corpus(corpus_dir: Path = CORPUS_DIR, extra: tuple[str, ...] = ()) -> tuple[list[dict], list[str]]:
    """Dialogues from every *.jsonl (one {"messages": [...]} per line) and prose paragraphs from *.txt.

    `extra` files are read as RAG dialogues (e.g. `scripts/demo_rag_dialogues.py --seed 1 --out FILE`).
    """
    dialogues, prose = [], []
    for path in [*sorted(corpus_dir.glob("*.jsonl")), *map(Path, extra)]:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                item["messages"][0]["role"]
                item["rag"] = path.name in RAG_FILES or str(path) in extra
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise ValueError(f'{path}:{n}: not a {{"messages": [...]}} record ({exc})') from exc
            dialogues.append(item)
    for path in sorted(corpus_dir.glob("*.txt")):
        prose += [p.strip() for p in path.read_text(encoding="utf-8").splitlines() if p.strip()]
    if not dialogues:
        raise ValueError(f"no dialogues (*.jsonl) found in {corpus_dir}")
    return dialogues, prose


def train_tokenizer(texts: list[str], vocab_size: int, positions: int = 1024, token_bytes: int = 3):
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
    # max_token_length (in bytes): 3 makes every Chinese character of the training text ONE token and never merges
    # two (a character is 3 UTF-8 bytes), so a span copied from a passage is tokenized exactly as in the passage
    # and no character is ever split into byte tokens unless it never occurs in the training text.
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        max_token_length=token_bytes + 1,  # the trainer keeps tokens strictly shorter than this
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


def extend_tokenizer(folder: Path, chars: Iterable[str]) -> dict[int, list[int]]:
    """Give every character of `chars` its own token in the byte-level BPE tokenizer saved in `folder`.

    A character the tokenizer splits into byte tokens gets merges that join its pieces left to right, appended
    after all existing merges: BPE applies merges by rank, so text the old merges already join (什么, 门票's
    门) is tokenized as before, and only characters left in byte pieces change. Returns {new id: the old ids
    it stands for}, to start each new embedding at the mean of what it replaces (see `_grow_embeddings`).
    """
    from tokenizers import Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    path = folder / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    old = Tokenizer.from_file(str(path))
    byte = bytes_to_unicode()
    vocab: dict[str, int] = data["model"]["vocab"]
    merges: list = data["model"]["merges"]
    as_pairs = not merges or isinstance(merges[0], list)  # tokenizers writes [a, b]; older files "a b"
    known = {tuple(m) if as_pairs else tuple(m.split(" ", 1)) for m in merges}
    next_id = max([*vocab.values(), *(t["id"] for t in data.get("added_tokens", []))]) + 1
    parts: dict[str, list[int]] = {}  # a token made here -> the old ids it joins
    for ch in dict.fromkeys(chars):
        if "".join(byte[b] for b in ch.encode("utf-8")) in vocab:
            continue
        pieces = [old.id_to_token(i) for i in old.encode(ch, add_special_tokens=False).ids]
        acc = pieces[0]
        for nxt in pieces[1:]:
            joined = acc + nxt
            if joined not in vocab:
                vocab[joined] = next_id
                parts[joined] = parts.get(acc, [vocab[acc]]) + parts.get(nxt, [vocab[nxt]])
                next_id += 1
            if (acc, nxt) not in known:
                merges.append([acc, nxt] if as_pairs else f"{acc} {nxt}")
                known.add((acc, nxt))
            acc = joined
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return {vocab[token]: ids for token, ids in parts.items()}


def _grow_embeddings(model, made: dict[int, list[int]], size: int) -> None:
    """Resize the (tied) embeddings to `size` rows; each new row starts as the mean of the rows it replaces."""
    import torch

    model.resize_token_embeddings(size, mean_resizing=False)
    emb = model.get_input_embeddings().weight
    with torch.no_grad():
        for new, old in made.items():
            emb[new] = emb[old].mean(0)


def _device(cfg: BuildSettings):
    """The torch device to train on; a clear error when CUDA was asked for and there is none."""
    import torch

    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--device {cfg.device}: torch sees no CUDA GPU here (torch.cuda.is_available() is False)")
    return torch.device(cfg.device)


def deepen(model, copies: int) -> None:
    """Give the model (1 + copies) times its layers: after each layer, `copies` copies of it whose attention and
    MLP output projections are zero. A zero output adds nothing to the residual stream, so the deeper model
    computes exactly what the base did, and training starts from the base's answers with room to grow."""
    import copy

    import torch

    layers = torch.nn.ModuleList()
    for layer in model.model.layers:
        layers.append(layer)
        for _ in range(copies):
            twin = copy.deepcopy(layer)
            torch.nn.init.zeros_(twin.self_attn.o_proj.weight)
            torch.nn.init.zeros_(twin.mlp.down_proj.weight)
            layers.append(twin)
    for i, layer in enumerate(layers):
        layer.self_attn.layer_idx = i  # the KV cache is indexed by layer
    model.model.layers = layers
    model.config.num_hidden_layers = len(layers)
    model.config.layer_types = [model.config.layer_types[0]] * len(layers)


def _texts(dialogues: list[dict], prose: list[str]) -> list[str]:
    """Every message and prose line of the corpus: what the tokenizer is trained on."""
    return [m["content"] for d in dialogues for m in d["messages"]] + prose


def _chars_to_add(texts: list[str], n: int) -> list[str]:
    """The n most common characters (jieba's counts), then every other character of the training text."""
    seen = Counter(ch for t in texts for ch in t if is_han(ch))
    return [*common_chars(n), *(ch for ch, _ in seen.most_common())]


def _examples(tok, dialogues: list[dict], prose: list[str], cfg: BuildSettings) -> list[tuple[list[int], list[int]]]:
    from rolechat.llm.encoding import encode_turns, supervised_rows
    from rolechat.llm.templates import resolve_format

    fmt = resolve_format(tok)
    rng = random.Random(cfg.seed)
    out = []
    for d in dialogues:
        always = d.get("rag") or d.get("card") or d.get("cat")  # card: chats under cards; cat: cats.py's chats
        if not always and rng.random() >= cfg.other_share:
            continue
        if d.get("synthetic") and rng.random() >= cfg.synthetic_share:
            continue
        thinking = rng.random() >= cfg.thinking_off_rate
        for row in supervised_rows(encode_turns(tok, fmt, d["messages"], enable_thinking=thinking)):
            out.append((row.input_ids, row.labels))  # labels: the reply tokens (and <|im_end|>), -100 elsewhere
    for p in prose:
        if rng.random() >= cfg.other_share:
            continue
        ids = tok(p + tok.pad_token, add_special_tokens=False)["input_ids"]
        out.append((ids, list(ids)))
    out += _copy_drills(tok, int(cfg.copy_share * len(out)), rng)
    return out


def _copy_drills(tok, n: int, rng: random.Random) -> list[tuple[list[int], list[int]]]:
    """Induction drills: random Chinese characters, a newline, the same characters again (loss on the repeat).

    Nothing but attention to the first copy predicts the second, so these teach the copying circuit
    (find where the current text occurred before, continue from there) that answering from passages
    needs, far sooner than the passages alone do.
    """
    if n <= 0:
        return []
    han, newline = _drill_vocab(tok)
    out = []
    for _ in range(n):
        ids, labels = _drill_row(han, newline, rng.randint(8, 160), rng)
        out.append((ids + [tok.pad_token_id], labels + [tok.pad_token_id]))
    return out


def _drill_vocab(tok) -> tuple[list[int], list[int]]:
    """What drills are made of: the ids of the tokens that are one Chinese character each, and a newline's ids."""
    han = sorted(i for i in tok.get_vocab().values() if len(d := tok.decode([i])) == 1 and is_han(d))
    return han, tok("\n", add_special_tokens=False)["input_ids"]


def _drill_row(han: list[int], newline: list[int], n: int, rng: random.Random) -> tuple[list[int], list[int]]:
    """One drill: n random characters, a newline, the same characters; labels -100 but on the repeat."""
    seq = [rng.choice(han) for _ in range(n)]
    return seq + newline + seq, [-100] * (n + len(newline)) + seq


DRILL_LENGTHS = (16, 64)  # characters in one drill of the drill stage; every row of a batch has the same length
DRILL_BATCH = 32


def _drill_batch(han: list[int], newline: list[int], rng: random.Random, n: int | None = None, rows: int = DRILL_BATCH):
    """`rows` drills of n characters (random in DRILL_LENGTHS): ids and labels (-100 but on the repeat)."""
    import torch

    n = n or rng.randint(*DRILL_LENGTHS)
    ids, labels = zip(*(_drill_row(han, newline, n, rng) for _ in range(rows)), strict=True)
    return torch.tensor(ids), torch.tensor(labels)


def copy_accuracy(model, tok, n: int, rows: int = 16, seed: int = 999) -> float:
    """Share of the repeated characters of fresh n-character drills that the model predicts (chance: 1/516)."""
    import torch

    x, y = _drill_batch(*_drill_vocab(tok), random.Random(seed + n), n, rows)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        pred = model(input_ids=x.to(model.device)).logits[:, :-1].argmax(-1).cpu()
    model.train(was_training)
    target, mask = y[:, 1:], y[:, 1:] != -100
    return ((pred == target) & mask).sum().item() / mask.sum().item()


def drill(out: Path, cfg: BuildSettings, command: str) -> Path:
    """The induction stage: `cfg.drills` steps of copy drills only, on the built model `cfg.base`.

    A small model learns to copy from its context (an induction head: find where the current text occurred
    before, continue from there) as a sudden phase change, and the RAG corpus alone did not bring it on in
    millions of tokens. Pure drills do: the shipped model went from chance to 99% of the repeated characters
    between steps ~1,500 and ~1,800 (log below: `copy accuracy`). Constant lr after warmup, no weight decay.
    The result has forgotten much of its language; the next stage (`--base` on it, the corpus plus some
    `--copy-share`) brings that back while keeping the copying. Saved in fp32 (a stage, not a shipped model).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg)
    tok = AutoTokenizer.from_pretrained(cfg.base)
    model = AutoModelForCausalLM.from_pretrained(cfg.base, dtype=torch.float32).to(device)
    han, newline = _drill_vocab(tok)
    rng = random.Random(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.95))
    model.train()
    for step in range(1, cfg.drills + 1):
        for group in opt.param_groups:
            group["lr"] = cfg.lr * min(1, step / max(1, cfg.warmup))
        x, y = _drill_batch(han, newline, rng)
        loss = model(input_ids=x.to(device), labels=y.to(device)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        if step % 100 == 0 or step == cfg.drills:
            log.info(
                "drill step %d/%d loss %.3f copy accuracy: 20 characters %.3f, 60 characters %.3f (%.0f s)",
                step,
                cfg.drills,
                loss.item(),
                copy_accuracy(model, tok, 20),
                copy_accuracy(model, tok, 60),
                time.perf_counter() - t0,
            )
    out.mkdir(parents=True, exist_ok=True)
    model.to("cpu").save_pretrained(out)
    tok.save_pretrained(out)
    marker = {"built_with": command, "stage": "copy drills", "settings": asdict(cfg), "torch": torch.__version__}
    (out / MARKER_FILE).write_text(json.dumps(marker, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    log.info("saved the drilled model to %s in %.0f s", out, time.perf_counter() - t0)
    return out


def _batches(examples, max_len: int, batch_tokens: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of example indices, each of examples of similar length (padded size <= batch_tokens).

    Every example is its own row, padded on the right: causal attention alone keeps pads out of the real tokens,
    so no attention mask is needed (the fast causal kernel runs) and positions start at 0 as at inference.
    """
    order = [i for i, (ids, _) in enumerate(examples) if len(ids) <= max_len]  # never cut off a reply
    rng.shuffle(order)
    batches = []
    for start in range(0, len(order), 256):  # sort within windows: similar lengths, still random
        window = sorted(order[start : start + 256], key=lambda i: len(examples[i][0]))
        cur: list[int] = []
        for i in window:
            if cur and (len(cur) + 1) * len(examples[i][0]) > batch_tokens:
                batches.append(cur)
                cur = []
            cur.append(i)
        if cur:
            batches.append(cur)
    rng.shuffle(batches)
    return batches


def _tensors(examples, batch: list[int], pad_id: int, cfg: BuildSettings):
    """Padded ids, next-token targets and per-token loss weights (0 on pads; replies 1; prompts context_weight)."""
    import torch

    width = max(len(examples[i][0]) for i in batch)
    ids, weights = [], []
    for i in batch:
        row, labels = examples[i]
        pad = width - len(row)
        ids.append(row + [pad_id] * pad)
        if cfg.loss_on == "all":
            w = [1.0 if lab != -100 else cfg.context_weight for lab in labels]
        else:
            w = [1.0 if lab != -100 else 0.0 for lab in labels]
        weights.append(w + [0.0] * pad)
    return torch.tensor(ids), torch.tensor(weights)


def _loss(model, x, w):
    """Weighted next-token cross-entropy: token t+1 predicted from tokens <= t, weighted by w[t+1]."""
    import torch.nn.functional as F

    logits = model(input_ids=x, use_cache=False).logits[:, :-1]
    ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), x[:, 1:].reshape(-1), reduction="none")
    weights = w[:, 1:].reshape(-1)
    return (ce * weights).sum() / weights.sum().clamp_min(1e-6)


def _save(model, tok, out: Path, cfg: BuildSettings, command: str, n_tokens: int, t0: float, steps_done: int):
    """Save an fp16 copy of the model, the tokenizer, a sampling generation config and the marker file."""
    import copy

    import torch
    from transformers import GenerationConfig

    half = copy.deepcopy(model).to("cpu", torch.float16)
    half.generation_config = GenerationConfig(
        do_sample=True,
        temperature=0.7,
        top_p=0.9,
        top_k=40,
        repetition_penalty=1.1,
        max_new_tokens=200,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    half.save_pretrained(out)
    tok.save_pretrained(out)
    marker = {
        "model_id": DEMO_MODEL_ID,
        "description": "rolechat's built-in demo model: a tiny Qwen2 trained from scratch on Chinese text the "
        "project wrote or generated (llm/demo/corpus). For smoke tests and offline demos, not real use.",
        "built_with": command,
        "params": sum(p.numel() for p in model.parameters()),
        "train_tokens_per_epoch": n_tokens,
        "steps_done": steps_done,
        "build_seconds": round(time.perf_counter() - t0, 1),
        "torch": torch.__version__,
        "settings": asdict(cfg),
    }
    (out / MARKER_FILE).write_text(json.dumps(marker, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    log.info("saved %s after %d steps", out, steps_done)


def _continued_model(out: Path, cfg: BuildSettings, dialogues: list[dict], prose: list[str]):
    """`--base`: the built model's tokenizer and weights with a longer context, grown by `--add-chars` and
    `--deepen`; the tokenizer and config are saved to `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(cfg.base)
    tok.model_max_length = cfg.positions
    model = AutoModelForCausalLM.from_pretrained(cfg.base, dtype=torch.float32, max_position_embeddings=cfg.positions)
    tok.save_pretrained(out)
    if cfg.add_chars or cfg.add_chars_of:
        chars = _chars_to_add(_texts(dialogues, prose), cfg.add_chars) if cfg.add_chars else []
        for path in cfg.add_chars_of:
            chars += [ch for ch in Path(path).read_text(encoding="utf-8") if is_han(ch)]
        made = extend_tokenizer(out, chars)
        tok = AutoTokenizer.from_pretrained(out)
        tok.model_max_length = cfg.positions
        _grow_embeddings(model, made, len(tok))
        log.info("tokenizer: %d tokens added, vocab %d", len(made), len(tok))
    if cfg.deepen:
        deepen(model, cfg.deepen)
        log.info("layers: %d", model.config.num_hidden_layers)
    model.config.save_pretrained(out)
    return tok, model


def _new_model(out: Path, cfg: BuildSettings, dialogues: list[dict], prose: list[str]):
    """From scratch: a tokenizer trained on the corpus and a randomly initialised Qwen2 of the configured size;
    the tokenizer and config are saved to `out`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = train_tokenizer(_texts(dialogues, prose), cfg.vocab_size, cfg.positions, cfg.token_bytes)
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
    return tok, AutoModelForCausalLM.from_config(mcfg, dtype=torch.float32)


def _lr_at(cfg: BuildSettings, step: int) -> float:
    """Linear warmup, then cosine down to 5% of `cfg.lr` at the last step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))


@dataclass
class _Run:
    """One training run's fixed parts: where it saves, how it logs, and what `_save` records."""

    out: Path
    cfg: BuildSettings
    command: str
    device: torch.device
    progress: bool
    n_tokens: int
    t0: float


def _train(model, tok, examples: list, run: _Run):
    """`cfg.steps` optimiser steps over shuffled, length-bucketed batches (the short ones first while the
    curriculum lasts), saving every `cfg.save_every` steps; returns the last step's loss."""
    import torch
    from tqdm.auto import tqdm

    cfg = run.cfg
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.05)
    rng = random.Random(cfg.seed)
    in_curriculum = cfg.curriculum_steps > 0
    batches = _batches(examples, cfg.curriculum_len if in_curriculum else cfg.block_size, cfg.batch_tokens, rng)
    cursor, epoch = 0, 0
    model.train()
    bar = tqdm(range(cfg.steps), desc="training demo model", disable=not run.progress, unit="step")
    for step in bar:
        if in_curriculum and step >= cfg.curriculum_steps:  # the short examples are learnt: now every length
            in_curriculum, cursor = False, len(batches)
        if cursor >= len(batches):
            epoch += 1
            batches = _batches(examples, cfg.curriculum_len if in_curriculum else cfg.block_size, cfg.batch_tokens, rng)
            cursor = 0
        x, w = _tensors(examples, batches[cursor], tok.pad_token_id, cfg)
        x, w = x.to(run.device), w.to(run.device)
        cursor += 1
        for group in opt.param_groups:
            group["lr"] = _lr_at(cfg, step)
        loss = _loss(model, x, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
            _save(model, tok, run.out, cfg, run.command, run.n_tokens, run.t0, step + 1)
        if step % 10 == 0 or step == cfg.steps - 1:
            bar.set_postfix(loss=f"{loss.item():.3f}", epoch=epoch)
            if not run.progress:
                log.info(
                    "step %d/%d loss %.3f epoch %d (%.0f s)",
                    step,
                    cfg.steps,
                    loss.item(),
                    epoch,
                    time.perf_counter() - run.t0,
                )
    return loss


def build(
    out_dir: str | Path = SHIPPED_MODEL_DIR,
    settings: BuildSettings | None = None,
    corpus_dir: Path = CORPUS_DIR,
    progress: bool = True,
    command: str = "python -m rolechat.llm.demo.build",
) -> Path:
    """Train tokenizer + model from the corpus and save them (with generation config and marker) to out_dir."""
    import torch

    cfg = settings or BuildSettings()
    out = Path(out_dir)
    if cfg.drills:
        return drill(out, cfg, command)
    t0 = time.perf_counter()
    device = _device(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # before the model is made: its initial weights come from this seed
    dialogues, prose = load_corpus(corpus_dir, cfg.extra)
    out.mkdir(parents=True, exist_ok=True)
    make = _continued_model if cfg.base else _new_model
    tok, model = make(out, cfg, dialogues, prose)
    model.to(device)
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
    loss = _train(model, tok, examples, _Run(out, cfg, command, device, progress, n_tokens, t0))
    model.eval()
    _save(model, tok, out, cfg, command, n_tokens, t0, cfg.steps)
    log.info("saved demo model (final loss %.3f) to %s in %.0f s", loss.item(), out, time.perf_counter() - t0)
    return out


HELP = {
    "out": "output folder (default: the shipped one)",
    "threads": "torch CPU threads (0: torch's default)",
    "positions": "max_position_embeddings",
    "block_size": "longest example trained on (tokens)",
    "base": "continue training this built demo model instead of from scratch",
    "other_share": "share of the non-RAG dialogues and prose trained on (e.g. 0.3 when continuing a model)",
    "save_every": "also save the model every N steps",
    "copy_share": "add copy drills: this many times the number of examples",
    "context_weight": "with --loss-on all: weight of the prompt tokens' loss next to the replies'",
    "curriculum_steps": "first N steps on examples of at most --curriculum-len tokens",
    "drills": "with --base: train this many steps on copy drills only (the induction stage; writes an fp32 stage)",
    "add_chars": "with --base: give the N most common Chinese characters (jieba's counts) and every character of the "
    "corpus their own token (new embeddings start at the mean of the byte tokens they replace)",
    "add_chars_of": "with --base: give every Chinese character of these files (e.g. "
    "llm/demo/corpus/cat_dialogues.jsonl) its own token, the same way as --add-chars",
    "device": "cpu, or cuda / cuda:N to train on a GPU (fp32; only CPU builds are bit-reproducible)",
    "deepen": "with --base: after each layer insert N copies of it with zeroed output projections (the deeper model "
    "starts computing what the base did)",
    "extra": "more RAG dialogue files (jsonl) to train on, e.g. scripts/demo_rag_dialogues.py --seed 1 --out FILE",
}


def main() -> None:
    """The command line: one flag per BuildSettings field (the dataclass is the single source of defaults)."""
    import dataclasses

    ap = argparse.ArgumentParser(description="Build rolechat's demo model from llm/demo/corpus.")
    ap.add_argument("--out", type=Path, default=SHIPPED_MODEL_DIR, help=HELP["out"])
    for f in dataclasses.fields(BuildSettings):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "loss_on":
            ap.add_argument(flag, choices=["reply", "all"], default=f.default)
        elif isinstance(f.default, tuple):
            ap.add_argument(flag, nargs="*", default=[], help=HELP.get(f.name))
        else:
            ap.add_argument(flag, type=type(f.default), default=f.default, help=HELP.get(f.name))
    args = vars(ap.parse_args())
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    command = " ".join(["python -m rolechat.llm.demo.build", *(shlex.quote(a) for a in sys.argv[1:])])
    out = args.pop("out")
    args["extra"], args["add_chars_of"] = tuple(args["extra"]), tuple(args["add_chars_of"])
    try:
        settings = BuildSettings(**args)
        _device(settings)
    except (ValueError, RuntimeError) as exc:  # bad flags: argparse's usage line and message, no traceback
        ap.error(str(exc))
    build(out, command=command, settings=settings)


if __name__ == "__main__":
    main()
