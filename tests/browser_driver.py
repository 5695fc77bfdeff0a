"""Drive the real app in headless Debian Chromium (Playwright, no browser download): start `streamlit run app.py`
on loopback, ask a question with the knowledge base on, wait for the streamed answer and its sources, switch
persona, visit the other pages, and save screenshots.

Used by tests/test_browser.py (tiny model, tmp home) and bench/screenshots.py (the real defaults, writing
docs/screenshots/). Chinese needs a CJK font (fonts-wqy-microhei) or it renders as boxes.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 900}


def missing_browser() -> str | None:
    """Why the browser flow cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found (apt-get install chromium fonts-wqy-microhei)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements-dev.txt)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""


def start_server(env: dict[str, str], log: Path, timeout: float = 90.0) -> Server:
    """`streamlit run app.py` on a free loopback port; returns once /_stcore/health answers ok."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "app.py"),
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=2) as resp:
                if resp.read().strip() == b"ok":
                    return server
        except OSError:
            time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"streamlit did not become healthy in {timeout}s:\n{server.log_tail()}")


@dataclass
class FlowResult:
    shots: dict[str, Path] = field(default_factory=dict)
    answers: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    exceptions: int = 0
    stopped: str = ""  # the stats line of the reply interrupted by the stop button


@contextlib.contextmanager
def app_page(url: str, out_dir: Path, timeout_ms: int, viewport: dict[str, int]) -> Iterator[Any]:
    """A headless Chromium page on the app at `url`, closed afterwards; if the flow fails, `out_dir/failure.png`
    shows what the page showed."""
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=viewport, locale="zh-CN")
            page.set_default_timeout(timeout_ms)
            page.goto(url)
            try:
                yield page
            except Exception:
                page.screenshot(path=str(out_dir / "failure.png"), full_page=True)
                raise
        finally:
            browser.close()


def run_flow(
    url: str,
    out_dir: Path,
    *,
    question: str,
    persona_label: str | None,
    follow_up: str = "你好",
    search: str = "",
    lint: bool = False,
    stop_check: bool = False,
    timeout_ms: int = 180_000,
    viewport: dict[str, int] = VIEWPORT,
) -> FlowResult:
    """Chat with RAG on and open the sources; switch persona and ask again (if `persona_label`); stop a long
    reply and ask again (if `stop_check`); visit the KB page (searching for `search`) and the training page
    (running the data check if `lint`)."""
    result = FlowResult()
    with app_page(url, out_dir, timeout_ms, viewport) as page:
        page.get_by_role("heading", name="聊天").wait_for()
        box = page.get_by_placeholder("输入消息，回车发送")
        box.wait_for()  # the model is loaded once the chat input is there

        messages = page.get_by_test_id("stChatMessage")
        box.fill(question)
        box.press("Enter")
        done = messages.filter(has_text="词元/秒")  # the stats line comes after the last streamed piece
        done.first.wait_for()
        answer = messages.nth(1)
        sources = answer.get_by_test_id("stExpander").filter(has_text="参考来源")
        if sources.count():
            sources.first.locator("summary").click()
            sources.first.get_by_text("[1]").first.wait_for()
            result.sources.append(sources.first.inner_text())
        result.answers.append(answer.inner_text())
        page.mouse.move(0, 0)
        result.shots["chat"] = _shot(page, out_dir / "chat.png", result)

        sidebar = page.get_by_test_id("stSidebar")
        if persona_label:
            sidebar.get_by_test_id("stSelectbox").filter(has_text="角色").first.click()
            page.get_by_role("option", name=persona_label).click()
            page.wait_for_timeout(800)  # the rerun that applies the new persona
            box.fill(follow_up)
            box.press("Enter")
            page.wait_for_function(
                "() => [...document.querySelectorAll('[data-testid=stChatMessage]')]"
                ".filter(m => m.innerText.includes('词元/秒')).length >= 2"
            )
            result.answers.append(messages.nth(3).inner_text())
            page.mouse.move(0, 0)
            result.shots["persona"] = _shot(page, out_dir / "chat-persona.png", result)

        if stop_check:
            _stop_long_reply(page, result)

        open_page(page, "知识库", page.get_by_role("tab", name="已有知识库"))
        if search:
            page.get_by_role("tab", name="检索测试").click()
            query = page.get_by_placeholder("输入一个问题，查看检索到的片段")
            query.fill(search)
            query.press("Enter")
            page.get_by_text("毫秒").first.wait_for()  # "{n} 个片段 · {ms} 毫秒" above the ranked chunks
            result.sources.append(page.locator("body").inner_text())
        result.shots["kb"] = _shot(page, out_dir / "knowledge-base.png", result)
        open_page(page, "训练角色", page.get_by_role("heading", name="数据集"))
        if lint:
            page.get_by_role("button", name="检查数据").click()
            page.get_by_text("渲染后的第一个样本").wait_for()
        result.shots["train"] = _shot(page, out_dir / "training.png", result)
    return result


def open_page(page, link: str, ready, tries: int = 3) -> None:
    """Click the sidebar link `link` once the app is idle and wait for `ready` (a locator on the new page).

    A click that lands while a script run is ending can be lost: the chat page ends each reply with
    st.rerun(), and Streamlit lets the later of two pending reruns pick the page, so the rerun keeps the chat
    page. A user clicks again; so does this, up to `tries` times."""
    for attempt in range(tries):
        page.locator("[data-testid=stApp][data-test-script-state=notRunning]").wait_for()
        page.get_by_test_id("stSidebar").get_by_role("link", name=link).click()
        try:
            ready.wait_for(timeout=20_000 if attempt < tries - 1 else None)
            return
        except Exception:
            if attempt == tries - 1:
                raise


def _stop_long_reply(page, result: FlowResult) -> None:
    """A long reply is cut by the stop button, kept as stopped, and the model answers the next message."""
    sidebar = page.get_by_test_id("stSidebar")
    limit = sidebar.get_by_label("最大生成词元数")
    before = limit.input_value()
    limit.fill("4000")
    limit.press("Enter")
    page.wait_for_timeout(800)
    box = page.get_by_placeholder("输入消息，回车发送")
    messages = page.get_by_test_id("stChatMessage")
    count = messages.count()
    # Click the stop button the moment it is drawn, from inside the page: a tiny model's whole reply can take a
    # quarter of a second, and the button is redrawn while the reply streams, so a click from outside (find,
    # wait until stable, click) can lose the race.
    page.evaluate(
        """() => {
            const observer = new MutationObserver(() => {
                const b = [...document.querySelectorAll('button')].find(e => e.innerText.includes('停止生成'));
                if (b) { observer.disconnect(); b.click(); }
            });
            observer.observe(document.body, {childList: true, subtree: true});
        }"""
    )
    box.fill("讲一个很长很长的故事")
    box.press("Enter")
    stopped = messages.filter(has_text="（已停止）")
    stopped.first.wait_for()
    result.stopped = stopped.first.inner_text()
    limit.fill(before)
    limit.press("Enter")
    page.wait_for_timeout(800)
    box.fill("再见")
    box.press("Enter")
    page.wait_for_function(
        "n => [...document.querySelectorAll('[data-testid=stChatMessage]')]"
        ".filter(m => m.innerText.includes('词元/秒')).length >= n",
        arg=count // 2 + 2,
    )
    result.answers.append(messages.nth(count + 3).inner_text())


def _shot(page, path: Path, result: FlowResult) -> Path:
    page.wait_for_timeout(600)  # let the last websocket deltas paint
    result.exceptions += page.get_by_test_id("stException").count()
    page.screenshot(path=str(path), full_page=True)
    return path


@dataclass
class CharacterFlowResult:
    shots: dict[str, Path] = field(default_factory=dict)
    greeting: str = ""  # the first chat message once the card is imported
    reply: str = ""
    seen: str = ""  # the "what the model saw" expander's text under the reply
    exceptions: int = 0


def run_character_flow(
    url: str,
    out_dir: Path,
    *,
    card: Path,
    greeting: str,
    message: str,
    lore: str,
    timeout_ms: int = 180_000,
    viewport: dict[str, int] = VIEWPORT,
) -> CharacterFlowResult:
    """Import the character card `card` from the chat page's sidebar, wait for its greeting (text `greeting`)
    to open the chat, send `message` (which should trigger a lorebook entry), wait for the reply and open "what
    the model saw" under it until the entry's text `lore` shows; screenshots of both steps."""
    from playwright.sync_api import Error as PlaywrightError

    result = CharacterFlowResult()
    with app_page(url, out_dir, timeout_ms, viewport) as page:
        box = page.get_by_placeholder("输入消息，回车发送")
        box.wait_for()
        sidebar = page.get_by_test_id("stSidebar")
        importer = sidebar.get_by_test_id("stExpander").filter(has_text="导入角色卡")
        importer.locator("summary").click()
        importer.locator("input[type=file]").set_input_files(str(card))
        page.wait_for_timeout(800)  # the upload reaches the server before the button is enabled
        importer.get_by_role("button", name="导入", exact=True).click()
        messages = page.get_by_test_id("stChatMessage")
        messages.filter(has_text=greeting).first.wait_for()
        result.greeting = messages.first.inner_text()
        page.mouse.move(0, 0)
        result.shots["greeting"] = _shot(page, out_dir / "character-greeting.png", result)

        box.fill(message)
        box.press("Enter")
        done = messages.filter(has_text="词元/秒")
        done.first.wait_for()
        page.wait_for_timeout(1500)  # the app reruns once a reply is complete (to draw its actions): let it land
        reply = messages.nth(2)
        result.reply = reply.inner_text()
        seen = reply.get_by_test_id("stExpander").filter(has_text="模型看到的内容")
        seen.first.locator("summary").click()
        seen.first.get_by_text(lore).first.wait_for()
        result.seen = seen.first.inner_text()
        try:
            seen.first.scroll_into_view_if_needed(timeout=10_000)
        except PlaywrightError:  # redrawn meanwhile: only the screenshot's framing depends on it
            pass
        page.mouse.move(0, 0)
        result.shots["prompt"] = _shot(page, out_dir / "character-prompt.png", result)
    return result


