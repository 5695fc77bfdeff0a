"""A two-character scene in the real app, in headless Chromium: pick two personas (two adapters) for a scene,
send a message and see both characters speak, each under its own name; reload the page and find the
conversation in the sidebar, then resume it. Screenshots in the test's tmp dir (ROLECHAT_KEEP_SCREENSHOTS=DIR
copies them there). Skips without Chromium or playwright.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.browser_driver import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, missing_browser, start_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _shot(page, path) -> None:
    page.mouse.move(0, 0)
    page.wait_for_timeout(600)  # let the last websocket deltas paint
    page.screenshot(path=str(path), full_page=True)


def test_a_two_character_scene_both_speak_and_the_chat_is_listed_after_a_reload(_isolated_home, tiny_qwen2, tmp_path):
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

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
    shots.mkdir()
    server = start_server(env, tmp_path / "streamlit.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport=VIEWPORT, locale="zh-CN")
                page.set_default_timeout(180_000)
                page.goto(server.url)
                box = page.get_by_placeholder("输入消息，回车发送")
                box.wait_for()
                sidebar = page.get_by_test_id("stSidebar")
                scene = sidebar.get_by_test_id("stMultiSelect").filter(has_text="群聊场景")
                for label in ("阿尔法 (alpha)", "贝塔 (beta)"):
                    scene.click()
                    page.get_by_role("option", name=label).click()
                    page.wait_for_timeout(800)  # the rerun that applies the choice
                sidebar.get_by_text("谁来发言").wait_for()
                page.keyboard.press("Escape")
                box.fill("贝塔，你好")
                box.press("Enter")
                page.wait_for_function(
                    "() => [...document.querySelectorAll('[data-testid=stChatMessage]')]"
                    ".filter(m => m.innerText.includes('词元/秒')).length >= 2"
                )
                messages = page.get_by_test_id("stChatMessage")
                first, second = messages.nth(1).inner_text(), messages.nth(2).inner_text()
                _shot(page, shots / "scene.png")

                page.reload()
                box.wait_for()
                listed = sidebar.get_by_role("button").filter(has_text="贝塔，你好")
                listed.first.wait_for()
                assert "阿尔法" in listed.first.inner_text() and "贝塔" in listed.first.inner_text()
                listed.first.click()
                page.wait_for_function(
                    "() => [...document.querySelectorAll('[data-testid=stChatMessage]')]"
                    ".filter(m => m.innerText.includes('词元/秒')).length >= 2"
                )
                resumed = [messages.nth(i).inner_text() for i in range(3)]
                exceptions = page.get_by_test_id("stException").count()
                _shot(page, shots / "scene-resumed.png")
            finally:
                browser.close()
    except Exception:
        print(server.log_tail())
        raise
    finally:
        server.stop()
    keep = os.environ.get("ROLECHAT_KEEP_SCREENSHOTS")
    if keep:
        shutil.copytree(shots, keep, dirs_exist_ok=True)
    assert exceptions == 0, server.log_tail()
    assert "贝塔" in first and "阿尔法" in second  # the named character first, each under its own name
    assert "词元/秒" in first and "词元/秒" in second

    def text(shown: str) -> str:  # the message without its action icons (drawn once the reply is complete)
        return shown.split("edit icon")[0].strip()

    assert "贝塔，你好" in resumed[0] and text(resumed[1]) == text(first) and text(resumed[2]) == text(second)
