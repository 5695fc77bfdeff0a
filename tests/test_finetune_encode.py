"""finetune.encode on the tiny Qwen2 / Qwen3 (thinking template) / GLM-4 tokenizers: labels, prompts, truncation."""

from __future__ import annotations

import pytest

from rolechat.finetune.data import Conversation
from rolechat.finetune.encode import encode_conversations, show_example, with_system
from rolechat.llm.templates import render_prompt, resolve_format

SYSTEM = "你是甄嬛。"
MULTI = Conversation(
    [
        {"role": "user", "content": "皇上万福金安。"},
        {"role": "assistant", "content": "你好，我是一个测试模型。"},
        {"role": "user", "content": "今天天气很好"},
        {"role": "assistant", "content": "臣妾做不到啊！"},
    ],
    record=1,
)


@pytest.fixture(scope="module")
def toks(tiny_models):
    from transformers import AutoTokenizer

    return {arch: AutoTokenizer.from_pretrained(path) for arch, path in tiny_models.items()}


def spans(labels):
    """Maximal runs of supervised positions as (start, end)."""
    out, start = [], None
    for i, lab in enumerate(labels + [-100]):
        if lab != -100 and start is None:
            start = i
        if lab == -100 and start is not None:
            out.append((start, i))
            start = None
    return out


@pytest.mark.parametrize("arch", ["qwen2", "qwen3", "glm4"])
def test_supervised_ids_are_exactly_each_reply_plus_end_of_turn(toks, arch):
    tok = toks[arch]
    fmt = resolve_format(tok)
    examples, stats = encode_conversations(tok, fmt, [MULTI], SYSTEM, max_length=512)
    replies = [m["content"] for m in MULTI.messages if m["role"] == "assistant"]
    eot = tok(fmt.eot, add_special_tokens=False)["input_ids"]
    supervised = [ex.input_ids[s:e] for ex in examples for s, e in spans(ex.labels)]
    if arch == "qwen3":  # history differs from the generation prompt: one example per turn, last reply supervised
        assert len(examples) == 2
        supervised = [ex.input_ids[s:e] for ex in examples for s, e in spans(ex.labels)[-1:]]
    assert [tok.decode(ids[: -len(eot)]) for ids in supervised] == replies
    assert all(ids[-len(eot) :] == eot for ids in supervised)
    assert all(label in (-100, tid) for ex in examples for tid, label in zip(ex.input_ids, ex.labels))
    assert stats.eot_lost == 0 and stats.supervised_tokens == sum(e - s for ex in examples for s, e in spans(ex.labels))


@pytest.mark.parametrize("arch", ["qwen2", "qwen3", "glm4"])
def test_training_prompt_is_the_inference_prompt(toks, arch):
    """The ids before each supervised reply are exactly what the runtime feeds the model for that history."""
    tok = toks[arch]
    fmt = resolve_format(tok)
    examples, _ = encode_conversations(tok, fmt, [MULTI], SYSTEM, max_length=512)
    msgs = with_system(MULTI, SYSTEM)
    turn_ends = [k for k, m in enumerate(msgs) if m["role"] == "assistant"]
    prefixes = [ex.input_ids[:s] for ex in examples for s, _ in spans(ex.labels)]
    if arch == "qwen3":
        prefixes = [ex.input_ids[: spans(ex.labels)[-1][0]] for ex in examples]
    for k, prefix in zip(turn_ends, prefixes):
        prompt = render_prompt(tok, fmt, msgs[:k], add_generation_prompt=True)
        assert prefix == tok(prompt, add_special_tokens=False)["input_ids"]
    assert len(prefixes) == len(turn_ends)


def test_last_turn_only_supervises_just_the_final_reply(toks):
    tok = toks["qwen2"]
    (ex,), _ = encode_conversations(tok, resolve_format(tok), [MULTI], SYSTEM, max_length=512, last_turn_only=True)
    (only,) = spans(ex.labels)
    assert tok.decode(ex.input_ids[only[0] : only[1]]) == "臣妾做不到啊！<|im_end|>"


@pytest.mark.parametrize("arch", ["qwen2", "glm4"])
def test_truncation_drops_oldest_turns_then_prompt_head_never_the_reply_end(toks, arch):
    tok = toks[arch]
    fmt = resolve_format(tok)
    eot = tok(fmt.eot, add_special_tokens=False)["input_ids"]
    long_history = Conversation(
        [
            {"role": "user", "content": "北京是中国的首都。" * 20},
            {"role": "assistant", "content": "上海是一座国际化大都市。" * 5},
            {"role": "user", "content": "模型训练需要数据、算力和耐心。" * 30},
            {"role": "assistant", "content": "臣妾做不到啊！"},
        ],
        record=7,
    )
    full, _ = encode_conversations(tok, fmt, [long_history], SYSTEM, max_length=4096)
    limit = 120
    assert len(full[0].input_ids) > limit
    examples, stats = encode_conversations(tok, fmt, [long_history], SYSTEM, max_length=limit)
    (ex,) = examples
    assert len(ex.input_ids) <= limit
    assert stats.truncated == 1 and stats.turns_dropped == 1 and stats.eot_lost == 0
    (reply,) = spans(ex.labels)
    assert ex.input_ids[reply[0] : reply[1]] == tok("臣妾做不到啊！" + fmt.eot, add_special_tokens=False)["input_ids"]
    assert ex.input_ids[reply[1] - len(eot) : reply[1]] == eot
    text = tok.decode(ex.input_ids)
    assert SYSTEM in text and "上海" not in text  # system kept, oldest exchange gone, user text cut from its head
    assert text.split(SYSTEM)[1].count("耐心") < 30


