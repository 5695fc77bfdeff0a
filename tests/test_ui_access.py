"""ui.access without a page: which addresses count as loopback, the one check for typed server paths
(`allowed_path`: symlinks, `..`, the /data2-vs-/data prefix trick), `[app] path_roots` validation, the
wrong-password lockout, and `rolechat serve`'s loopback default."""

from __future__ import annotations

import os

import pytest

from rolechat import settings
from rolechat.settings import ConfigError
from ui import access
from ui.access import PathRefused, allowed_path, is_loopback
from ui.config import AppConfig


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.53", "localhost", "::1", "[::1]", " 127.0.0.1 "])
def test_loopback_addresses(address):
    assert is_loopback(address)


@pytest.mark.parametrize("address", ["", "0.0.0.0", "::", "192.168.1.20", "10.0.0.5", "myhost.example", "unix:///s"])
def test_addresses_others_can_reach(address):
    assert not is_loopback(address)


def test_is_shared_with_a_password_even_on_loopback():
    from ui.password import hash_password

    assert not access.is_shared(AppConfig(), "127.0.0.1")
    assert access.is_shared(AppConfig(), "0.0.0.0")
    assert access.is_shared(AppConfig(password_hash=hash_password("correct horse")), "127.0.0.1")


@pytest.fixture
def tree(tmp_path):
    """/data (the root) with docs, /data2 next to it, /secret outside."""
    data = tmp_path / "data"
    (data / "docs").mkdir(parents=True)
    (data / "docs" / "a.md").write_text("# a", encoding="utf-8")
    (tmp_path / "data2").mkdir()
    (tmp_path / "data2" / "b.md").write_text("# b", encoding="utf-8")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "id_rsa").write_text("PRIVATE", encoding="utf-8")
    return tmp_path


def test_paths_inside_a_root_are_allowed_and_returned_resolved(tree):
    roots = [str(tree / "data")]
    assert allowed_path(tree / "data", roots, shared=True) == (tree / "data").resolve()
    assert allowed_path(tree / "data" / "docs" / "a.md", roots, shared=True) == (tree / "data/docs/a.md").resolve()
    assert allowed_path(f"{tree}/data/docs/../docs", roots, shared=True) == (tree / "data/docs").resolve()


@pytest.mark.parametrize("raw", ["data/a\x00b.json", "data/" + "a" * 300])
def test_a_nul_byte_or_an_overlong_name_is_refused_not_raised(tree, raw):
    for roots in ([str(tree / "data")], []):
        with pytest.raises(PathRefused) as err:
            allowed_path(f"{tree}/{raw}", roots, shared=False)
        assert err.value.reason == "invalid" and "\x00" not in str(err.value)


def test_dotdot_cannot_climb_out_of_a_root(tree):
    with pytest.raises(PathRefused) as err:
        allowed_path(f"{tree}/data/docs/../../secret", [str(tree / "data")], shared=False)
    assert err.value.reason == "outside" and err.value.path == (tree / "secret").resolve()
    assert str(tree / "data") in str(err.value)  # the refusal names the allowed folders


def test_a_sibling_sharing_the_roots_prefix_is_outside(tree):
    with pytest.raises(PathRefused, match="not inside"):
        allowed_path(tree / "data2", [str(tree / "data")], shared=True)
    with pytest.raises(PathRefused):
        allowed_path(tree / "data2" / "b.md", [str(tree / "data") + "/"], shared=True)


def test_a_symlink_inside_a_root_pointing_out_is_refused(tree):
    (tree / "data" / "escape").symlink_to(tree / "secret", target_is_directory=True)
    (tree / "data" / "key").symlink_to(tree / "secret" / "id_rsa")
    roots = [str(tree / "data")]
    for typed in ("data/escape", "data/escape/id_rsa", "data/key"):
        with pytest.raises(PathRefused) as err:
            allowed_path(tree / typed, roots, shared=True)
        assert err.value.reason == "outside"


