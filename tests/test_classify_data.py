"""Labelled data for classifiers: CSV / TSV / JSONL reading, line-numbered problems, --strict, the split."""

from __future__ import annotations

import json

import pytest

from rolechat.finetune.classify_data import load_labeled, read_texts, sort_labels, stratified_split
from rolechat.finetune.data import DataError


def test_csv_bad_rows_are_reported_with_their_line_numbers(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(
        'text,label\n很好看,1\n,0\n"一行\n分成两行",0\n缺标签,\n太差了,0,extra\n真不错,1\n',
        encoding="utf-8",
    )
    data = load_labeled(path)
    assert [(r.text, r.label, r.line) for r in data.rows] == [
        ("很好看", "1", 2),
        ("一行\n分成两行", "0", 4),
        ("真不错", "1", 8),
    ]
    assert [(i.line, i.field) for i in data.issues] == [(3, "text"), (6, "label"), (7, "")]
    assert "expected 2 columns, got 3" in str(data.issues[2])
    assert str(data.issues[0]).startswith(f"{path}:3: record 2: field 'text'")
    with pytest.raises(DataError, match=r"d\.csv:3: record 2: field 'text': empty text"):
        load_labeled(path, strict=True)


def test_jsonl_and_tsv_with_configured_columns(tmp_path):
    jsonl = tmp_path / "d.jsonl"
    lines = [
        {"review": "好", "y": 1},
        {"review": "差", "y": 0},
        "not json",
        {"review": 5, "y": 0},
        {"review": "行", "y": 2},
    ]
    jsonl.write_text("\n".join(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in lines) + "\n")
    data = load_labeled(jsonl, text_column="review", label_column="y")
    assert data.labels == ["0", "1", "2"]
    assert [(i.line, i.field) for i in data.issues] == [(3, ""), (4, "review")]
    tsv = tmp_path / "d.tsv"
    tsv.write_text('label\ttext_a\n1\t"引号"不用转义\n0\t很差\n', encoding="utf-8")
    data = load_labeled(tsv, text_column="text_a")
    assert [r.text for r in data.rows] == ['"引号"不用转义', "很差"]


def test_whole_file_problems_name_the_file(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("sentence,label\n好,1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.csv:1: header has no column 'text'; columns: 'sentence', 'label'"):
        load_labeled(path)
    path.write_text("text,label\n好,1\n好看,1\n", encoding="utf-8")
    with pytest.raises(DataError, match="single label"):
        load_labeled(path)
    with pytest.raises(DataError, match="unsupported file type"):
        load_labeled(tmp_path / "d.xlsx")


def test_labels_sort_numerically_and_the_split_is_stratified_and_seeded(tmp_path):
    assert sort_labels({"10", "2", "1"}) == ["1", "2", "10"]
    path = tmp_path / "d.csv"
    path.write_text("text,label\n" + "".join(f"句子{i},{'a' if i < 80 else 'b'}\n" for i in range(100)))
    data = load_labeled(path)
    train, held = stratified_split(data.rows, 0.2, seed=3)
    assert sorted(r.label for r in held).count("a") == 16 and [r.label for r in held].count("b") == 4
    assert {r.record for r in train}.isdisjoint({r.record for r in held}) and len(train) + len(held) == 100
    assert stratified_split(data.rows, 0.2, seed=3)[1] == held


def test_read_texts_from_lines_or_a_table(tmp_path):
    (tmp_path / "a.txt").write_text("第一条\n\n 第二条 \n", encoding="utf-8")
    assert read_texts(tmp_path / "a.txt") == ["第一条", "第二条"]
    (tmp_path / "b.csv").write_text("text,label\n甲,1\n乙,0\n", encoding="utf-8")
    assert read_texts(tmp_path / "b.csv") == ["甲", "乙"]
