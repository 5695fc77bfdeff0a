"""Who may use the app, and which server paths it may read.

- `gate()` runs in app.py before navigation. On loopback without a password every page is served. When
  the app listens beyond loopback (`server.address` is empty, `0.0.0.0`, a LAN address, ...) and no
  `[app] password_hash` is set, it serves no page and says what to set. With a password set, each
  browser session logs in once; wrong passwords are counted per client address and, past a few, that
  address waits before it may try again.
- `allowed_path()` is the one check for paths typed into the app (knowledge-base folders, training
  datasets): resolved (symlinks, `..`) and required to lie inside `[app] path_roots`. With no roots it
  allows any path only while the app is private (loopback, no password).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import streamlit as st

from rolechat import settings as rc_config
from rolechat.settings import ConfigError
from ui import state
from ui.i18n import t
from ui.password import verify_password

__all__ = [
    "PathRefused",
    "allowed_path",
    "check_path",
    "gate",
    "is_loopback",
    "is_shared",
    "served_address",
    "MAX_FAILURES",
    "LOCKOUT_SECONDS",
]

log = logging.getLogger(__name__)

MAX_FAILURES = 5  # wrong passwords from one address before it has to wait
LOCKOUT_SECONDS = 30.0  # the wait after MAX_FAILURES, doubling with each further failure
_MAX_LOCKOUT_SECONDS = 15 * 60
_SESSION_KEY = "auth_token"


# -- where the app listens ------------------------------------------------------------------------------


def served_address() -> str:
    """Streamlit's `server.address` ("" when unset, which means every interface)."""
    return str(st.get_option("server.address") or "").strip()


def is_loopback(address: str) -> bool:
    """Whether `address` (a Streamlit server.address) is reachable from this machine only."""
    host = address.strip().strip("[]")
    if not host:
        return False  # unset: Streamlit listens on every interface
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so treat it as reachable


def is_shared(cfg: state.AppConfig, address: str) -> bool:
    """Whether people other than the local user may be using the app: it listens beyond loopback, or it has
    a password (which only makes sense when something, such as a reverse proxy, lets others in)."""
    return bool(cfg.password_hash) or not is_loopback(address)


# -- paths typed into the app ---------------------------------------------------------------------------


class PathRefused(ValueError):
    """A typed path the app will not read. `reason`: "off" (no roots while shared), "outside" (not under a
    root), "links" (a folder holding symlinks that lead out of the roots, listed in `links`), "config"
    (the `[app]` settings are invalid, so nothing is allowed; `error` says why) or "invalid" (no path at all:
    a NUL byte, a name too long; `error` says which)."""

    def __init__(
        self, reason: str, path: Path, roots: Sequence[Path], links: Sequence[Path] = (), error: str = ""
    ) -> None:
        self.reason, self.path, self.roots, self.links, self.error = reason, path, list(roots), list(links), error
        where = ", ".join(str(r) for r in self.roots) or "(none configured)"
        detail = {
            "config": f"invalid [app] settings: {error}",
            "invalid": f"{path} is not a usable path ({error})",
            "off": "reading server paths is off while the app is served to others; set [app] path_roots",
            "outside": f"{path} is not inside the allowed folders: {where}",
            "links": f"{path} holds symlinks leading outside the allowed folders ({where}): "
            + ", ".join(str(p) for p in self.links[:5]),
        }[reason]
        super().__init__(detail)

    def message(self) -> str:
        """The refusal in the session's language."""
        if self.reason == "config":
            return t("config.error", error=self.error)
        if self.reason == "invalid":
            return t("access.path_invalid", path=self.path, error=self.error)
        roots = ", ".join(str(r) for r in self.roots)
        links = ", ".join(str(p) for p in self.links[:5]) + (" …" if len(self.links) > 5 else "")
        return t(f"access.path_{self.reason}", path=self.path, roots=roots, links=links)


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)  # by whole components: /data2 is not inside /data


def _links_out(folder: Path, roots: Sequence[Path]) -> list[Path]:
    """Symlinked files under `folder` whose targets lie outside every root (the indexer reads through them)."""
    found = []
    for dirpath, _dirs, filenames in os.walk(folder):  # like the indexer, doesn't descend into linked folders
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink() and not any(_inside(path.resolve(), r) for r in roots):
                found.append(path)
    return found


def allowed_path(raw: str | os.PathLike, roots: Sequence[str | os.PathLike], *, shared: bool) -> Path:
    """The real path of `raw` (`~`, symlinks and `..` resolved) if the app may read it, else PathRefused.

    With `roots`, the path must lie inside one of them (by whole path components, after resolving both),
    and a folder must not hold symlinked files that lead outside them. Without roots, any path is allowed
    unless `shared` (the app is served to others), when none is.
    """
    try:  # a NUL byte or an over-long name is no path at all: refused, not a ValueError or OSError later
        path = Path(raw).expanduser().resolve()
        path.exists()
    except (ValueError, OSError) as exc:
        raise PathRefused("invalid", Path(str(raw).replace("\x00", "\\0")), [], error=str(exc)) from None
    real_roots = [Path(r).expanduser().resolve() for r in roots]
    if not real_roots:
        if shared:
            raise PathRefused("off", path, [])
        return path
    if not any(_inside(path, r) for r in real_roots):
        raise PathRefused("outside", path, real_roots)
    if path.is_dir():
        links = _links_out(path, real_roots)
        if links:
            raise PathRefused("links", path, real_roots, links)
    return path


