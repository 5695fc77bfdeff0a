"""Safe by default, under AppTest and for real: the app binds to loopback; served beyond it, it refuses to
serve pages without a password and asks for it with one; typed folders must lie inside `[app] path_roots`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib

import pytest

from tests.app_support import ROOT, app_test, write_docs
from ui import access
from ui.password import hash_password

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def stored_hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture(autouse=True)
def _fresh_failures(monkeypatch):
    monkeypatch.setattr(access, "FAILURES", access._Failures())


def on_chat_page(at) -> bool:
    return bool(at.chat_input) and any(t.value == "聊天" for t in at.title)


def log_in(at, password: str):
    at.text_input(key="auth_password").input(password)
    return at.button[0].click().run()  # the form's submit button


def test_the_repos_streamlit_config_binds_loopback():
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert access.is_loopback(cfg["server"]["address"])


def test_streamlit_run_app_prints_no_network_url():
    """The README's command, as a user runs it: only a local URL, and nothing listens beyond loopback."""
    env = {**os.environ, "ROLECHAT_APP_SAMPLE_KB": "false"}
    env.pop("STREAMLIT_SERVER_ADDRESS", None)
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", "0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "URL:" in line:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    out = "".join(lines)
    urls = re.findall(r"URL: (\S+)", out)
    assert urls and all(u.startswith("http://127.0.0.1:") for u in urls), out
    assert "Network URL" not in out and "External URL" not in out


def test_loopback_without_a_password_serves_the_pages(monkeypatch, tiny_qwen2):
    at = app_test(monkeypatch, tiny_qwen2).run()
    assert not at.exception
    assert on_chat_page(at)
    assert not [b for b in at.button if b.key == "auth_logout"]


@pytest.mark.parametrize("address", [None, "0.0.0.0", "192.168.1.20"])
def test_served_to_others_without_a_password_serves_nothing_and_says_what_to_set(monkeypatch, tiny_qwen2, address):
    at = app_test(monkeypatch, tiny_qwen2, address=address).run()
    assert not at.exception
    assert not on_chat_page(at) and not at.text_input  # no page, no login form
    assert "没有设置密码" in at.error[0].value
    fix = at.markdown[0].value
    assert "python -m ui.password" in fix and "password_hash" in fix and "--server.address 127.0.0.1" in fix
    assert "ROLECHAT_APP_PASSWORD_HASH" in fix
    at.switch_page("ui/pages/kb.py").run()  # asking for another page directly gets the same refusal
    assert not any(t.value == "知识库" for t in at.title) and "没有设置密码" in at.error[0].value


def test_the_refusal_is_in_english_too(monkeypatch, tiny_qwen2):
    at = app_test(monkeypatch, tiny_qwen2, address="0.0.0.0").run()
    at.radio(key="lang").set_value("en").run()
    assert "no password is set" in at.error[0].value
    assert "Serve it to others" in at.markdown[0].value


def test_a_password_gates_every_page(monkeypatch, tiny_qwen2, stored_hash):
    monkeypatch.setenv("ROLECHAT_APP_PASSWORD_HASH", stored_hash)
    at = app_test(monkeypatch, tiny_qwen2, address="0.0.0.0").run()
    assert not at.exception
    assert not on_chat_page(at)
    assert at.text_input(key="auth_password").proto.type == at.text_input(key="auth_password").proto.PASSWORD
    at.switch_page("ui/pages/kb.py").run()
    assert not any(t.value == "知识库" for t in at.title)

    log_in(at, "correct horse battery!")
    assert "密码不对" in at.error[0].value
    assert not on_chat_page(at)

    log_in(at, PASSWORD)
    assert not at.exception
    assert on_chat_page(at) or any(t.value == "知识库" for t in at.title)
    at.switch_page("ui/pages/kb.py").run()
    assert any(t.value == "知识库" for t in at.title)
    at.switch_page("ui/pages/chat.py").run()
    assert on_chat_page(at)

    at.button(key="auth_logout").click().run()
    assert not on_chat_page(at) and at.text_input(key="auth_password")


def test_changing_the_password_logs_sessions_out(monkeypatch, tiny_qwen2, stored_hash):
    monkeypatch.setenv("ROLECHAT_APP_PASSWORD_HASH", stored_hash)
    at = app_test(monkeypatch, tiny_qwen2, address="0.0.0.0").run()
    log_in(at, PASSWORD)
    assert on_chat_page(at)
    monkeypatch.setenv("ROLECHAT_APP_PASSWORD_HASH", hash_password("a new password"))
    at.run()
    assert not on_chat_page(at) and at.text_input(key="auth_password")


def test_repeated_wrong_passwords_lock_the_client_out(monkeypatch, tiny_qwen2, stored_hash):
    monkeypatch.setenv("ROLECHAT_APP_PASSWORD_HASH", stored_hash)
    now = [1000.0]
    monkeypatch.setattr(access, "_clock", lambda: now[0])
    at = app_test(monkeypatch, tiny_qwen2, address="0.0.0.0").run()
    for _ in range(access.MAX_FAILURES - 1):
        log_in(at, "guess")
        assert "密码不对" in at.error[0].value
    log_in(at, "guess")
    assert "秒后再试" in at.error[0].value
    log_in(at, PASSWORD)  # even the right password waits out the lockout
    assert "秒后再试" in at.error[0].value and not on_chat_page(at)
    now[0] += access.LOCKOUT_SECONDS + 1
    log_in(at, PASSWORD)
    assert on_chat_page(at)


