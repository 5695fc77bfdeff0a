"""A two-character scene in the real app, in headless Chromium: pick two personas (two adapters) for a scene,
send a message and see both characters speak, each under its own name; reload the page and find the
conversation in the sidebar, then resume it. Screenshots in the test's tmp dir (ROLECHAT_KEEP_SCREENSHOTS=DIR
copies them there). Skips without Chromium or playwright.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.browser_driver import missing_browser, run_scene_flow, start_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# both named, beta first: natural order (the default, as SillyTavern's) has the named ones answer in the order
# named; an unnamed one speaks only when its talkativeness beats a random roll
MESSAGE = "贝塔，你好，阿尔法也说说"


def test_a_two_character_scene_both_speak_and_the_chat_is_listed_after_a_reload(_isolated_home, tiny_qwen2, tmp_path):
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    from rolechat import settings
    from tests.app_support import make_adapter

    make_adapter(tiny_qwen2, settings.personas_dir() / "alpha", 1, display_name="阿尔法")
    make_adapter(tiny_qwen2, settings.personas_dir() / "beta", 2, display_name="贝塔")
    env = {
        "ROLECHAT_HOME": str(_isolated_home),
        "ROLECHAT_LLM_MODEL": str(tiny_qwen2),
        "ROLECHAT_LLM_TEMPERATURE": "0",
        "ROLECHAT_LLM_MAX_NEW_TOKENS": "16",
        "ROLECHAT_APP_SAMPLE_KB": "false",
    }
    shots = tmp_path / "shots"
    server = start_server(env, tmp_path / "streamlit.log")
    try:
        result = run_scene_flow(server.url, shots, ("阿尔法 (alpha)", "贝塔 (beta)"), MESSAGE)
    except Exception:
        print(server.log_tail())
        raise
    finally:
        server.stop()
    keep = os.environ.get("ROLECHAT_KEEP_SCREENSHOTS")
    if keep:
        shutil.copytree(shots, keep, dirs_exist_ok=True)
    (first, second), resumed = result.replies, result.resumed
    assert result.exceptions == 0, server.log_tail()
    assert "阿尔法" in result.listed and "贝塔" in result.listed  # the chat is in the sidebar after the reload
    assert "贝塔" in first and "阿尔法" in second  # the named character first, each under its own name
    assert "词元/秒" in first and "词元/秒" in second

    def text(shown: str) -> str:  # the message without its action icons (drawn once the reply is complete)
        return shown.split("edit icon")[0].strip()

    assert MESSAGE in resumed[0] and text(resumed[1]) == text(first) and text(resumed[2]) == text(second)