def test_example_whose_reply_cannot_fit_is_skipped_not_cut(toks):
    tok = toks["qwen2"]
    huge = Conversation(
        [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "北京是中国的首都。" * 40}]
    )
    examples, stats = encode_conversations(tok, resolve_format(tok), [huge], SYSTEM, max_length=64)
    assert examples == [] and stats.skipped_too_long == 1 and stats.eot_lost == 0


def test_show_example_marks_exactly_the_supervised_text(toks):
    tok = toks["qwen2"]
    (ex, _second), _ = encode_conversations(
        tok, resolve_format(tok), [MULTI, Conversation(MULTI.messages[:2])], SYSTEM, max_length=512
    )
    shown = show_example(tok, ex)
    assert shown.count("⟦") == 2
    assert "⟦你好，我是一个测试模型。<|im_end|>⟧" in shown and "⟦臣妾做不到啊！<|im_end|>⟧" in shown
    assert shown.replace("⟦", "").replace("⟧", "") == tok.decode(ex.input_ids)


NEWLINE_REPLIES = Conversation(
    [
        {"role": "user", "content": "皇上万福金安。"},
        {"role": "assistant", "content": "\n你好，我是一个测试模型。"},
        {"role": "user", "content": "今天天气很好"},
        {"role": "assistant", "content": " 臣妾做不到啊！"},
        {"role": "user", "content": "北京"},
        {"role": "assistant", "content": "\n\n北京是中国的首都。"},
    ],
    record=3,
    line=5,
)


def merged_rows(tokenizer, fmt, messages, last_turn_only=False):
    """The former encoder, kept here as a deliberately broken one: prompt and reply tokenized as one string."""
    from rolechat.llm.encoding import Row

    rows = []
    for k in [i for i, m in enumerate(messages) if m["role"] == "assistant"]:
        prompt = render_prompt(tokenizer, fmt, messages[:k])
        enc = tokenizer(
            prompt + messages[k]["content"] + fmt.eot, add_special_tokens=False, return_offsets_mapping=True
        )
        labels = [t if s >= len(prompt) else -100 for t, (s, _) in zip(enc["input_ids"], enc["offset_mapping"])]
        rows.append(Row(list(enc["input_ids"]), labels, [k]))
    return rows


@pytest.mark.parametrize("template", ["qwen2.5", "qwen3"])
def test_lint_counts_train_infer_mismatches_and_finds_none_now(template, monkeypatch):
    from rolechat.finetune import encode
    from tests.tiny import QWEN3_TEMPLATE, QWEN25_TEMPLATE, build_qwen_tokenizer

    tok = build_qwen_tokenizer(QWEN25_TEMPLATE if template == "qwen2.5" else QWEN3_TEMPLATE)
    fmt = resolve_format(tok)
    examples, stats = encode_conversations(tok, fmt, [NEWLINE_REPLIES, MULTI], SYSTEM, max_length=512)
    assert stats.summary()["parity"] == 0 and stats.parity_first == []
    for ex in examples:  # and the replies starting with whitespace carry their own loss, newline included
        assert tok.decode([t for t in ex.labels if t != -100]).startswith(("\n", " ", "你好", "臣妾"))

    monkeypatch.setattr(encode, "build_rows", merged_rows)
    _, broken = encode_conversations(tok, fmt, [NEWLINE_REPLIES, MULTI], SYSTEM, max_length=512)
    summary = broken.summary()
    assert summary["parity"] >= 1  # the examples whose reply opens with a newline; MULTI's replies are fine
    assert summary["parity_first"][0].startswith("record 3 (line 5): reply ")
    assert "'ĊĊ'" in summary["parity_first"][0] or "'ĊĊĊ'" in summary["parity_first"][0]


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_long_conversations_drop_the_same_pairs_as_one_at_a_time(toks, arch):
    from rolechat.finetune.encode import build_rows

    tok = toks[arch]
    fmt = resolve_format(tok)
    lines = ["北京是中国的首都。", "今天天气很好，我们去公园散步吧。" * 3, "臣妾做不到啊！", "你好"]
    messages = []
    for i in range(40):
        messages += [
            {"role": "user", "content": f"{i}" + lines[i % 4]},
            {"role": "assistant", "content": lines[(i * 3) % 4]},
        ]
    for max_length in (100, 300, 800):
        (ex, *_), stats = encode_conversations(tok, fmt, [Conversation(messages)], SYSTEM, max_length=max_length)
        turns = with_system(Conversation(messages), SYSTEM)[1:]
        dropped = 0
        while max(len(r.input_ids) for r in build_rows(tok, fmt, [{"role": "system", "content": SYSTEM}, *turns])) > (
            max_length
        ):
            turns, dropped = turns[2:], dropped + 1
        assert (stats.truncated, stats.turns_dropped) == (1, dropped)
        assert len(ex.input_ids) <= max_length and stats.parity == 0