def check_path(raw: str | os.PathLike) -> Path:
    """`allowed_path` under the app's settings and where it is served (for the pages)."""
    try:
        cfg = state.app_config()
    except ConfigError as exc:  # fail closed: the settings that would allow the path can't be read
        raise PathRefused("config", Path(raw), [], error=str(exc)) from None
    return allowed_path(raw, cfg.path_roots, shared=is_shared(cfg, served_address()))


def path_roots_hint() -> str | None:
    """A caption for path inputs: the allowed folders, the 'off' notice, or None when anything goes."""
    try:
        cfg = state.app_config()
    except ConfigError as exc:
        return t("config.error", error=exc)
    if cfg.path_roots:
        return t("access.roots", roots=", ".join(cfg.path_roots))
    if is_shared(cfg, served_address()):
        return t("access.path_off", path="", roots="", links="")
    return None


# -- the login gate ---------------------------------------------------------------------------------------


class _Failures:
    """Wrong passwords per client address (process-wide: a new browser session doesn't reset them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[int, float]] = {}  # address -> (failures, when the last one happened)

    def wait(self, who: str, now: float) -> float:
        """Seconds `who` must still wait before trying again (0 when it may try now)."""
        with self._lock:
            count, last = self._seen.get(who, (0, 0.0))
        if count < MAX_FAILURES:
            return 0.0
        lockout = min(LOCKOUT_SECONDS * 2 ** (count - MAX_FAILURES), _MAX_LOCKOUT_SECONDS)
        return max(0.0, last + lockout - now)

    def fail(self, who: str, now: float) -> None:
        with self._lock:
            count, _ = self._seen.get(who, (0, 0.0))
            self._seen[who] = (count + 1, now)

    def clear(self, who: str) -> None:
        with self._lock:
            self._seen.pop(who, None)


FAILURES = _Failures()
_clock = time.monotonic  # tests move time forward by replacing it


def _client() -> str:
    try:
        address = st.context.ip_address
    except Exception:  # no request context (bare mode)
        address = None
    return address if isinstance(address, str) and address else "unknown"  # AppTest hands out a mock


def _token(password_hash: str) -> str:
    """What a logged-in session holds: tied to the hash, so changing the password logs everyone out."""
    return hashlib.sha256(password_hash.encode("utf-8")).hexdigest()


def gate() -> bool:
    """Whether this run may serve pages; when not, the refusal or the login form has been drawn."""
    address = served_address()
    try:
        cfg = state.app_config()
    except Exception as exc:  # an invalid config: it may hold the password, so only loopback goes on
        if is_loopback(address):
            return True  # the pages show the config error themselves
        st.error(t("config.error", error=exc))
        return False
    if not cfg.password_hash:
        if is_loopback(address):
            return True
        _refuse(address)
        return False
    if st.session_state.get(_SESSION_KEY) == _token(cfg.password_hash):
        with st.sidebar:
            if st.button(t("auth.logout"), key="auth_logout"):
                st.session_state.pop(_SESSION_KEY, None)
                st.rerun()
        return True
    _login(cfg.password_hash)
    return False


def _refuse(address: str) -> None:
    config_file = rc_config.config_file() or rc_config.home() / "rolechat.toml"
    st.title(t("app.title"))
    st.error(t("auth.refused", address=address or t("auth.all_interfaces")))
    st.markdown(t("auth.refused_fix", config=config_file))
    log.warning("refusing to serve pages: server.address=%r and no [app] password_hash", address)


def _login(password_hash: str) -> None:
    st.title(t("app.title"))
    who = _client()
    with st.form("auth_form", clear_on_submit=True):
        password = st.text_input(t("auth.password"), type="password", key="auth_password")
        submitted = st.form_submit_button(t("auth.submit"), type="primary")
    if not submitted:
        st.info(t("auth.prompt"))
        return
    wait = FAILURES.wait(who, _clock())
    if wait > 0:
        st.error(t("auth.locked", seconds=int(wait) + 1))
        return
    if verify_password(password or "", password_hash):
        FAILURES.clear(who)
        st.session_state[_SESSION_KEY] = _token(password_hash)
        st.rerun()
    FAILURES.fail(who, _clock())
    log.warning("wrong app password from %s", who)
    wait = FAILURES.wait(who, _clock())
    st.error(t("auth.locked", seconds=int(wait) + 1) if wait > 0 else t("auth.wrong"))
