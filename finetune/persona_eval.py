"""Did the persona keep its voice? Replies of a persona and of its base model, side by side, on held-out prompts.

For each prompt (by default the held-out split of the persona's own training data, found again from the
seed and ratio its manifest records) the persona and the plain base model answer greedily under the SAME
system prompt (the persona's), through the runtime. Measured per side:

- ROUGE-L (F1 of the longest common subsequence of jieba tokens) against the reference reply;
- embedding cosine against the reference (ChatHaruhi's fidelity measure), with the embedder the caller passes
  (the CLI passes rag.embedder's, by default multilingual-e5-small);
- a character score: the mean probability a judge classifier gives to "this is the character speaking"
  (`train_judge` trains one from the persona's data: its replies against the lines spoken to it);
- the share of replies that break character (claim to be an AI / a language model / an assistant);
- the share that stop by themselves before the length limit, the share ending in the persona's
  catchphrase (found in its training replies), distinct-1/2 over jieba tokens;
- fluency: the perplexity of each side's replies under the plain base model (same prompts, the persona's
  system prompt), and `fluency_ratio` = persona's / base's. A persona adapter that learnt its voice but lost
  the language (word salad) reads as a high ratio; 1.0 means its replies are as natural to the base model
  as the base model's own greedy replies.

Imports only llm (and finetune); the CLI passes the embedder in.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rolechat.finetune.data import Dataset, load_dataset
from rolechat.llm.backend import PromptTooLong
from rolechat.llm.remote import RemoteError

__all__ = [
    "EvalError",
    "EvalItem",
    "tokens",
    "rouge_l",
    "distinct_n",
    "breaks_character",
    "detect_catchphrase",
    "held_out_items",
    "items_from",
    "judge_name",
    "train_judge",
    "evaluate_persona",
    "base_perplexity",
    "summarize",
]

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
CHARACTER, OTHER = "character", "other"

# A reply breaks character when it says what it really is. Chinese and English, case-insensitive.
_WHAT = r"(人工智能|人工智慧|语言模型|大模型|演示模型|模型|AI|ＡＩ|智能助手|虚拟助手|助手|助理|聊天机器人|机器人|程序)"
BREAK_PATTERNS = [
    re.compile(r"作为(一个|一名|一款|一种)?[^，。！？\n]{0,8}?" + _WHAT, re.I),
    re.compile(r"我(只|就|只不过|仅仅)?是[^，。！？\n]{0,20}?" + _WHAT, re.I),
    re.compile(r"(由|被)[^，。！？\n]{0,20}(开发|训练|创建|打造)的" + _WHAT, re.I),
    re.compile(
        r"\bas an? (ai|artificial intelligence|(large )?language model|llm|(ai |virtual )?assistant|chatbot)\b", re.I
    ),
    re.compile(
        r"\bi(['’]m| am) (just |only |merely )?(an? )?"
        r"(ai|artificial intelligence|(large )?language model|llm|(ai |virtual )?assistant|chatbot|bot)\b",
        re.I,
    ),
    re.compile(r"\b(large )?language model\b", re.I),
]


class EvalError(ValueError):
    """The evaluation cannot run (no held-out prompts, data file gone...); the message says what to do."""


@dataclass
class EvalItem:
    """One prompt: the conversation up to the last user turn, and the reply the data gives for it."""

    messages: list[dict[str, str]]
    reference: str
    record: int = 0


def tokens(text: str) -> list[str]:
    """jieba words of `text`, without whitespace and punctuation."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return [w for w in jieba.lcut(text) if w.strip() and not all(_is_punct(c) for c in w.strip())]


