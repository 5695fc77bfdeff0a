"""`rolechat train --dry-run` and the CLI's error paths (in-process, typer's CliRunner)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from rolechat.cli import app

runner = CliRunner()


def flat(text: str) -> str:
    """The output with rich's line wrapping (and all other whitespace runs) collapsed to single spaces."""
    return " ".join(text.split())


def test_dry_run_lints_the_data_and_shows_the_label_mask(tiny_qwen2, tmp_path):
    records = [{"instruction": f"皇上万福金安。{i}", "output": "臣妾做不到啊！"} for i in range(30)]
    records += [records[0], {"instruction": "no reply", "output": ""}]
    data = tmp_path / "d.json"
    data.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    result = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(data),
            "--persona",
            "zh",
            "--base",
            str(tiny_qwen2),
            "--system",
            "你是甄嬛。",
            "--dry-run",
        ],
    )
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "32 records, 30 conversations used (1 bad skipped, 1 exact duplicates removed)" in out
    assert "field 'output': empty reply" in out
    assert "lost end-of-turn 0" in out and "expected padding" in out
    assert "⟦臣妾做不到啊！<|im_end|>⟧" in out and "<|im_start|>system 你是甄嬛。" in out

    summary = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(data),
            "--persona",
            "zh",
            "--base",
            str(tiny_qwen2),
            "--dry-run",
            "--json",
            "--eval-ratio",
            "0.1",
        ],
    )
    s = json.loads(summary.output)
    assert (s["examples"], s["train_examples"], s["eval_examples"], s["eot_lost"]) == (30, 27, 3, 0)


def test_strict_fails_with_the_line_number(tiny_qwen2, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": 3}\n', encoding="utf-8")
    result = runner.invoke(
        app, ["train", "--data", str(data), "--persona", "zh", "--base", str(tiny_qwen2), "--strict"]
    )
    assert result.exit_code == 1
    assert "d.jsonl:2: record 2: field 'output': must be a string" in flat(result.output)


def test_bad_settings_and_names_are_refused(tmp_path):
    data = tmp_path / "d.json"
    data.write_text("[]", encoding="utf-8")
    assert (
        "train.batch_size must be >= 1"
        in runner.invoke(app, ["train", "--data", str(data), "--persona", "zh", "--batch-size", "0"]).output
    )
    assert "invalid persona name" in runner.invoke(app, ["train", "--data", str(data), "--persona", "a/b"]).output
    assert "--data is required" in runner.invoke(app, ["train", "--persona", "zh"]).output
