"""finetune.data: formats, precise error locations, strict mode, duplicates. No torch needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rolechat.finetune.data import DataError, load_dataset

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_alpaca_array_with_history_and_system(tmp_path):
    records = [
        {"instruction": "你好", "input": "", "output": "皇上万福金安。", "system": "你是甄嬛"},
        {
            "instruction": "翻译",
            "input": "hello",
            "output": "你好",
            "history": [["第一问", "第一答"], ["第二问", "第二答"]],
        },
    ]
    ds = load_dataset(write(tmp_path, "a.json", json.dumps(records, ensure_ascii=False, indent=1)))
    assert ds.issues == [] and ds.records == 2
    first, second = ds.conversations
    assert first.system == "你是甄嬛"
    assert first.messages == [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "皇上万福金安。"}]
    assert [m["content"] for m in second.messages] == ["第一问", "第一答", "第二问", "第二答", "翻译\nhello", "你好"]
    assert [m["role"] for m in second.messages] == ["user", "assistant"] * 3
    assert ds.dataset_system == "你是甄嬛"


def test_sharegpt_and_openai_records_in_jsonl(tmp_path):
    lines = [
        {
            "conversations": [
                {"from": "system", "value": "S"},
                {"from": "human", "value": "q1"},
                {"from": "gpt", "value": "a1"},
                {"from": "human", "value": "q2"},
                {"from": "gpt", "value": "a2"},
            ]
        },
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
    ]
    ds = load_dataset(write(tmp_path, "c.jsonl", "\n".join(json.dumps(x) for x in lines)))
    assert ds.formats == {"sharegpt": 1, "openai": 1}
    assert ds.conversations[0].system == "S"
    assert [m["content"] for m in ds.conversations[0].messages] == ["q1", "a1", "q2", "a2"]


def test_bad_records_are_skipped_with_line_record_and_field(tmp_path):
    text = "\n".join(
        [
            json.dumps({"instruction": "ok", "output": "fine"}),
            json.dumps({"instruction": "no output"}),
            "{not json",
            json.dumps({"instruction": "x", "output": ""}),
            json.dumps({"instruction": 3, "output": "y"}),
            json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "robot", "content": "a"}]}),
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": "q"},
                        {"role": "assistant", "content": "a"},
                        {"role": "user", "content": "dangling"},
                    ]
                }
            ),
            json.dumps(["not", "an", "object"]),
        ]
    )
    ds = load_dataset(write(tmp_path, "bad.jsonl", text))
    assert len(ds.conversations) == 1
    found = {(i.line, i.field): i.message for i in ds.issues}
    assert found[(2, "output")] == "missing"
    assert "malformed JSON" in found[(3, "")]
    assert found[(4, "output")] == "empty reply"
    assert "must be a string" in found[(5, "instruction")]
    assert "unknown role 'robot'" in found[(6, "messages[1].role")]
    assert "end with an assistant reply" in found[(7, "messages")]
    assert "JSON object" in found[(8, "")]
    assert str(ds.issues[0]).startswith(f"{tmp_path / 'bad.jsonl'}:2: record 2: field 'output'")


def test_json_array_reports_the_line_where_each_record_starts(tmp_path):
    records = [
        {"instruction": "a", "output": "b"},
        {"instruction": "c", "output": "d"},
        {"instruction": "e", "output": 5},
    ]
    path = write(tmp_path, "arr.json", json.dumps(records, indent=2))
    ds = load_dataset(path)
    (issue,) = ds.issues
    start = path.read_text().splitlines().index("  {", 9) + 1  # third record's opening brace
    assert (issue.line, issue.record, issue.field) == (start, 3, "output")
    with pytest.raises(DataError, match=rf"arr.json:{start}: record 3: field 'output'.*--strict"):
        load_dataset(path, strict=True)


def test_malformed_json_array_names_line_and_column(tmp_path):
    path = write(
        tmp_path, "broken.json", '[\n {"instruction": "a", "output": "b"},\n {"instruction": "c" "output": 1}\n]'
    )
    with pytest.raises(DataError, match=r"broken.json:3:\d+: malformed JSON"):
        load_dataset(path)


def test_exact_duplicates_are_counted_and_dropped(tmp_path):
    rec = {"instruction": "同一个问题", "output": "同一个回答"}
    ds = load_dataset(write(tmp_path, "dup.json", json.dumps([rec, rec, rec, {**rec, "output": "别的"}])))
    assert ds.duplicates == 2 and len(ds.conversations) == 2
    kept = load_dataset(write(tmp_path, "dup2.json", json.dumps([rec, rec])), dedupe=False)
    assert kept.duplicates == 1 and len(kept.conversations) == 2


def test_unusable_files_raise_clearly(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        load_dataset(tmp_path / "missing.json")
    (tmp_path / "gbk.json").write_bytes('[{"instruction": "你好", "output": "好"}]'.encode("gbk"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_dataset(tmp_path / "gbk.json")
    with pytest.raises(DataError, match="no usable records"):
        load_dataset(write(tmp_path, "allbad.jsonl", '{"instruction": "x"}\n'))


def test_huanhuan_loads_with_its_duplicates_counted(shared_data):
    ds = load_dataset(shared_data / "huanhuan.json")
    assert ds.records == 3729 and ds.issues == []
    assert ds.duplicates > 0 and len(ds.conversations) == ds.records - ds.duplicates
    assert all(len(c.messages) == 2 for c in ds.conversations)


@pytest.mark.parametrize("name", ["cat.json", "palace.json"])
def test_sample_persona_sets_validate(name):
    path = ROOT / "examples" / "personas" / name
    if not path.is_file():
        pytest.skip(f"{path} not written yet")
    ds = load_dataset(path, strict=True)
    assert ds.conversations and not ds.issues


def test_validation_imports_nothing_heavy(tmp_path):
    path = write(tmp_path, "a.json", json.dumps([{"instruction": "a", "output": "b"}]))
    code = (
        "import sys; from finetune.data import load_dataset; load_dataset(sys.argv[1]); "
        "import finetune; print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_records_with_their_own_different_system_prompt_are_listed(tmp_path):
    path = write(
        tmp_path,
        "d.jsonl",
        '{"instruction": "a", "output": "b", "system": "你是甄嬛。"}\n'
        '{"instruction": "c", "output": "d"}\n'
        '{"instruction": "e", "output": "f", "system": "你是华妃。"}\n'
        '{"messages": [{"role": "system", "content": "你是皇后。"}, {"role": "user", "content": "g"},'
        ' {"role": "assistant", "content": "h"}]}\n',
    )
    data = load_dataset(path)
    assert [(c.line, c.system) for c in data.other_systems("你是甄嬛。")] == [(3, "你是华妃。"), (4, "你是皇后。")]
    assert len(data.other_systems("")) == 3  # a persona without a system prompt differs from all of them