def _is_punct(ch: str) -> bool:
    import unicodedata

    return unicodedata.category(ch)[0] in "PS"


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 on jieba tokens (0 when either side has none)."""
    c, r = tokens(candidate), tokens(reference)
    if not c or not r:
        return 0.0
    lcs = _lcs(c, r)
    if not lcs:
        return 0.0
    p, rec = lcs / len(c), lcs / len(r)
    return 2 * p * rec / (p + rec)


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams of all replies (jieba tokens); 0 when there are none."""
    grams: list[tuple[str, ...]] = []
    for text in texts:
        t = tokens(text)
        grams += [tuple(t[i : i + n]) for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def breaks_character(text: str) -> bool:
    """Whether the reply claims to be an AI, a language model or an assistant (Chinese or English)."""
    return any(p.search(text) for p in BREAK_PATTERNS)


def detect_catchphrase(replies: Sequence[str], min_share: float = 0.4, keep: float = 0.9) -> str:
    """The longest ending (up to 8 characters, not only punctuation) shared by at least `min_share` of
    the replies, grown only while at least `keep` of the replies that share the shorter one still share it:
    '喵~' for a cat that ends every line with it, even when most lines end in '了喵~' (a common word before
    the tic is not the tic); '' when there is none (or under 3 replies)."""
    ends = [r.rstrip() for r in replies if r.strip()]
    if len(ends) < 3:  # one or two lines say nothing about a habit
        return ""
    best, best_count = "", 0
    for size in range(1, 9):
        counts = Counter(e[-size:] for e in ends if len(e) >= size)
        if not counts:
            break
        suffix, count = counts.most_common(1)[0]
        if count / len(ends) < min_share or count < keep * best_count:
            break
        if not all(_is_punct(c) or c.isspace() for c in suffix):
            best, best_count = suffix, count
    return best


def items_from(dataset: Dataset, records: set[int] | None = None) -> list[EvalItem]:
    """Prompts with reference replies from conversations (all, or those whose record number is listed)."""
    out = []
    for conv in dataset.conversations:
        if records is not None and conv.record not in records:
            continue
        msgs = [dict(m) for m in conv.messages]
        out.append(EvalItem(msgs[:-1], msgs[-1]["content"], conv.record))
    return out


def _find_data(manifest: Any, folder: Path | None) -> Path:
    recorded = str(manifest.data.get("file") or "")
    if not recorded:
        raise EvalError(f"persona {manifest.name!r} records no training data file; pass --data FILE")
    path = Path(recorded).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, REPO_ROOT / path]
    if folder is not None and not path.is_absolute():
        candidates.append(folder / path.name)
    for c in candidates:
        if c.is_file():
            return c
    raise EvalError(
        f"persona {manifest.name!r} was trained on {recorded}, which is not here any more; pass --data FILE "
        "(prompts with reference replies, in any training-data format)"
    )


def held_out_items(manifest: Any, folder: Path | None = None) -> tuple[list[EvalItem], Dataset, set[int]]:
    """The persona's held-out prompts: (items, its training dataset, the held-out record numbers)."""
    from rolechat.finetune.trainer import held_out

    path = _find_data(manifest, folder)
    hp = manifest.hyperparameters or {}
    dataset = load_dataset(path, strict=False, dedupe=bool(hp.get("dedupe", True)))
    records = manifest.data.get("eval_records")
    if records is None:
        if not hp.get("eval_ratio"):
            raise EvalError(f"persona {manifest.name!r} was trained without a held-out split; pass --data FILE")
        held = held_out(len(dataset.conversations), float(hp["eval_ratio"]), int(hp.get("seed", 42)))
        records = [dataset.conversations[i].record for i in held]
    records = set(records)
    if not records:
        raise EvalError(
            f"persona {manifest.name!r} was trained without a held-out split (eval_ratio 0 or too little data); "
            "pass --data FILE with prompts and reference replies"
        )
    items = items_from(dataset, records)
    if not items:
        raise EvalError(f"{path}: no held-out conversation found (the file changed?); pass --data FILE")
    return items, dataset, records


def judge_name(persona: str) -> str:
    """The character judge's classifier name for a persona."""
    return f"{persona[:58]}-judge"


