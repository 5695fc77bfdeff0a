"""A character in the real app, in headless Chromium: import a PNG card from the chat page's sidebar, see its
greeting open the chat, send a message that triggers a lorebook entry and find the entry under "what the
model saw". Screenshots in the test's tmp dir (ROLECHAT_KEEP_SCREENSHOTS=DIR copies them there;
bench/screenshots.py refreshes docs/screenshots/ with the demo model). Skips without Chromium or playwright.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.browser_driver import ROOT, missing_browser, run_character_flow, start_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SAMPLE = ROOT / "examples" / "characters" / "suwan.json"  # 苏晚, a storyteller with a 12-entry lorebook


def png_card(out):
    from rolechat.conversation import Character, write_card

    data = json.loads(SAMPLE.read_text(encoding="utf-8"))
    # the tiny test tokenizer spends 1-2 tokens per character: the book's 400 tokens would not hold the
    # always-on entry beside the triggered ones (higher insertion orders come first, as in SillyTavern)
    data["data"]["character_book"]["token_budget"] = 2000
    return write_card(Character.from_dict(data), out)


def test_import_a_png_card_see_its_greeting_and_the_triggered_lore(_isolated_home, tiny_qwen2, tmp_path):
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    card = png_card(tmp_path / "苏晚.png")
    env = {
        "ROLECHAT_HOME": str(_isolated_home),
        "ROLECHAT_LLM_MODEL": str(tiny_qwen2),
        "ROLECHAT_LLM_TEMPERATURE": "0",
        "ROLECHAT_LLM_MAX_NEW_TOKENS": "16",
        "ROLECHAT_LLM_CONTEXT_LENGTH": "4096",  # the tiny tokenizer spends 1-2 tokens per character of the card
        "ROLECHAT_APP_SAMPLE_KB": "false",
    }
    server = start_server(env, tmp_path / "streamlit.log")
    try:
        result = run_character_flow(
            server.url,
            tmp_path / "shots",
            card=card,
            greeting="这位客官来得巧",
            message="西市有什么好玩的？",
            lore="西市是胡商云集之地",
        )
    except Exception:
        print(server.log_tail())
        raise
    finally:
        server.stop()
    assert result.exceptions == 0, server.log_tail()
    assert "这位客官来得巧" in result.greeting and "用户，您是想听" in result.greeting  # {{user}} replaced
    assert "苏晚" in result.reply and "词元/秒" in result.reply  # the reply came from the imported character
    assert "触发的设定" in result.seen and "西市" in result.seen  # the triggered entry, listed with its tokens
    assert "常驻设定" in result.seen and "词元" in result.seen
    assert "东市是" not in result.seen  # an entry the message did not trigger is not there
    for name, path in result.shots.items():
        assert path.stat().st_size > 10_000, name
    keep = os.environ.get("ROLECHAT_KEEP_SCREENSHOTS")
    if keep:
        shutil.copytree(tmp_path / "shots", keep, dirs_exist_ok=True)
