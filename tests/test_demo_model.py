"""The shipped demo model (llm/demo/model): a real qwen2 that answers in Chinese, stops, and is small."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rolechat.llm.demo as demo
from rolechat.llm.demo import DEMO_MODEL_ID, SHIPPED_MODEL_DIR, demo_model_path, is_demo_path

PROMPTS = ["你好", "你是谁", "怎么训练一个角色？"]
MAX_NEW = 120


def cjk_share(text: str) -> float:
    """Share of CJK among visible characters, not counting ASCII (replies quote commands like `rolechat train`)."""
    chars = [c for c in text if not c.isspace() and not c.isascii()]
    cjk = [c for c in chars if "\u4e00" <= c <= "\u9fff" or "\u3000" <= c <= "\u303f" or "\uff00" <= c <= "\uffef"]
    return len(cjk) / max(1, len(chars))


@pytest.fixture(scope="module")
def loaded():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(SHIPPED_MODEL_DIR)
    model = AutoModelForCausalLM.from_pretrained(SHIPPED_MODEL_DIR, dtype=torch.float32).eval()
    return model, tok


def greedy(model, tok, text: str) -> tuple[list[int], str]:
    import torch

    enc = tok.apply_chat_template(
        [{"role": "user", "content": text}],
        add_generation_prompt=True,
        enable_thinking=False,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**enc, do_sample=False, max_new_tokens=MAX_NEW)
    new = out[0, enc["input_ids"].shape[1] :].tolist()
    return new, tok.decode(new, skip_special_tokens=True)


def test_shipped_model_is_a_small_qwen2(loaded):
    model, tok = loaded
    assert model.config.model_type == "qwen2"
    assert model.config.tie_word_embeddings
    assert next(model.parameters()).dtype.is_floating_point and str(next(model.parameters()).dtype) == "torch.float32"
    size = sum(f.stat().st_size for f in SHIPPED_MODEL_DIR.iterdir() if f.is_file())
    assert size < 20 * 2**20, f"shipped demo model is {size / 2**20:.1f} MiB, over the 20 MiB cap"
    assert model.generation_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    assert model.generation_config.pad_token_id == tok.convert_tokens_to_ids("<|endoftext|>")


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_replies_are_chinese_stop_and_repeat(loaded, prompt):
    model, tok = loaded
    ids, text = greedy(model, tok, prompt)
    assert text.strip(), f"empty reply to {prompt!r}"
    n_cjk = sum("\u4e00" <= c <= "\u9fff" for c in text)
    assert cjk_share(text) >= 0.9 and n_cjk >= 5, f"reply to {prompt!r} is not mostly Chinese: {text!r}"
    assert ids[-1] == tok.eos_token_id and len(ids) < MAX_NEW, f"reply to {prompt!r} never ended: {text!r}"
    assert greedy(model, tok, prompt) == (ids, text)


def test_greeting_and_identity_are_on_topic(loaded):
    model, tok = loaded
    assert any(w in greedy(model, tok, "你好")[1] for w in ("你好", "您好", "嗨"))
    assert "演示模型" in greedy(model, tok, "你是谁")[1]


def test_tokenizer_round_trips_chinese(loaded):
    _, tok = loaded
    text = "喵喵今天在御花园晒太阳，本宫甚是欢喜。ROLECHAT_LLM_MODEL=/path/to/Qwen3 饕餮 🐱"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_chat_template_is_chatml_without_default_system(loaded):
    _, tok = loaded
    text = tok.apply_chat_template([{"role": "user", "content": "你好"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"
    think_off = tok.apply_chat_template(
        [{"role": "user", "content": "你好"}], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert think_off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    with_system = tok.apply_chat_template(
        [{"role": "system", "content": "你是喵喵。"}, {"role": "user", "content": "你好"}], tokenize=False
    )
    assert with_system.startswith("<|im_start|>system\n你是喵喵。<|im_end|>\n<|im_start|>user\n")


def test_demo_model_path_prefers_shipped_and_falls_back_to_cache(tmp_path, monkeypatch):
    assert demo_model_path() == SHIPPED_MODEL_DIR
    assert is_demo_path(SHIPPED_MODEL_DIR) and not is_demo_path(tmp_path) and not is_demo_path(None)
    monkeypatch.setenv("ROLECHAT_HOME", str(tmp_path / "home"))
    broken = tmp_path / "broken"
    shutil.copytree(SHIPPED_MODEL_DIR, broken)
    (broken / "model.safetensors").write_bytes(b"")
    monkeypatch.setattr(demo, "SHIPPED_MODEL_DIR", broken)
    cached = tmp_path / "home" / "cache" / "demo-model"
    shutil.copytree(SHIPPED_MODEL_DIR, cached)  # a previous rebuild: used instead of building again
    assert demo_model_path() == cached
    assert is_demo_path(cached)


def test_marker_names_the_demo_model():
    import json

    marker = json.loads((SHIPPED_MODEL_DIR / "rolechat_demo.json").read_text(encoding="utf-8"))
    assert marker["model_id"] == DEMO_MODEL_ID and marker["built_with"].startswith(
        ("python -m rolechat.llm.demo.build", "python -m llm.demo.build")
    )


def test_import_is_light():
    code = "import sys, llm.demo; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


@pytest.mark.slow
def test_sample_persona_miaomiao_ships_for_the_demo_model(tmp_path, monkeypatch):
    """The cat persona beside the demo model loads with it, fits it, and changes how it talks."""
    import json

    from rolechat import llm
    from rolechat.llm.demo import SAMPLE_PERSONAS_DIR
    from rolechat.llm.loader import fingerprint

    monkeypatch.setenv("ROLECHAT_HOME", str(tmp_path))
    rt = llm.load_runtime(model=str(SHIPPED_MODEL_DIR))
    assert "miaomiao" in rt.persona_names()
    manifest = json.loads((SAMPLE_PERSONAS_DIR / "miaomiao" / "persona.json").read_text(encoding="utf-8"))
    assert manifest["base_fingerprint"] == fingerprint(rt.base_model.config)
    prompts = ["你好", "你是谁", "给我讲个故事吧", "今天天气怎么样？"]
    cat_endings = 0
    for prompt in prompts:
        messages = [{"role": "user", "content": prompt}]
        base = rt.chat(messages, persona="base", params={"temperature": 0})
        cat = rt.chat(messages, persona="miaomiao", params={"temperature": 0})
        assert cat != base, f"the persona did not change the reply to {prompt!r}: {cat!r}"
        assert "喵" in cat or "主人" in cat, f"miaomiao's reply to {prompt!r} is not in its style: {cat!r}"
        cat_endings += cat.rstrip().endswith("喵~")
    assert cat_endings >= 3, f"only {cat_endings} of {len(prompts)} greedy replies end with 喵~"