def train_judge(
    persona: str, dataset: Dataset, exclude: set[int], cfg: Any = None, llm_cfg: Any = None, **kw: Any
) -> Any:
    """Train classifier `<persona>-judge`: the persona's replies ("character") against the lines spoken to it
    ("other"), from its training conversations (held-out records left out). Returns the ClassifyResult."""
    from rolechat.finetune.classify_config import ClassifyConfig
    from rolechat.finetune.classify_train import train_classifier

    rows: dict[str, str] = {}
    for conv in dataset.conversations:
        if conv.record in exclude:
            continue
        for m in conv.messages:
            text = m["content"].strip()
            if text and text not in rows:
                rows[text] = CHARACTER if m["role"] == "assistant" else OTHER
    counts = Counter(rows.values())
    if counts[CHARACTER] < 4 or counts[OTHER] < 4:
        raise EvalError(f"persona {persona!r}: too few distinct lines to train a judge ({dict(counts)})")
    cfg = cfg or ClassifyConfig()
    from rolechat import settings as rc

    folder = rc.runs_dir() / "classifiers"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".csv", dir=folder, delete=False, encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([cfg.text_column, cfg.label_column])
        writer.writerows(rows.items())
    try:
        return train_classifier(
            fh.name,
            judge_name(persona),
            cfg,
            llm_cfg,
            description=f"character judge of {persona}: its replies vs the lines spoken to it",
            overwrite=True,
            **kw,
        )
    finally:
        Path(fh.name).unlink(missing_ok=True)


def _side(
    replies: list[str],
    finishes: list[str],
    refs: list[str],
    catchphrase: str,
    judge: Any,
    embed: Callable[[list[str]], list[list[float]]] | None,
) -> dict[str, Any]:
    n = len(replies)
    mean = lambda xs: sum(xs) / len(xs) if xs else None
    out: dict[str, Any] = {
        "rouge_l": mean([rouge_l(r, ref) for r, ref in zip(replies, refs)]),
        "embedding_cosine": None,
        "character_score": None,
        "break_character": sum(map(breaks_character, replies)) / n,
        "stopped": sum(f == "stop" for f in finishes) / n,
        "catchphrase": sum(r.rstrip().endswith(catchphrase) for r in replies) / n if catchphrase else None,
        "distinct_1": distinct_n(replies, 1),
        "distinct_2": distinct_n(replies, 2),
        "mean_chars": mean([len(r) for r in replies]),
    }
    if embed is not None:
        vecs = embed(replies + refs)
        out["embedding_cosine"] = mean([_cos(vecs[i], vecs[n + i]) for i in range(n)])
    if judge is not None:
        idx = judge.labels.index(CHARACTER)
        out["character_score"] = mean([p[idx] for p in judge.logits(replies).softmax(-1).tolist()])
    return out