def test_an_invalid_config_refuses_when_served_to_others(monkeypatch, tiny_qwen2):
    monkeypatch.setenv("ROLECHAT_APP_PASSWORD_HASH", "my-plain-password")
    at = app_test(monkeypatch, tiny_qwen2, address="0.0.0.0").run()
    assert not at.exception and not on_chat_page(at)
    assert "password_hash" in at.error[0].value


# -- typed folders on the knowledge-base page -----------------------------------------------------------------


def index_folder(at, name: str, folder) -> None:
    target = at.selectbox(key="kb_target")
    target.select(target.options[-1]).run()
    at.text_input(key="kb_new_name").input(name).run()
    at.text_input(key="kb_folder").input(str(folder)).run()
    at.button(key="kb_index_folder").click().run()


def kb_page(monkeypatch, model, **kw):
    at = app_test(monkeypatch, model, **kw).run()
    if kw.get("address") not in (None, "127.0.0.1") or os.environ.get("ROLECHAT_APP_PASSWORD_HASH"):
        log_in(at, PASSWORD)
    return at.switch_page("ui/pages/kb.py").run()


def test_served_to_others_without_roots_no_folder_is_indexed_but_uploads_are(
    monkeypatch, tiny_qwen2, stored_hash, tmp_path
):
    monkeypatch.setenv("ROLECHAT_APP_PASSWORD_HASH", stored_hash)
    at = kb_page(monkeypatch, tiny_qwen2, address="0.0.0.0")
    assert any("path_roots" in c.value for c in at.caption)
    index_folder(at, "城市", write_docs(tmp_path / "docs"))
    assert not at.exception
    assert "path_roots" in at.error[0].value
    assert not at.expander  # nothing was indexed

    at.file_uploader(key="kb_upload").set_value([("a.md", "# 广州\n\n早茶很有名。\n".encode(), "text/markdown")]).run()
    at.button(key="kb_index_files").click().run()
    assert not at.exception and not at.error
    assert at.expander[0].label == "📚 城市 · 1 个文档 · 1 个片段"


def test_roots_allow_folders_inside_and_name_themselves_when_refusing(monkeypatch, tiny_qwen2, stored_hash, tmp_path):
    allowed = tmp_path / "data"
    docs = write_docs(allowed / "docs")
    outside = write_docs(tmp_path / "data2")
    monkeypatch.setenv("ROLECHAT_APP_PASSWORD_HASH", stored_hash)
    monkeypatch.setenv("ROLECHAT_APP_PATH_ROOTS", str(allowed))
    at = kb_page(monkeypatch, tiny_qwen2, address="0.0.0.0")
    assert any(str(allowed) in c.value for c in at.caption)

    index_folder(at, "外面", outside)
    assert "不在允许的文件夹里" in at.error[0].value and str(allowed) in at.error[0].value
    index_folder(at, "外面", f"{docs}/../../data2")
    assert "不在允许的文件夹里" in at.error[0].value
    assert not at.expander

    index_folder(at, "城市", docs)
    assert not at.exception and not at.error
    assert at.expander[0].label == "📚 城市 · 2 个文档 · 2 个片段"


def test_roots_apply_on_loopback_too(monkeypatch, tiny_qwen2, tmp_path):
    monkeypatch.setenv("ROLECHAT_APP_PATH_ROOTS", str(tmp_path / "data"))
    at = kb_page(monkeypatch, tiny_qwen2)
    index_folder(at, "城市", write_docs(tmp_path / "elsewhere"))
    assert "不在允许的文件夹里" in at.error[0].value


def test_training_dataset_paths_obey_the_roots(monkeypatch, tiny_qwen2, tmp_path):
    data = tmp_path / "secret.json"
    data.write_text('[{"instruction": "a", "output": "b"}]', encoding="utf-8")
    monkeypatch.setenv("ROLECHAT_APP_PATH_ROOTS", str(tmp_path / "data"))
    at = app_test(monkeypatch, tiny_qwen2).run()
    at.switch_page("ui/pages/train.py").run()
    at.radio(key="train_source").set_value("path").run()
    at.text_input(key="train_path").input(str(data)).run()
    assert not at.exception
    assert "不在允许的文件夹里" in at.error[0].value


def test_an_invalid_app_config_refuses_typed_paths_on_loopback(monkeypatch, tiny_qwen2, tmp_path):
    monkeypatch.setenv("ROLECHAT_APP_PATH_ROOTS", "relative/folder")
    at = app_test(monkeypatch, tiny_qwen2).run()
    at.switch_page("ui/pages/train.py").run()
    at.radio(key="train_source").set_value("path").run()
    at.text_input(key="train_path").input(str(tmp_path / "data.json")).run()
    assert not at.exception
    assert any("not an absolute path" in e.value for e in at.error)
