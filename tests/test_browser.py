"""The real app in a real browser: `streamlit run app.py` on loopback, driven by headless Debian Chromium.

Asks a question with the knowledge base on, waits for the streamed answer and its numbered sources,
switches persona and asks again, visits the other pages, and saves screenshots (in the test's tmp dir;
bench/screenshots.py refreshes docs/screenshots/). Skips when /usr/bin/chromium or playwright is absent.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.browser_driver import missing_browser, run_flow, start_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture()
def prepared_home(_isolated_home, tiny_qwen2, tmp_path):
    """A home with one persona and one knowledge base (fake vectors; retrieval is BM25)."""
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from rolechat import settings
    from rolechat.rag import KnowledgeBase
    from tests.app_support import make_adapter, write_docs

    make_adapter(tiny_qwen2, settings.personas_dir() / "alpha", 1, display_name="阿尔法", system="你是阿尔法。")
    kb = KnowledgeBase("城市", embeddings=DeterministicFakeEmbedding(size=64))
    kb.index([write_docs(tmp_path / "docs")])
    kb.close()
    return _isolated_home


def test_chat_with_sources_and_persona_switch_in_chromium(prepared_home, tiny_qwen2, tmp_path):
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    env = {
        "ROLECHAT_HOME": str(prepared_home),
        "ROLECHAT_LLM_MODEL": str(tiny_qwen2),
        "ROLECHAT_LLM_TEMPERATURE": "0",
        "ROLECHAT_LLM_MAX_NEW_TOKENS": "24",
        "ROLECHAT_RAG_MODE": "bm25",
        "ROLECHAT_APP_SAMPLE_KB": "false",
    }
    server = start_server(env, tmp_path / "streamlit.log")
    try:
        result = run_flow(
            server.url,
            tmp_path / "shots",
            question="北京是哪个国家的首都？",
            persona_label="阿尔法 (alpha)",
            search="外滩",
            stop_check=True,
        )
    except Exception:
        print(server.log_tail())
        raise
    finally:
        server.stop()
    assert result.exceptions == 0, server.log_tail()
    assert result.sources and "beijing.md" in result.sources[0]  # numbered sources of the RAG answer
    assert "城市" in result.answers[0]  # the stats line names the knowledge base used
    assert "阿尔法" in result.answers[1]  # the second answer came from the switched persona
    assert "shanghai.md" in result.sources[1]  # the KB page's search shows ranked chunks
    assert "（已停止）" in result.stopped  # the stop button cut the long reply and kept it
    assert "词元/秒" in result.answers[2] and "已停止" not in result.answers[2]  # and the model was free again
    for name, path in result.shots.items():
        assert path.stat().st_size > 10_000, name
    keep = os.environ.get("ROLECHAT_KEEP_SCREENSHOTS")
    if keep:
        shutil.copytree(tmp_path / "shots", keep, dirs_exist_ok=True)
