"""Tiny causal LMs with a tokenizer trained in-process: the test stand-ins for Qwen2, Qwen3 and GLM-4.

Random weights, so their text is junk: tests assert plumbing and properties (ids, logits, masks), not
wording. Each build takes a few hundredths of a second after the first imports.
"""

from __future__ import annotations

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


def build_tiny(out_dir: str | Path, model_type: str = "qwen2", seed: int = 0) -> Path:
    """Build and save a 2-layer model of `model_type` with a fresh BPE tokenizer and chat template."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig, PreTrainedTokenizerFast

    out = Path(out_dir)
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