def pick_options(page, widget, labels: tuple[str, ...] | list[str], attempts: int = 3) -> None:
    """Pick `labels` in the Streamlit multiselect `widget`: type each label into its box, press Enter, and wait for
    its tag. Streamlit's multiselect stays open after a pick and redraws its option list on every rerun (and a
    second click on the box closes it), so clicking an option element can hit one that was just detached; the
    typed filter plus Enter does not depend on any one element, and a pick whose tag does not show is retried."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = widget.get_by_role("combobox")
    for label in labels:
        tag = widget.locator("[data-tag]").filter(has_text=label)
        for attempt in range(attempts):
            if tag.count():
                break
            box.fill(label)
            page.get_by_role("option", name=label, exact=True).wait_for()
            box.press("Enter")
            try:
                tag.first.wait_for(timeout=15_000)
            except PlaywrightTimeout:
                if attempt == attempts - 1:
                    raise
    page.keyboard.press("Escape")


@dataclass
class SceneFlowResult:
    replies: tuple[str, str] = ("", "")  # the two replies as shown
    resumed: list[str] = field(default_factory=list)  # the first three messages after resuming from the sidebar
    listed: str = ""  # the chat's entry in the sidebar after the reload
    shots: dict[str, Path] = field(default_factory=dict)
    exceptions: int = 0


def run_scene_flow(
    url: str,
    out_dir: Path,
    labels: tuple[str, str],
    message: str,
    timeout_ms: int = 180_000,
    viewport: dict[str, int] = VIEWPORT,
) -> SceneFlowResult:
    """Pick two characters for a scene, send `message`, wait for both replies; reload and resume the chat from
    the sidebar. Screenshots in `out_dir`: scene.png (both replies) and scene-reloaded.png (the reloaded page, a
    fresh chat with the scene listed under 对话记录 in the sidebar)."""

    def two_replies(page) -> None:
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-testid=stChatMessage]')]"
            ".filter(m => m.innerText.includes('词元/秒')).length >= 2"
        )
        page.wait_for_timeout(1500)  # the app reruns once a reply is complete (to draw its actions): let it land
        page.locator("[data-testid=stApp][data-test-script-state=notRunning]").wait_for()  # and its last run end

    result = SceneFlowResult()
    with app_page(url, out_dir, timeout_ms, viewport) as page:
        box = page.get_by_placeholder("输入消息，回车发送")
        box.wait_for()
        sidebar = page.get_by_test_id("stSidebar")
        pick_options(page, sidebar.get_by_test_id("stMultiSelect").filter(has_text="群聊场景"), labels)
        sidebar.get_by_text("谁来发言").wait_for()  # the server has the scene
        box.fill(message)
        box.press("Enter")
        two_replies(page)
        messages = page.get_by_test_id("stChatMessage")
        result.replies = (messages.nth(1).inner_text(), messages.nth(2).inner_text())
        page.mouse.move(0, 0)
        result.shots["scene"] = _shot(page, out_dir / "scene.png", result)
        page.reload()
        box.wait_for()
        listed = sidebar.get_by_role("button").filter(has_text=message)
        listed.first.wait_for()
        result.listed = listed.first.inner_text()
        page.mouse.move(0, 0)
        result.shots["reloaded"] = _shot(page, out_dir / "scene-reloaded.png", result)
        listed.first.click()
        two_replies(page)
        result.resumed = [messages.nth(i).inner_text() for i in range(3)]
    return result
