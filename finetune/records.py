"""Reading a data file record by record, the layer persona data and labelled data share.

A file is read as UTF-8 text (`read_text`), split into (line, record) pairs (`iter_json` for a JSON array,
JSON lines or a `{"data": [...]}` object; `finetune.classify_data` adds CSV/TSV), and each record goes
through the format's own parser (`read_records`). Where a record fails, the problem becomes an `Issue`
naming the file, the line, the record number and the field: skipped and counted by default, raised as
`DataError` under `strict`. Nothing heavy is imported, so a bad file fails before torch loads.

    parsed = read_records(iter_json(read_text(path), name), name, parse, key=..., strict=False, dedupe=True)
    parsed.items   # [(line, record number, what parse returned)], duplicates dropped
    parsed.issues  # [Issue], one per bad record
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from rolechat.limits import MAX_DEPTH, InputError, check_depth, load_json

__all__ = [
    "DataError",
    "Issue",
    "Malformed",
    "Parsed",
    "Reading",
    "RecordError",
    "iter_json",
    "read_records",
    "read_text",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class DataError(ValueError):
    """The data file cannot be used (unreadable, not JSON, or a bad record under --strict)."""


class RecordError(Exception):
    """One record is unusable: the field at fault ('' for the whole record) and why. `read_records` turns it
    into an Issue with the file, line and record number."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


@dataclass(frozen=True)
class Issue:
    """One rejected record: where it is and what is wrong with it."""

    file: str
    line: int
    record: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: record {self.record}"
        return f"{where}: field {self.field!r}: {self.message}" if self.field else f"{where}: {self.message}"


@dataclass
class Malformed:
    """A line that holds no record (bad JSON, a CSV row with the wrong column count): it counts as a record and
    becomes an Issue, so one bad line does not stop a file."""

    message: str


def read_text(path: str | Path) -> str:
    """The file's text (UTF-8, a byte-order mark dropped); DataError naming the file when it can't be."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None


def iter_json(text: str, name: str) -> Iterator[tuple[int, Any]]:
    """(line, record) pairs from a JSON array, JSON lines, or an object with a 'data' array. A JSON lines file
    yields a `Malformed` for a line that is not JSON; a broken array stops with its line and column."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("["):
        yield from _iter_array(text, name)
    elif stripped.startswith("{") and not _looks_like_jsonl(stripped):
        yield from _iter_data_object(text, name)
    else:
        for number, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                record = load_json(raw)
            except InputError as exc:
                record = Malformed(f"malformed JSON: {str(exc).removeprefix('invalid JSON ')}")
            yield number, record


def _skip_blanks(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _iter_array(text: str, name: str) -> Iterator[tuple[int, Any]]:
    """The records of a JSON array one at a time, each with the line it starts on."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    line = text.count("\n", 0, pos) + 1
    last = pos
    while True:
        pos = _skip_blanks(text, pos)
        if pos < len(text) and text[pos] == "]":
            return
        line += text.count("\n", last, pos)
        last = pos
        try:
            obj, end = decoder.raw_decode(text, pos)
            check_depth(obj)
        except json.JSONDecodeError as exc:
            raise DataError(f"{name}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}") from None
        except (InputError, RecursionError, ValueError) as exc:  # too deep (or too long a number) to read
            raise DataError(f"{name}:{line}: {_too_deep(exc)}") from None
        yield line, obj
        pos = _skip_blanks(text, end)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos < len(text) and text[pos] == "]":
            return
        else:
            doc_line = text.count("\n", 0, pos) + 1
            col = pos - (text.rfind("\n", 0, pos) + 1) + 1
            raise DataError(f"{name}:{doc_line}:{col}: malformed JSON: expected ',' or ']' after a record")


def _iter_data_object(text: str, name: str) -> Iterator[tuple[int, Any]]:
    """The records of a `{"data": [...]}` document (line 0: one parse gives no per-record lines)."""
    try:
        obj = json.loads(text)
        check_depth(obj)
    except json.JSONDecodeError as exc:
        raise DataError(f"{name}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}") from None
    except (InputError, RecursionError, ValueError) as exc:
        raise DataError(f"{name}: {_too_deep(exc)}") from None
    records = obj.get("data") if isinstance(obj, dict) else None
    if not isinstance(records, list):
        raise DataError(f"{name}: expected a JSON array of records, JSON lines, or an object with a 'data' array")
    for rec in records:
        yield 0, rec


def _looks_like_jsonl(text: str) -> bool:
    first = text.split("\n", 1)[0].strip()
    try:
        load_json(first)
        return True
    except InputError:
        return False


def _too_deep(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, InputError | ValueError) else f"nested deeper than {MAX_DEPTH} levels"


@dataclass
class Reading:
    """What reading one file kept and rejected: the base of each format's result (`finetune.data.Dataset`,
    `finetune.classify_data.LabeledData`)."""

    path: str
    issues: list[Issue] = field(default_factory=list)
    records: int = 0
    duplicates: int = 0

    def tally(self, kept: str, n_kept: int) -> dict[str, Any]:
        """The summary every format starts with: file, records read, how many `kept`, skipped, duplicates removed."""
        return {
            "file": self.path,
            "records": self.records,
            kept: n_kept,
            "skipped": len(self.issues),
            "duplicates_removed": self.duplicates,
        }


@dataclass
class Parsed(Reading, Generic[T]):
    """What `read_records` kept of a file: the parsed records with their place, and the rejected ones."""

    items: list[tuple[int, int, T]] = field(default_factory=list)  # (line, record number, parsed)

    def warn_skipped(self, noun: str = "record") -> None:
        if self.issues:
            log.warning("%s: skipped %d bad %s(s); first: %s", self.path, len(self.issues), noun, self.issues[0])


def read_records(
    records: Iterable[tuple[int, Any]],
    name: str,
    parse: Callable[[Any], T],
    *,
    key: Callable[[T], Hashable],
    strict: bool,
    dedupe: bool,
    noun: str = "record",
) -> Parsed[T]:
    """Parse each (line, record) with `parse` (which raises RecordError for a bad one). Bad records become
    Issues (the first raises DataError under `strict`); records with an equal `key` are counted as duplicates
    and, with `dedupe`, kept once. DataError when the file has no records, or none usable."""
    out: Parsed[T] = Parsed(name)
    seen: set[Hashable] = set()
    for number, (line, rec) in enumerate(records, start=1):
        out.records += 1
        try:
            if isinstance(rec, Malformed):
                raise RecordError("", rec.message)
            item = parse(rec)
        except RecordError as bad:
            issue = Issue(name, line, number, bad.field, bad.message)
            if strict:
                raise DataError(f"{issue} (--strict stops at the first bad {noun})") from None
            out.issues.append(issue)
            continue
        seen_key = key(item)
        if seen_key in seen:
            out.duplicates += 1
            if dedupe:
                continue
        seen.add(seen_key)
        out.items.append((line, number, item))
    if out.records == 0:
        raise DataError(f"{name}: no {noun}s")
    if not out.items:
        first = out.issues[0] if out.issues else None
        raise DataError(
            f"{name}: no usable {noun}s ({len(out.issues)} rejected" + (f"; first: {first})" if first else ")")
        )
    return out
