"""The reading layer persona data and labelled data share: records with their lines, issues naming file and line."""

from __future__ import annotations

import pytest

from rolechat.finetune.classify_data import load_labeled
from rolechat.finetune.data import load_dataset
from rolechat.finetune.records import DataError, Malformed, RecordError, iter_json, read_records, read_text


def parse_text(rec):
    if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
        raise RecordError("text", "missing")
    return rec["text"]


def test_json_lines_yield_each_record_with_its_line_and_a_malformed_line_in_place():
    text = '{"text": "a"}\n\n{"text": \n{"text": "b"}\n'
    got = list(iter_json(text, "f.jsonl"))
    assert [line for line, _ in got] == [1, 3, 4]
    assert got[0][1] == {"text": "a"} and got[2][1] == {"text": "b"}
    assert isinstance(got[1][1], Malformed) and got[1][1].message.startswith("malformed JSON")


def test_a_json_array_gives_the_line_each_record_starts_on():
    text = '[\n  {"text": "a"},\n\n  {"text":\n   "b"},\n  {"text": "c"}\n]'
    assert [(line, rec["text"]) for line, rec in iter_json(text, "f.json")] == [(2, "a"), (4, "b"), (6, "c")]


def test_a_broken_array_stops_with_file_line_and_column():
    with pytest.raises(DataError, match=r"^f\.json:3:3: malformed JSON: expected ',' or ']'"):
        list(iter_json('[\n {"text": "a"}\n  {"text": "b"}]', "f.json"))


def test_malformed_and_bad_records_become_issues_naming_file_line_and_record():
    text = '{"text": "a"}\n{oops\n{"other": 1}\n{"text": "a"}\n{"text": "b"}\n'
    parsed = read_records(iter_json(text, "d.jsonl"), "d.jsonl", parse_text, key=str, strict=False, dedupe=True)
    assert [(line, number, item) for line, number, item in parsed.items] == [(1, 1, "a"), (5, 5, "b")]
    assert [str(i) for i in parsed.issues] == [
        "d.jsonl:2: record 2: malformed JSON: at line 1, column 2: Expecting property name enclosed in double quotes",
        "d.jsonl:3: record 3: field 'text': missing",
    ]
    assert (parsed.records, parsed.duplicates) == (5, 1)
    kept = read_records(iter_json(text, "d.jsonl"), "d.jsonl", parse_text, key=str, strict=False, dedupe=False)
    assert [item for _, _, item in kept.items] == ["a", "a", "b"] and kept.duplicates == 1


def test_strict_stops_at_the_first_bad_record_and_an_unusable_file_is_refused():
    text = '{"text": "a"}\n{"other": 1}\n'
    with pytest.raises(
        DataError, match=r"^d\.jsonl:2: record 2: field 'text': missing \(--strict stops at the first bad row\)"
    ):
        read_records(iter_json(text, "d.jsonl"), "d.jsonl", parse_text, key=str, strict=True, dedupe=True, noun="row")
    with pytest.raises(DataError, match=r"^d\.jsonl: no usable records \(1 rejected; first: d\.jsonl:1: record 1"):
        read_records(iter_json('{"x": 1}\n', "d.jsonl"), "d.jsonl", parse_text, key=str, strict=False, dedupe=True)
    with pytest.raises(DataError, match=r"^d\.jsonl: no rows$"):
        read_records(
            iter_json("\n\n", "d.jsonl"), "d.jsonl", parse_text, key=str, strict=False, dedupe=True, noun="row"
        )


def test_read_text_names_the_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "gbk.jsonl"
    path.write_bytes('{"text": "好"}'.encode("gbk"))
    with pytest.raises(DataError, match=r"gbk\.jsonl: not UTF-8 text \(byte 10\)"):
        read_text(path)
    with pytest.raises(DataError, match="cannot read"):
        read_text(tmp_path / "missing.jsonl")


def test_persona_and_labelled_data_report_a_malformed_line_the_same_way(tmp_path):
    persona = tmp_path / "p.jsonl"
    persona.write_text('{"instruction": "你好", "output": "好"}\n{bad\n', encoding="utf-8")
    labelled = tmp_path / "l.jsonl"
    labelled.write_text('{"text": "好", "label": 1}\n{bad\n{"text": "差", "label": 0}\n', encoding="utf-8")
    persona_issue = load_dataset(persona).issues[0]
    labelled_issue = load_labeled(labelled).issues[0]
    assert (persona_issue.file, persona_issue.line, persona_issue.record) == (str(persona), 2, 2)
    assert (labelled_issue.file, labelled_issue.line, labelled_issue.record) == (str(labelled), 2, 2)
    assert persona_issue.message == labelled_issue.message
