"""Tiny causal LMs with a tokenizer trained in-process: the test stand-ins for Qwen2, Qwen3 and GLM-4.

Random weights, so their text is junk: tests assert plumbing and properties (ids, logits, masks), not
wording. Each build takes a few hundredths of a second after the first imports.
"""

from __future__ import annotations

import functools
from pathlib import Path

SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "[gMASK]",
    "<sop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
]

CHATML = (
    "{%- for m in messages -%}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)

# Qwen3-style: with thinking disabled the generation prompt carries an empty think block.
CHATML_THINKING = (
    "{%- for m in messages -%}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}"
    "{%- if enable_thinking is defined and not enable_thinking -%}{{ '<think>\n\n</think>\n\n' }}{%- endif -%}"
    "{%- endif -%}"
)

# GLM-4 style: role tokens, no end-of-turn marker (a reply ends with eos / the next role token).
GLM4_TEMPLATE = (
    "[gMASK]<sop>{%- for m in messages -%}{{ '<|' + m['role'] + '|>\n' + m['content'] }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\n' }}{%- endif -%}"
)

# Modelled on the real templates' structure (Qwen/Qwen2.5-*-Instruct, Qwen/Qwen3-*, Qwen/Qwen3-*-Thinking-2507
# tokenizer_config.json), trimmed of tool calls: a default system prompt (Qwen2.5); the last-query bookkeeping,
# think blocks stripped from history and the empty think block when thinking is off (Qwen3); a generation
# prompt that always opens `<think>\n` (Thinking-2507).
QWEN25_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}"
    "{%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if message.role == 'user' or (message.role == 'system' and not loop.first)"
    " or message.role == 'assistant' %}{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)

_QWEN3_BODY = (
    "{%- if messages[0].role == 'system' %}{{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}"
    "{%- endif %}"
    "{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}"
    "{%- for message in messages[::-1] %}{%- set index = (messages|length - 1) - loop.index0 %}"
    "{%- if ns.multi_step_tool and message.role == 'user' and not (message.content.startswith('<tool_response>')"
    " and message.content.endswith('</tool_response>')) %}"
    "{%- set ns.multi_step_tool = false %}{%- set ns.last_query_index = index %}{%- endif %}{%- endfor %}"
    "{%- for message in messages %}{%- set content = message.content %}"
    "{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>\n' }}"
    "{%- elif message.role == 'assistant' %}{%- set reasoning_content = '' %}"
    "{%- if '</think>' in content %}"
    "{%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\n') %}{%- endif %}"
    "{%- if loop.index0 > ns.last_query_index and (loop.last or reasoning_content) %}"
    "{{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n'"
    " + content.lstrip('\n') }}"
    "{%- else %}{{- '<|im_start|>' + message.role + '\n' + content }}{%- endif %}"
    "{{- '<|im_end|>\n' }}{%- endif %}{%- endfor %}"
)
QWEN3_TEMPLATE = _QWEN3_BODY + (
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\n\n</think>\n\n' }}{%- endif %}"
    "{%- endif %}"
)
QWEN3_THINKING_TEMPLATE = (
    _QWEN3_BODY + "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n<think>\n' }}{%- endif %}"
)

# Qwen2's pre-tokenizer: newline runs are one pre-token (`\s*[\r\n]+`), so "\n\n" can be one BPE token.
QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

LINES = [
    "你好，我是一个测试模型。",
    "今天天气很好，我们去公园散步吧。",
    "臣妾做不到啊！",
    "皇上万福金安。",
    "Hello world, this is a tiny model.",
    "The quick brown fox jumps over the lazy dog.",
    "知识库问答需要检索相关的文档片段。",
    "请用中文回答问题。",
    "模型训练需要数据、算力和耐心。",
    "北京是中国的首都。",
    "上海是一座国际化大都市。",
    "角色扮演聊天机器人可以模仿人物的说话风格。",
] * 30

ARCHS = ("qwen2", "qwen3", "glm4")


@functools.cache
def _qwen_bpe() -> str:
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    seps = ["\n", "\n\n", "\n\n\n", " "] * len(LINES)
    corpus = [sep.join(LINES[i : i + 4]) for i, sep in zip(range(0, len(LINES), 4), seps)]
    bpe.train_from_iterator(
        corpus + LINES + ["\n\n\n".join(LINES[:12])] * 40,
        trainers.BpeTrainer(
            vocab_size=1200, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    return bpe.to_str()


def build_qwen_tokenizer(chat_template: str = QWEN25_TEMPLATE):
    """A Qwen-like byte-level BPE tokenizer: Qwen2's pre-tokenizer, newline runs merged ("ĊĊ", "ĊĊĊ"), the SPECIALS
    as special tokens and `<think>`/`</think>` as non-special added tokens, as in Qwen3. Trained once per
    process; each call returns a fresh tokenizer object."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_qwen_bpe()),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[s for s in SPECIALS if s not in ("<|endoftext|>", "<|im_end|>")],
    )
    tok.add_tokens(["<think>", "</think>"])  # Qwen3: added, but not special
    tok.chat_template = chat_template
    return tok


def build_tiny(out_dir: str | Path, model_type: str = "qwen2", seed: int = 0, tokenizer=None) -> Path:
    """Build and save a 2-layer model of `model_type` with a fresh BPE tokenizer and chat template (or with
    `tokenizer`)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    out = Path(out_dir)
    if tokenizer is not None:
        return _save_model(out, model_type, seed, tokenizer)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        LINES,
        trainers.BpeTrainer(
            vocab_size=1000, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    glm = model_type.startswith("glm")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|endoftext|>" if glm else "<|im_end|>",
        pad_token="<|observation|>" if glm else "<|endoftext|>",
        additional_special_tokens=[s for s in SPECIALS if s not in ("<|endoftext|>", "<|im_end|>")],
    )
    tok.chat_template = GLM4_TEMPLATE if glm else CHATML_THINKING if model_type == "qwen3" else CHATML
    return _save_model(out, model_type, seed, tok)


def _save_model(out: Path, model_type: str, seed: int, tok) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    torch.manual_seed(seed)
    cfg = AutoConfig.for_model(
        model_type,
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    model = AutoModelForCausalLM.from_config(cfg)
    model.generation_config = GenerationConfig(
        max_new_tokens=16, do_sample=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
