"""llm.templates: the one rendering path, checked against each tokenizer's own apply_chat_template."""

from __future__ import annotations

import pytest

from rolechat.llm.templates import (
    TemplateError,
    render_prompt,
    render_supervised,
    resolve_format,
    stop_token_ids,
    tokenize_supervised,
)
from tests.tiny import ARCHS

CONVERSATION = [
    {"role": "system", "content": "你是甄嬛，说话要有宫廷味。"},
    {"role": "user", "content": "你好"},
    {"role": "assistant", "content": "皇上万福金安。"},
    {"role": "user", "content": "今天做什么？"},
    {"role": "assistant", "content": "臣妾陪皇上去御花园散步。"},
]


@pytest.fixture(scope="module")
def tokenizers(tiny_models):
    from transformers import AutoTokenizer

    return {arch: AutoTokenizer.from_pretrained(tiny_models[arch]) for arch in ARCHS}


@pytest.mark.parametrize("arch", ARCHS)
def test_prompt_equals_apply_chat_template_as_text_and_ids(tokenizers, arch):
    tok = tokenizers[arch]
    fmt = resolve_format(tok)
    history = CONVERSATION[:4]
    text = render_prompt(tok, fmt, history)
    assert text == tok.apply_chat_template(history, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    reference = tok.apply_chat_template(history, add_generation_prompt=True, enable_thinking=False, return_dict=True)
    assert ids == list(reference["input_ids"])


@pytest.mark.parametrize("arch", ARCHS)
def test_supervised_ids_are_exactly_replies_plus_end_of_turn(tokenizers, arch):
    tok = tokenizers[arch]
    fmt = resolve_format(tok)
    items = render_supervised(tok, fmt, CONVERSATION)
    supervised = []
    for item in items:
        ids, labels = tokenize_supervised(tok, item)
        assert len(ids) == len(labels)
        supervised.append([t for t, lab in zip(ids, labels) if lab != -100])
    eot_id = tok.convert_tokens_to_ids(fmt.eot)
    replies = [m["content"] for m in CONVERSATION if m["role"] == "assistant"]
    expected = [tok(r, add_special_tokens=False)["input_ids"] + [eot_id] for r in replies]
    assert [t for chunk in supervised for t in chunk] == [t for chunk in expected for t in chunk]


@pytest.mark.parametrize("arch", ARCHS)
def test_training_prompt_is_byte_identical_to_inference_prompt(tokenizers, arch):
    tok = tokenizers[arch]
    fmt = resolve_format(tok)
    turns = [i for i, m in enumerate(CONVERSATION) if m["role"] == "assistant"]
    items = render_supervised(tok, fmt, CONVERSATION)
    spans = [(item, span) for item in items for span in item.spans]
    assert len(spans) == len(turns)
    for k, (item, (start, end)) in zip(turns, spans):
        assert item.text[:start].endswith(render_prompt(tok, fmt, CONVERSATION[:k]))
        assert item.text[start:end] == CONVERSATION[k]["content"] + fmt.eot


def test_thinking_template_trains_on_what_inference_renders(tokenizers):
    tok = tokenizers["qwen3"]
    fmt = resolve_format(tok)
    items = render_supervised(tok, fmt, CONVERSATION)
    # Qwen3-style history drops the empty think block, so each turn becomes its own example.
    assert len(items) == 2
    assert all("<think>\n\n</think>\n\n" + CONVERSATION[k]["content"] in item.text for k, item in zip((2, 4), items))
    thinking = render_prompt(tok, fmt, CONVERSATION[:2], enable_thinking=True)
    assert not thinking.endswith("</think>\n\n")


def test_last_turn_only_supervises_one_reply(tokenizers):
    tok = tokenizers["qwen2"]
    items = render_supervised(tok, resolve_format(tok), CONVERSATION, last_turn_only=True)
    assert [item.text[s:e] for item in items for s, e in item.spans] == ["臣妾陪皇上去御花园散步。<|im_end|>"]


def test_end_of_turn_comes_from_the_template(tokenizers):
    assert resolve_format(tokenizers["qwen2"]).eot == "<|im_end|>"
    glm = resolve_format(tokenizers["glm4"])
    assert glm.eot == "<|user|>"  # GLM ends a reply by handing the turn back
    assert set(stop_token_ids(tokenizers["glm4"], glm)) >= {
        tokenizers["glm4"].convert_tokens_to_ids("<|user|>"),
        tokenizers["glm4"].eos_token_id,
    }


@pytest.mark.parametrize(
    "name, prefix, eot",
    [("chatml", "<|im_start|>system", "<|im_end|>"), ("chatglm3", "[gMASK]sop<|system|>", "<|endoftext|>")],
)
def test_registry_templates_for_tokenizers_without_one(tiny_models, name, prefix, eot):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_models["qwen2"])
    tok.chat_template = None
    tok.eos_token = "<|endoftext|>" if name == "chatglm3" else tok.eos_token
    fmt = resolve_format(tok, name)
    text = render_prompt(tok, fmt, CONVERSATION[:2])
    assert text.startswith(prefix) and "你好" in text
    assert fmt.eot == eot
    item = render_supervised(tok, fmt, CONVERSATION[:3])[0]
    assert item.text.endswith("皇上万福金安。" + eot)


def test_guess_uses_chatml_when_the_tokenizer_has_its_tokens(tiny_models):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_models["qwen2"])
    tok.chat_template = None
    assert resolve_format(tok).name == "chatml"


@pytest.mark.parametrize(
    "bad, message",
    [
        ([{"role": "robot", "content": "x"}], "role"),
        ([{"role": "user", "content": 3}], "content must be a string"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}], "empty assistant reply"),
        ([{"role": "user", "content": "hi"}], "no assistant reply"),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "system", "content": "x"},
                {"role": "assistant", "content": "y"},
            ],
            "system message may only come first",
        ),
    ],
)
def test_bad_conversations_are_rejected_with_the_message_index(tokenizers, bad, message):
    tok = tokenizers["qwen2"]
    with pytest.raises(TemplateError, match=message):
        render_supervised(tok, resolve_format(tok), bad)


def test_unknown_template_name_lists_the_known_ones(tokenizers):
    with pytest.raises(TemplateError, match="chatml"):
        resolve_format(tokenizers["qwen2"], "llama99")