def _cos(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return dot / (na * nb) if na and nb else 0.0


def evaluate_persona(
    runtime: Any,
    persona: str,
    items: Sequence[EvalItem],
    *,
    max_new_tokens: int = 96,
    judge: Any = None,
    judge_skip: str = "",
    embed: Callable[[list[str]], list[list[float]]] | None = None,
    embed_skip: str = "",
    catchphrase: str | None = None,
    source: str = "",
    on_reply: Callable[[int, int], None] | None = None,
    samples: int = 5,
) -> dict[str, Any]:
    """Generate with the persona and with the base model (greedy, the persona's system prompt for both)
    and measure both sides; returns the report as a plain dict (see the module docstring)."""
    if not items:
        raise EvalError("no prompts to evaluate")
    manifest = runtime.manifest(persona)
    if manifest is None:
        raise EvalError("pick a persona to evaluate (not the base model)")
    system = manifest.system_prompt
    if judge is not None and CHARACTER not in judge.labels:
        raise EvalError(f"classifier {judge.name!r} has no {CHARACTER!r} label; it is not a character judge")
    params = {"temperature": 0, "max_new_tokens": max_new_tokens}
    replies: dict[str, list[str]] = {"persona": [], "base": []}
    finishes: dict[str, list[str]] = {"persona": [], "base": []}
    total = len(items) * 2
    # the base model answers with the persona's system prompt (and scores both sides' replies with it)
    prompts = [([{"role": "system", "content": system}] if system else []) + item.messages for item in items]
    for i, item in enumerate(items):
        for side, msgs, who in (("persona", item.messages, persona), ("base", prompts[i], None)):
            try:
                stream = runtime.stream(msgs, who, params)
            except PromptTooLong as exc:  # the runtime drops nothing: say which sample is too long
                raise EvalError(f"sample {i + 1}: {exc}") from None
            replies[side].append(stream.join().strip())
            finishes[side].append(stream.stats.finish_reason)
            if on_reply is not None:
                on_reply(2 * i + (side == "base") + 1, total)
    refs = [item.reference for item in items]
    if catchphrase is None:
        catchphrase = detect_catchphrase(refs)
    metrics = {
        side: _side(replies[side], finishes[side], refs, catchphrase, judge, embed) for side in ("persona", "base")
    }
    skipped = {}
    fluency = _fluency(runtime, prompts, replies, metrics, skipped)
    if embed is None:
        skipped["embedding_cosine"] = embed_skip or "no embedder given"
    if judge is None:
        skipped["character_score"] = judge_skip or "no character judge"
    return {
        "persona": persona,
        "base_model": runtime.info.model_id,
        "prompts": len(items),
        "source": source,
        "max_new_tokens": max_new_tokens,
        "catchphrase": catchphrase,
        "judge": judge.name if judge is not None else None,
        "fluency_ratio": fluency,
        "catchphrase_share": metrics["persona"]["catchphrase"],
        "metrics": metrics,
        "skipped": skipped,
        "samples": [
            {
                "prompt": item.messages[-1]["content"],
                "reference": item.reference,
                "persona": replies["persona"][i],
                "base": replies["base"][i],
            }
            for i, item in enumerate(items[:samples])
        ],
    }


def _fluency(runtime: Any, prompts: list, replies: dict[str, list[str]], metrics: dict, skipped: dict) -> float | None:
    """Each side's perplexity under the base model into `metrics`, and the persona's / the base's; None (and
    the reason in `skipped`) where the runtime cannot score text."""
    try:
        perplexity = {side: base_perplexity(runtime, prompts, replies[side]) for side in ("persona", "base")}
    except RemoteError as exc:  # a remote server generates but does not score text
        skipped["fluency_ratio"] = str(exc)
        return None
    for side, value in perplexity.items():
        metrics[side]["perplexity"] = value
    return perplexity["persona"] / perplexity["base"]


def base_perplexity(runtime: Any, prompts: Sequence[Sequence[dict]], replies: Sequence[str]) -> float:
    """Perplexity of `replies` (each the answer to its prompt) under the plain base model: exp of the mean
    negative log-likelihood per token over all of them, end-of-turn tokens included."""
    total, count = 0.0, 0
    for messages, reply in zip(prompts, replies):
        nll, n = runtime.reply_loss(messages, reply, None)
        total, count = total + nll, count + n
    return math.exp(total / count) if count else float("nan")


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """The short form saved into the persona's manifest."""
    r4 = lambda v: round(v, 4) if isinstance(v, float) else v
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "prompts": report["prompts"],
        "source": report["source"],
        "catchphrase": report["catchphrase"],
        "judge": report["judge"],
        "base_model": report.get("base_model"),
        "fluency_ratio": r4(report.get("fluency_ratio")),
        "persona": {k: r4(v) for k, v in report["metrics"]["persona"].items()},
        "base": {k: r4(v) for k, v in report["metrics"]["base"].items()},
        "skipped": dict(report.get("skipped") or {}),  # measure -> why it was not measured
    }
