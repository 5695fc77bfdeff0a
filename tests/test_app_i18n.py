"""Every page renders in both languages, and each string has the same fields in Chinese and English."""

from __future__ import annotations

import re

import pytest

from tests.app_support import app_test
from ui import i18n
from ui.i18n import STRINGS


def test_both_languages_have_the_same_fields_for_every_string():
    fields = re.compile(r"{(\w+)")
    mismatched = [key for key, (zh, en) in STRINGS.items() if set(fields.findall(zh)) != set(fields.findall(en))]
    assert mismatched == []


@pytest.mark.parametrize(
    "page, title",
    [("ui/pages/chat.py", "Chat"), ("ui/pages/kb.py", "Knowledge bases"), ("ui/pages/train.py", "Train a persona")],
)
def test_every_page_renders_in_english(monkeypatch, tiny_qwen2, page, title):
    at = app_test(monkeypatch, tiny_qwen2).run()
    at.radio(key="lang").set_value("en").run()
    at.switch_page(page).run()
    assert not at.exception
    assert at.title[0].value == title
    assert at.radio(key="lang").value == "en"  # the choice survives the page switch


def test_a_malformed_entry_of_the_table_names_its_key(tmp_path):
    table = tmp_path / "strings.toml"
    table.write_text('"nav.chat" = ["聊天", "Chat"]\n"nav.kb" = ["知识库"]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"nav\.kb must be \[Chinese, English\], got \['知识库'\]"):
        i18n._load(table)
    table.write_text('"nav.chat" = ["聊天", "Chat"]\n', encoding="utf-8")
    assert i18n._load(table) == {"nav.chat": ("聊天", "Chat")}
