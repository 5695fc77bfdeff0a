"""The app's password, stored only as a salted hash: make one, check it, compare in constant time.

Print a hash for `[app] password_hash` (asks twice, echoes nothing):

    python -m ui.password            # or: printf '%s' "$PASSWORD" | python -m ui.password --stdin

Hashes are `scrypt$<n>$<r>$<p>$<salt>$<key>` (made here) or Django-style
`pbkdf2_sha256$<iterations>$<salt>$<key>` (accepted, for hashes made elsewhere); salt and key are
unpadded URL-safe base64 for scrypt, and the salt is text, the key standard base64 for pbkdf2, as Django
writes them. No Streamlit import: the config dataclass validates hashes with `parse_hash`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import sys
from dataclasses import dataclass

__all__ = ["PasswordHash", "hash_password", "parse_hash", "verify_password", "main"]

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # ~16 MB and a few tens of ms per check: cheap to log in, dear to guess
KEY_BYTES = 32
MIN_PASSWORD_CHARS = 8
_MAX_SCRYPT_N = 2**20  # 1 GiB with r=8; a bigger value in a config file is a typo, not a wish
_MAX_PBKDF2_ITERATIONS = 10_000_000


@dataclass(frozen=True)
class PasswordHash:
    """A parsed hash string: the scheme, its cost parameters, salt and derived key."""

    scheme: str  # "scrypt" or "pbkdf2_sha256"
    params: tuple[int, ...]  # scrypt: (n, r, p); pbkdf2_sha256: (iterations,)
    salt: bytes
    key: bytes

    def derive(self, password: str) -> bytes:
        """The key `password` derives under this hash's scheme, parameters and salt."""
        secret = password.encode("utf-8")
        if self.scheme == "scrypt":
            n, r, p = self.params
            return hashlib.scrypt(
                secret, salt=self.salt, n=n, r=r, p=p, maxmem=128 * r * (n + p + 2) + 2**20, dklen=len(self.key)
            )
        return hashlib.pbkdf2_hmac("sha256", secret, self.salt, self.params[0], dklen=len(self.key))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str, *, urlsafe: bool) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded, altchars=b"-_" if urlsafe else None, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"not valid base64: {text[:12]!r}...") from None


def hash_password(password: str) -> str:
    """A new salted scrypt hash of `password`, in the form `[app] password_hash` takes."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    salt = secrets.token_bytes(16)
    stored = PasswordHash("scrypt", (SCRYPT_N, SCRYPT_R, SCRYPT_P), salt, b"\0" * KEY_BYTES)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64encode(salt)}${_b64encode(stored.derive(password))}"


def parse_hash(text: str) -> PasswordHash:
    """Parse a stored hash; ValueError says what is wrong (a plain password is the usual mistake)."""
    parts = str(text).strip().split("$")
    scheme = parts[0]
    if scheme == "scrypt" and len(parts) == 6:
        try:
            n, r, p = (int(x) for x in parts[1:4])
        except ValueError:
            raise ValueError("scrypt hash: n, r and p must be integers") from None
        if n < 2 or n & (n - 1) or n > _MAX_SCRYPT_N or not 1 <= r <= 64 or not 1 <= p <= 16:
            raise ValueError(f"scrypt hash: unsupported cost n={n}, r={r}, p={p}")
        salt, key = _b64decode(parts[4], urlsafe=True), _b64decode(parts[5], urlsafe=True)
        params: tuple[int, ...] = (n, r, p)
    elif scheme == "pbkdf2_sha256" and len(parts) == 4:
        try:
            iterations = int(parts[1])
        except ValueError:
            raise ValueError("pbkdf2_sha256 hash: the iteration count must be an integer") from None
        if not 1 <= iterations <= _MAX_PBKDF2_ITERATIONS:
            raise ValueError(f"pbkdf2_sha256 hash: unsupported iteration count {iterations}")
        salt, key = parts[2].encode("utf-8"), _b64decode(parts[3], urlsafe=False)
        params = (iterations,)
    else:
        raise ValueError(
            "expected a hash made by `python -m ui.password` (scrypt$n$r$p$salt$key) or "
            "pbkdf2_sha256$iterations$salt$key, not the password itself"
        )
    if not salt or len(key) < 16:
        raise ValueError(f"{scheme} hash: salt or key too short")
    return PasswordHash(scheme, params, salt, key)


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches the stored hash; the keys are compared in constant time."""
    parsed = parse_hash(stored)
    return hmac.compare_digest(parsed.derive(password), parsed.key)


def main(argv: list[str] | None = None) -> int:
    """`python -m ui.password [--stdin]`: print the hash of a password for `[app] password_hash`."""
    args = sys.argv[1:] if argv is None else argv
    if args and args != ["--stdin"]:
        sys.stderr.write("usage: python -m ui.password [--stdin]\n")
        return 2
    if args:
        password = sys.stdin.read().rstrip("\r\n")
    else:
        import getpass

        password = getpass.getpass("app password: ")
        if getpass.getpass("again: ") != password:
            sys.stderr.write("the two passwords differ; nothing printed\n")
            return 1
    try:
        sys.stdout.write(hash_password(password) + "\n")
    except ValueError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    sys.stderr.write('put it in rolechat.toml under [app] as password_hash = "..." (or ROLECHAT_APP_PASSWORD_HASH)\n')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
