"""The stream shows whole characters only: byte tokens of an unfinished or broken character never show as U+FFFD."""

from __future__ import annotations

import pytest
import torch

from rolechat.llm.config import GenerationParams
from rolechat.llm.generation import GenerationStream


@pytest.fixture(scope="module")
def byte_tokenizer():
    """A byte-level tokenizer with no merges: every Chinese character is three byte tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    bpe.train_from_iterator(
        [""], trainers.BpeTrainer(vocab_size=300, special_tokens=["<|im_end|>"], initial_alphabet=alphabet)
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|im_end|>")
    assert len(tok) == 257  # 256 bytes + <|im_end|>: nothing merged
    return tok


class ScriptedModel(torch.nn.Module):
    """Stands in for a causal LM: `generate` streams a fixed list of token ids."""

    def __init__(self, script: list[int]) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.script = script

    def generate(self, input_ids, streamer, **kwargs):
        streamer.put(input_ids)
        for token in self.script:
            streamer.put(torch.tensor([token]))
        streamer.end()


def byte_ids(tok, data: bytes) -> list[int]:
    """Token ids of raw bytes (one token each), possibly not valid UTF-8."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    table = bytes_to_unicode()
    return [tok.convert_tokens_to_ids(table[b]) for b in data]


def stream(tok, script: list[int]) -> tuple[list[str], str]:
    gen = GenerationStream(ScriptedModel(script), tok, [0], GenerationParams(temperature=0), stop_ids=[])
    pieces = list(gen)
    return pieces, gen.text


def test_an_unfinished_character_at_the_end_is_dropped(byte_tokenizer):
    tok = byte_tokenizer
    ids = byte_ids(tok, "你好".encode() + "吗".encode()[:2])
    assert "\ufffd" in tok.decode(ids)  # plain decoding shows the broken character
    pieces, text = stream(tok, ids)
    assert text == "你好"
    assert all("\ufffd" not in p for p in pieces)


def test_a_character_is_shown_only_once_all_its_bytes_came(byte_tokenizer):
    tok = byte_tokenizer
    pieces, text = stream(tok, byte_ids(tok, "茶园".encode()))
    assert pieces == ["茶", "园"]
    assert text == "茶园"


def test_byte_tokens_that_never_form_a_character_are_left_out(byte_tokenizer):
    tok = byte_tokenizer
    broken = "你".encode() + b"\xe5\xa5" + "好".encode() + b"\x80" + "。".encode()
    pieces, text = stream(tok, byte_ids(tok, broken))
    assert text == "你好。"
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
