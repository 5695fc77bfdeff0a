"""Decoding Chinese text files: every common encoding is read back exactly and named."""

import codecs

import pytest

from rolechat.rag.decoding import DecodeError, decode

SIMPLIFIED = "知识库支持中文文档。我们今天讨论如何部署模型，以及这个系统的配置方法。"
TRADITIONAL = "這個知識庫支援中文文件。我們今天討論如何部署模型，以及這個系統的設定方法。"


@pytest.mark.parametrize(
    "data, text, encoding",
    [
        (SIMPLIFIED.encode("utf-8"), SIMPLIFIED, "utf-8"),
        (codecs.BOM_UTF8 + SIMPLIFIED.encode("utf-8"), SIMPLIFIED, "utf-8-sig"),
        (SIMPLIFIED.encode("utf-16"), SIMPLIFIED, "utf-16"),  # with BOM (LE here)
        (codecs.BOM_UTF16_BE + SIMPLIFIED.encode("utf-16-be"), SIMPLIFIED, "utf-16"),
        (SIMPLIFIED.encode("gbk"), SIMPLIFIED, "gbk"),
        ((SIMPLIFIED + "𠀀").encode("gb18030"), SIMPLIFIED + "𠀀", "gb18030"),  # outside GBK: only GB18030 has it
        (TRADITIONAL.encode("big5"), TRADITIONAL, "big5"),
    ],
)
def test_round_trip_and_name(data, text, encoding):
    decoded, name = decode(data)
    assert decoded == text
    assert name == encoding


def test_big5_is_not_mistaken_for_gb18030():
    data = TRADITIONAL.encode("big5")
    assert data.decode("gb18030")  # the trap: Big5 bytes also decode as GB18030, into nonsense
    assert decode(data) == (TRADITIONAL, "big5")


def test_short_gbk_text_is_still_gbk():
    assert decode("你好，世界".encode("gbk")) == ("你好，世界", "gbk")


def test_binary_is_refused():
    with pytest.raises(DecodeError, match="binary"):
        decode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
