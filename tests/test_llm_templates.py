"""llm.templates (+ llm.encoding's training ids): the one rendering path, checked against each tokenizer's own
apply_chat_template."""

from __future__ import annotations

import pytest

from rolechat.llm.encoding import encode_turns, supervised_rows
from rolechat.llm.templates import TemplateError, render_prompt, resolve_format, stop_token_ids
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


def supervised_text(tok, ids, labels):
    """The supervised stretches of a row, decoded."""
    out, run = [], []
    for tid, label in zip([*ids, None], [*labels, -100]):
        if label != -100:
            run.append(tid)
        elif run:
            out.append(tok.decode(run))
            run = []
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_supervised_ids_are_exactly_replies_plus_end_of_turn(tokenizers, arch):
    tok = tokenizers[arch]
    fmt = resolve_format(tok)
    supervised = []
    for row in supervised_rows(encode_turns(tok, fmt, CONVERSATION)):
        assert len(row.input_ids) == len(row.labels)
        supervised += [t for t, lab in zip(row.input_ids, row.labels) if lab != -100]
    eot_id = tok.convert_tokens_to_ids(fmt.eot)
    replies = [m["content"] for m in CONVERSATION if m["role"] == "assistant"]
    expected = [tok(r, add_special_tokens=False)["input_ids"] + [eot_id] for r in replies]
    assert supervised == [t for chunk in expected for t in chunk]


@pytest.mark.parametrize("arch", ARCHS)
def test_training_prompt_is_token_identical_to_inference_prompt(tokenizers, arch):
    tok = tokenizers[arch]
    fmt = resolve_format(tok)
    turns = [i for i, m in enumerate(CONVERSATION) if m["role"] == "assistant"]
    rows = supervised_rows(encode_turns(tok, fmt, CONVERSATION))
    assert [k for row in rows for k in row.turns] == turns
    for row in rows:
        starts = [i for i, lab in enumerate(row.labels) if lab != -100 and (i == 0 or row.labels[i - 1] == -100)]
        for start, k in zip(starts, row.turns, strict=True):
            prompt = render_prompt(tok, fmt, CONVERSATION[:k])
            assert row.input_ids[:start] == tok(prompt, add_special_tokens=False)["input_ids"]


def test_thinking_template_trains_on_what_inference_renders(tokenizers):
    tok = tokenizers["qwen3"]
    fmt = resolve_format(tok)
    rows = supervised_rows(encode_turns(tok, fmt, CONVERSATION))
    # Qwen3-style history drops the empty think block, so each turn becomes its own example.
    assert len(rows) == 2
    for k, row in zip((2, 4), rows):
        assert "<think>\n\n</think>\n\n" + CONVERSATION[k]["content"] in tok.decode(row.input_ids)
    thinking = render_prompt(tok, fmt, CONVERSATION[:2], enable_thinking=True)
    assert not thinking.endswith("</think>\n\n")


def test_last_turn_only_supervises_one_reply(tokenizers):
    tok = tokenizers["qwen2"]
    rows = supervised_rows(encode_turns(tok, resolve_format(tok), CONVERSATION, last_only=True))
    assert [t for row in rows for t in supervised_text(tok, row.input_ids, row.labels)] == [
        "臣妾陪皇上去御花园散步。<|im_end|>"
    ]


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
    (row,) = supervised_rows(encode_turns(tok, fmt, CONVERSATION[:3]))
    assert tok.decode(row.input_ids).endswith("皇上万福金安。" + eot)


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
        encode_turns(tok, resolve_format(tok), bad)


def test_unknown_template_name_lists_the_known_ones(tokenizers):
    with pytest.raises(TemplateError, match="chatml"):
        resolve_format(tokenizers["qwen2"], "llama99")
