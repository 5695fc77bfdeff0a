"""Labelled text for classifiers: CSV / TSV / JSONL (or a JSON array) with a text and a label column.

Nothing heavy is imported, so a bad file is rejected before torch loads. Problems are reported the way
persona data reports them (`finetune.records`: an Issue names file, line, record, field); bad rows are skipped and
counted, or raise `DataError` under `strict`. The held-out split is stratified by label and seeded.
"""

from __future__ import annotations

import csv
import io
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rolechat.finetune.records import (
    DataError,
    Malformed,
    Reading,
    RecordError,
    iter_json,
    read_records,
    read_text,
)

__all__ = ["LabeledRow", "LabeledData", "load_labeled", "read_texts", "stratified_split", "sort_labels"]

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
JSON_SUFFIXES = (".json", ".jsonl")


@dataclass(frozen=True)
class LabeledRow:
    text: str
    label: str
    line: int
    record: int


@dataclass
class LabeledData(Reading):
    """The usable rows of a file, its label names and what was rejected and why."""

    rows: list[LabeledRow] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        c = Counter(r.label for r in self.rows)
        return {label: c[label] for label in self.labels}

    def summary(self) -> dict[str, Any]:
        return {**self.tally("rows", len(self.rows)), "labels": self.counts()}


def sort_labels(labels: set[str] | list[str]) -> list[str]:
    """Numeric labels in numeric order ("2" before "10"), others alphabetically."""
    labels = list(set(labels))
    if all(label.lstrip("-").isdigit() for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _label(value: Any, column: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RecordError(column, "missing")
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        raise RecordError(column, f"must be a name or an integer, got {value!r}")
    if isinstance(value, str):
        return value.strip()
    raise RecordError(column, f"must be a string or an integer, got {type(value).__name__}")


def _text(value: Any, column: str) -> str:
    if value is None:
        raise RecordError(column, "missing")
    if not isinstance(value, str):
        raise RecordError(column, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise RecordError(column, "empty text")
    return value.strip()


def _table_records(text: str, name: str, delimiter: str, columns: tuple[str, ...]):
    """(line, record-or-Malformed) for each data row of a CSV/TSV file with a header row."""
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
            yield last + 1, Malformed(f"malformed row: {exc}")
            last = reader.line_num
            continue
        line, last = last + 1, reader.line_num
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            yield line, Malformed(f"expected {len(header)} columns, got {len(row)}")
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
    return iter_json(text, str(path))


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
    _check_suffix(path)

    def parse(rec: Any) -> tuple[str, str]:
        if not isinstance(rec, dict):
            raise RecordError("", f"a record must be an object, got {type(rec).__name__}")
        return _text(rec.get(text_column), text_column), _label(rec.get(label_column), label_column)

    parsed = read_records(
        _records(path, read_text(path), (text_column, label_column)),
        name,
        parse,
        key=lambda item: item,
        strict=strict,
        dedupe=dedupe,
        noun="row",
    )
    rows = [LabeledRow(text, label, line, number) for line, number, (text, label) in parsed.items]
    out = LabeledData(name, parsed.issues, parsed.records, parsed.duplicates, rows)
    out.labels = sort_labels({r.label for r in out.rows})
    if len(out.labels) < 2:
        raise DataError(f"{name}: column {label_column!r} has a single label ({out.labels[0]!r}); need at least two")
    parsed.warn_skipped("row")
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
    text = read_text(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES and suffix not in JSON_SUFFIXES:
        return [line.strip() for line in text.splitlines() if line.strip()]
    texts = []
    for line, rec in _records(path, text, (text_column,)):
        if isinstance(rec, Malformed):
            raise DataError(f"{path}:{line}: {rec.message}")
        try:
            texts.append(_text(rec.get(text_column) if isinstance(rec, dict) else None, text_column))
        except RecordError as bad:
            raise DataError(f"{path}:{line}: field {bad.field!r}: {bad.message}") from None
    return texts
