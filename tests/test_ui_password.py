"""The app password: salted hashes, constant-time comparison, the config field that holds the hash, and
`python -m ui.password`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
import sys
from pathlib import Path

import pytest

from rolechat import settings
from rolechat.settings import ConfigError
from ui.config import AppConfig
from ui.password import hash_password, parse_hash, verify_password

ROOT = Path(__file__).resolve().parents[1]


def test_hash_round_trip_and_wrong_passwords():
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$16384$8$1$")
    assert "correct horse" not in stored
    assert verify_password("correct horse", stored)
    for wrong in ("correct hors", "Correct horse", "correct horse ", ""):
        assert not verify_password(wrong, stored)


def test_each_hash_has_its_own_salt():
    first, second = hash_password("same password"), hash_password("same password")
    assert first != second
    assert parse_hash(first).salt != parse_hash(second).salt
    assert verify_password("same password", first) and verify_password("same password", second)


def test_django_style_pbkdf2_hashes_are_accepted():
    key = base64.b64encode(hashlib.pbkdf2_hmac("sha256", b"s3cret-pass", b"NaCl1234", 1000)).decode()
    stored = f"pbkdf2_sha256$1000$NaCl1234${key}"
    assert verify_password("s3cret-pass", stored)
    assert not verify_password("s3cret-pasS", stored)


def test_keys_are_compared_with_compare_digest(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    stored = hash_password("correct horse")
    assert not verify_password("wrong horse", stored)
    assert verify_password("correct horse", stored)
    assert len(calls) == 2 and calls[1][1] == parse_hash(stored).key


def test_short_passwords_are_refused():
    with pytest.raises(ValueError, match="at least 8"):
        hash_password("short")


@pytest.mark.parametrize(
    "bad, message",
    [
        ("hunter2hunter2", "not the password itself"),
        ("scrypt$16384$8$1$c2FsdA", "not the password itself"),
        ("scrypt$1000$8$1$c2FsdHNhbHQ$" + "A" * 43, "unsupported cost"),
        ("scrypt$16384$8$1$c2FsdHNhbHQ$***", "base64"),
        ("pbkdf2_sha256$many$salt$" + "A" * 44, "integer"),
    ],
)
def test_a_malformed_hash_in_the_config_names_the_field(bad, message):
    with pytest.raises(ConfigError, match="app.password_hash") as err:
        AppConfig(password_hash=bad)
    assert message in str(err.value)


def test_the_hash_comes_from_the_config_file_or_the_environment(monkeypatch):
    stored = hash_password("correct horse")
    cfg = settings.build(AppConfig, "app", {"app": {"password_hash": stored}})
    assert verify_password("correct horse", cfg.password_hash)
    monkeypatch.setenv("ROLECHAT_APP_PASSWORD_HASH", "plain-password")
    with pytest.raises(ConfigError, match="ROLECHAT_APP_.*password_hash"):
        settings.build(AppConfig, "app", {})


def test_python_m_ui_password_prints_a_working_hash():
    out = subprocess.run(
        [sys.executable, "-m", "ui.password", "--stdin"],
        input="correct horse\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    stored = out.stdout.strip()
    assert verify_password("correct horse", stored)
    assert "password_hash" in out.stderr
    short = subprocess.run(
        [sys.executable, "-m", "ui.password", "--stdin"], input="abc", capture_output=True, text=True, cwd=ROOT
    )
    assert short.returncode == 1 and not short.stdout and "at least 8" in short.stderr
