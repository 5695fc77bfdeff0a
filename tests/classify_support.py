"""A tiny BERT with a WordPiece tokenizer trained in-process, and small separable labelled sets, for the
classifier tests (random weights: the tests assert learning, round trips and plumbing, not quality)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

POSITIVE = ["很好", "喜欢", "满意", "推荐", "精彩", "开心", "值得", "不错"]
NEGATIVE = ["很差", "失望", "糟糕", "退货", "难看", "生气", "浪费", "垃圾"]
FILLER = ["这本书", "快递", "包装", "内容", "价格", "今天", "我们", "质量", "作者", "东西", "还是", "真的"]


def synthetic_rows(n: int = 160, seed: int = 0) -> list[tuple[str, str]]:
    """(text, label) pairs, half 'pos' half 'neg': the label is decided by which word list a text draws from."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 4))]
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        rows.append(("".join(words), label))
    return rows


def write_csv(path: Path, rows, header=("text", "label")) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def build_tiny_bert(out_dir: str | Path, seed: int = 0) -> Path:
    """A 2-layer BERT (hidden 32) with a WordPiece tokenizer over the synthetic vocabulary, saved to `out_dir`."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.normalizer = normalizers.BertNormalizer(handle_chinese_chars=True, lowercase=True)
    wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    lines = [t for t, _ in synthetic_rows(400, seed=1)] + ["hello world", "the quick brown fox"]
    wp.train_from_iterator(lines, trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials))
    cls_id, sep_id = wp.token_to_id("[CLS]"), wp.token_to_id("[SEP]")
    wp.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=wp,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tok.pad_token_id,
    )
    BertForMaskedLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def train_sample(root: Path, model: Path, name: str = "sentiment") -> Path:
    """Train a small, well-separated 'pos'/'neg' classifier on the tiny BERT into root/name (its own home)."""
    import os
    from unittest import mock

    from rolechat.finetune.classify_config import ClassifyConfig
    from rolechat.finetune.classify_train import train_classifier

    data = write_csv(root / "train.csv", synthetic_rows(160))
    cfg = ClassifyConfig(
        model=str(model), epochs=8, learning_rate=5e-3, train_embeddings=True, eval_ratio=0.25, batch_size=16
    )
    with mock.patch.dict(os.environ, {"ROLECHAT_HOME": str(root / "home")}):
        train_classifier(data, name, cfg, out=root / name, show_progress=False)
    return root / name


def install(folder: Path) -> Path:
    """Copy a classifier folder into the current ROLECHAT_HOME's classifiers/."""
    import shutil

    from rolechat.settings import classifiers_dir

    target = classifiers_dir() / folder.name
    shutil.copytree(folder, target)
    return target


def build_tiny_sentence_encoder(out_dir: str | Path, seed: int = 0, prefix: str = "query: ") -> Path:
    """The tiny BERT as a sentence-transformers folder read by the mean of its tokens, with e5-style prompts."""
    import json

    out = build_tiny_bert(out_dir, seed)
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}), encoding="utf-8")
    prompts = {"prompts": {"query": prefix, "passage": "passage: "}}
    (out / "config_sentence_transformers.json").write_text(json.dumps(prompts), encoding="utf-8")
    return out
