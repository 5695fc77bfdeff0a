"""Labelled text for classifiers: CSV / TSV / JSONL (or a JSON array) with a text and a label column.

Nothing heavy is imported, so a bad file is rejected before torch loads. Problems are reported the way
persona data reports them (`finetune.data.Issue`: file, line, record, field); bad rows are skipped and
counted, or raise `DataError` under `strict`. The held-out split is stratified by label and seeded.
"""

from __future__ import annotations

import csv
import io
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rolechat.finetune.data import DataError, Issue, _iter_json, _Malformed

__all__ = ["LabeledRow", "LabeledData", "load_labeled", "read_texts", "stratified_split", "sort_labels"]

log = logging.getLogger(__name__)

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
JSON_SUFFIXES = (".json", ".jsonl")


@dataclass(frozen=True)
class LabeledRow:
    text: str
    label: str
    line: int
    record: int


@dataclass
class LabeledData:
    """The usable rows of a file, its label names and what was rejected and why."""

    path: str
    rows: list[LabeledRow] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    records: int = 0
    duplicates: int = 0
    labels: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        c = Counter(r.label for r in self.rows)
        return {label: c[label] for label in self.labels}

    def summary(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "records": self.records,
            "rows": len(self.rows),
            "skipped": len(self.issues),
            "duplicates_removed": self.duplicates,
            "labels": self.counts(),
        }


class _Bad(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


def sort_labels(labels: set[str] | list[str]) -> list[str]:
    """Numeric labels in numeric order ("2" before "10"), others alphabetically."""
    labels = list(set(labels))
    if all(label.lstrip("-").isdigit() for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _label(value: Any, column: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _Bad(column, "missing")
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        raise _Bad(column, f"must be a name or an integer, got {value!r}")
    if isinstance(value, str):
        return value.strip()
    raise _Bad(column, f"must be a string or an integer, got {type(value).__name__}")


def _text(value: Any, column: str) -> str:
    if value is None:
        raise _Bad(column, "missing")
    if not isinstance(value, str):
        raise _Bad(column, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise _Bad(column, "empty text")
    return value.strip()


def _decode(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None


def _table_records(text: str, name: str, delimiter: str, columns: tuple[str, ...]):
    """(line, record-or-_Malformed) for each data row of a CSV/TSV file with a header row."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{name}: empty file") from None
    except csv.Error as exc:
        raise DataError(f"{name}:1: malformed header: {exc}") from None
    header = [h.strip() for h in header]
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(
            f"{name}:1: header has no column {', '.join(repr(c) for c in missing)}; columns: "
            f"{', '.join(repr(h) for h in header)} (set classify.text_column / classify.label_column)"
        )
    last = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield last + 1, _Malformed(f"malformed row: {exc}")
            last = reader.line_num
            continue
        line, last = last + 1, reader.line_num
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            yield line, _Malformed(f"expected {len(header)} columns, got {len(row)}")
            continue
        yield line, dict(zip(header, row))


def _check_suffix(path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES and suffix not in JSON_SUFFIXES:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; use .csv, .tsv, .jsonl or .json")


def _records(path: Path, text: str, columns: tuple[str, ...]):
    _check_suffix(path)
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return _table_records(text, str(path), TABLE_SUFFIXES[suffix], columns)
    return _iter_json(text, str(path))


def load_labeled(
    path: str | Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    strict: bool = False,
    dedupe: bool = True,
) -> LabeledData:
    """Read and validate a labelled file. Bad rows are skipped and listed in `.issues` (raised when `strict`)."""
    path = Path(path)
    name = str(path)
    out = LabeledData(name)
    seen: set[tuple[str, str]] = set()
    _check_suffix(path)
    text = _decode(path)
    for number, (line, rec) in enumerate(_records(path, text, (text_column, label_column)), start=1):
        out.records += 1
        try:
            if isinstance(rec, _Malformed):
                raise _Bad("", rec.message)
            if not isinstance(rec, dict):
                raise _Bad("", f"a record must be an object, got {type(rec).__name__}")
            text, label = _text(rec.get(text_column), text_column), _label(rec.get(label_column), label_column)
            row = LabeledRow(text, label, line, number)
        except _Bad as bad:
            issue = Issue(name, line, number, bad.field, bad.message)
            if strict:
                raise DataError(f"{issue} (--strict stops at the first bad row)") from None
            out.issues.append(issue)
            continue
        key = (row.text, row.label)
        if key in seen:
            out.duplicates += 1
            if dedupe:
                continue
        seen.add(key)
        out.rows.append(row)
    if out.records == 0:
        raise DataError(f"{name}: no rows")
    if not out.rows:
        first = out.issues[0] if out.issues else None
        raise DataError(
            f"{name}: no usable rows ({len(out.issues)} rejected" + (f"; first: {first})" if first else ")")
        )
    out.labels = sort_labels({r.label for r in out.rows})
    if len(out.labels) < 2:
        raise DataError(f"{name}: column {label_column!r} has a single label ({out.labels[0]!r}); need at least two")
    if out.issues:
        log.warning("%s: skipped %d bad row(s); first: %s", name, len(out.issues), out.issues[0])
    return out


def stratified_split(rows: list[LabeledRow], eval_ratio: float, seed: int) -> tuple[list[LabeledRow], list[LabeledRow]]:
    """(train, eval): the same share of every label held out (at least one of a label with 2+ rows)."""
    if not eval_ratio:
        return list(rows), []
    by_label: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_label.setdefault(row.label, []).append(i)
    rng = random.Random(seed)
    held: set[int] = set()
    for label in sort_labels(list(by_label)):
        idx = by_label[label]
        rng.shuffle(idx)
        n = max(round(len(idx) * eval_ratio), 1) if len(idx) >= 2 else 0
        held.update(idx[:n])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def read_texts(path: str | Path, text_column: str = "text") -> list[str]:
    """Texts to classify: the text column of a CSV/TSV/JSON(L) file, else one text per non-blank line."""
    path = Path(path)
    text = _decode(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES and suffix not in JSON_SUFFIXES:
        return [line.strip() for line in text.splitlines() if line.strip()]
    texts = []
    for line, rec in _records(path, text, (text_column,)):
        if isinstance(rec, _Malformed):
            raise DataError(f"{path}:{line}: {rec.message}")
        try:
            texts.append(_text(rec.get(text_column) if isinstance(rec, dict) else None, text_column))
        except _Bad as bad:
            raise DataError(f"{path}:{line}: field {bad.field!r}: {bad.message}") from None
    return texts