def test_a_folder_holding_file_links_out_of_the_roots_is_refused(tree):
    (tree / "data" / "docs" / "notes.md").symlink_to(tree / "secret" / "id_rsa")
    (tree / "data" / "docs" / "ok.md").symlink_to(tree / "data" / "docs" / "a.md")  # stays inside: fine
    with pytest.raises(PathRefused) as err:
        allowed_path(tree / "data", [str(tree / "data")], shared=True)
    assert err.value.reason == "links"
    assert err.value.links == [tree / "data" / "docs" / "notes.md"]


def test_a_root_that_is_itself_a_symlink_is_resolved_too(tree):
    (tree / "link-to-data").symlink_to(tree / "data", target_is_directory=True)
    roots = [str(tree / "link-to-data")]
    assert allowed_path(tree / "data" / "docs", roots, shared=True) == (tree / "data" / "docs").resolve()
    assert allowed_path(tree / "link-to-data" / "docs", roots, shared=True) == (tree / "data" / "docs").resolve()
    with pytest.raises(PathRefused):
        allowed_path(tree / "secret", roots, shared=True)


def test_home_relative_roots_and_paths(tree, monkeypatch):
    monkeypatch.setenv("HOME", str(tree))
    assert allowed_path("~/data/docs", ["~/data"], shared=True) == (tree / "data" / "docs").resolve()
    with pytest.raises(PathRefused):
        allowed_path("~/secret", ["~/data"], shared=True)


def test_without_roots_any_path_when_private_none_when_shared(tree):
    assert allowed_path(tree / "secret", [], shared=False) == (tree / "secret").resolve()
    with pytest.raises(PathRefused) as err:
        allowed_path(tree / "data", [], shared=True)
    assert err.value.reason == "off" and "path_roots" in str(err.value)


def test_path_roots_validation(monkeypatch):
    assert AppConfig().path_roots == []
    assert AppConfig(path_roots=[" /data ", "~/docs"]).path_roots == ["/data", "~/docs"]
    with pytest.raises(ConfigError, match="not an absolute path"):
        AppConfig(path_roots=["docs"])
    with pytest.raises(ConfigError, match="must be a list"):
        AppConfig(path_roots="/data")
    with pytest.raises(ConfigError, match="every entry"):
        AppConfig(path_roots=["/data", ""])
    monkeypatch.setenv("ROLECHAT_APP_PATH_ROOTS", "/data/docs, /srv/kb")
    assert settings.build(AppConfig, "app", {}).path_roots == ["/data/docs", "/srv/kb"]


def test_wrong_passwords_lock_an_address_out_for_a_growing_while():
    failures = access._Failures()
    for n in range(access.MAX_FAILURES - 1):
        failures.fail("10.0.0.9", now=100.0 + n)
        assert failures.wait("10.0.0.9", now=100.0 + n) == 0
    failures.fail("10.0.0.9", now=110.0)
    assert failures.wait("10.0.0.9", now=110.0) == access.LOCKOUT_SECONDS
    assert failures.wait("10.0.0.7", now=110.0) == 0  # other addresses are not affected
    assert failures.wait("10.0.0.9", now=110.0 + access.LOCKOUT_SECONDS) == 0
    failures.fail("10.0.0.9", now=200.0)
    assert failures.wait("10.0.0.9", now=200.0) == 2 * access.LOCKOUT_SECONDS
    failures.clear("10.0.0.9")
    assert failures.wait("10.0.0.9", now=200.0) == 0


def test_rolechat_serve_listens_on_loopback_by_default(monkeypatch, tiny_qwen2):
    """`rolechat serve` with no host flag, setting or variable binds 127.0.0.1 (the API is never public by
    accident)."""
    import uvicorn
    from typer.testing import CliRunner

    from rolechat.api import ServerConfig
    from rolechat.cli import app

    assert ServerConfig().host == "127.0.0.1"
    monkeypatch.delenv("ROLECHAT_SERVER_HOST", raising=False)
    monkeypatch.setenv("ROLECHAT_LLM_MODEL", str(tiny_qwen2))
    bound = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: bound.update(host=host, port=port))
    result = CliRunner().invoke(app, ["serve"], env=dict(os.environ))
    assert result.exit_code == 0, result.output
    assert bound == {"host": "127.0.0.1", "port": 8000}
    assert is_loopback(bound["host"])
