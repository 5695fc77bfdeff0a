"""Bounds on hostile input that every reader shares: how deep parsed JSON may nest, how far an archive may expand.

    data = load_json(text)                       # InputError past MAX_DEPTH levels (naming where), or on bad JSON
    check_depth(obj)                             # the same depth check on an object parsed elsewhere
    check_archive(source, max_bytes)             # InputError before anything is decompressed: too large expanded,
                                                 # a member expanding like a zip bomb, or too many members

Readers turn InputError into their own error (CardError, LoadError, PersonaError) naming the file. Python's
JSON parser, and every recursive walk over what it returns (copy.deepcopy, json.dumps, pydantic), fail with
a RecursionError a few hundred levels down; MAX_DEPTH keeps every object well above that. A zip member is
never decompressed past the size its central directory declares (`zipfile` stops there), so checking the
declared sizes bounds what a reader can be made to expand. This module imports nothing else of the project.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["InputError", "MAX_DEPTH", "MAX_MEMBERS", "MAX_RATIO", "check_archive", "check_depth", "load_json"]

MAX_DEPTH = 100  # nested objects and lists; real cards and documents stay under 20
MAX_MEMBERS = 10_000  # members of one archive (a long book's docx has a few hundred)
# Apache POI's ZipSecureFile defaults: a member expanding more than 100 times its compressed size is a bomb,
# once it holds more than 100 KiB (small parts such as styles compress very well legitimately).
MAX_RATIO = 100
RATIO_GRACE = 100 * 1024


class InputError(ValueError):
    """Input no reader should take: JSON nested too deep (or not JSON), an archive that expands too far."""


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """InputError naming the path of the first object or list nested deeper than `limit` levels (iterative)."""
    stack: list[tuple[Any, int, int, str]] = [(value, 1, -1, "")]  # (value, depth, parent index, key)
    seen: list[tuple[int, str]] = []
    while stack:
        item, depth, parent, key = stack.pop()
        if not isinstance(item, (dict, list)):
            continue
        seen.append((parent, key))
        if depth > limit:
            raise InputError(f"nested deeper than {limit} levels (at {_path(seen, len(seen) - 1)})")
        here = len(seen) - 1
        pairs = item.items() if isinstance(item, dict) else enumerate(item)
        stack.extend((child, depth + 1, here, str(k)) for k, child in pairs if isinstance(child, (dict, list)))


def _path(seen: list[tuple[int, str]], index: int) -> str:
    parts = []
    while index > 0:
        parent, key = seen[index]
        parts.append(key)
        index = parent
    shown = ".".join(reversed(parts))
    return shown if len(shown) <= 80 else shown[:79] + "…"  # the start names the field


def load_json(text: str | bytes, limit: int = MAX_DEPTH) -> Any:
    """`json.loads` that raises InputError for anything wrong: bad JSON (line and column), nesting deeper than
    `limit`, numbers Python refuses to convert (an integer of thousands of digits)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise InputError(f"nested deeper than {limit} levels") from None
    except ValueError as exc:  # int_max_str_digits, or bytes that are not UTF-8/16/32
        raise InputError(f"invalid JSON: {exc}") from None
    check_depth(value, limit)
    return value


def check_archive(
    source: str | Path | bytes,
    max_bytes: int,
    setting: str = "",
    *,
    max_ratio: float = MAX_RATIO,
    max_members: int = MAX_MEMBERS,
) -> None:
    """InputError unless the zip archive `source` (a path or its bytes) expands to at most `max_bytes` in all
    (`setting`: the config key that sets it, named in the error), no member of more than RATIO_GRACE expands
    more than `max_ratio` times, and it has at most `max_members`. Reads the central directory only; a file that
    is no zip archive passes (its own reader says what it is)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (zipfile.BadZipFile, OSError, ValueError):
        return
    with archive:
        members = archive.infolist()
    if len(members) > max_members:
        raise InputError(f"archive of {len(members)} members (more than {max_members})")
    total = 0
    for info in members:
        total += info.file_size
        if info.file_size > RATIO_GRACE and info.file_size > max_ratio * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise InputError(
                f"archive member {info.filename} expands {ratio:.0f} times (to {info.file_size / 1e6:.1f} MB): "
                f"a zip bomb, not a document (at most {max_ratio:g} times)"
            )
    if total > max_bytes:
        where = f" ({setting})" if setting else ""
        raise InputError(
            f"archive expands to {total / 1e6:.1f} MB, more than the limit of {max_bytes / 1e6:g} MB{where}"
        )
