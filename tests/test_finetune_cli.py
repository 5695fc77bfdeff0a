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


def test_dry_run_reports_parity_and_records_under_another_system_prompt(tiny_qwen2, tmp_path):
    records = [{"instruction": f"问题{i}", "output": "\n臣妾做不到啊！", "system": "你是甄嬛。"} for i in range(6)]
    records += [{"instruction": "问题x", "output": "好", "system": "你是华妃。"}]
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records), encoding="utf-8")
    args = ["train", "--data", str(data), "--persona", "zh", "--base", str(tiny_qwen2), "--dry-run"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "1 record(s) have their own, different system prompt" in out
    assert "record 7 (line 7): system '你是华妃。'" in out
    assert "train/infer parity: every example matches the inference prompt" in out
    s = json.loads(runner.invoke(app, [*args, "--json"]).output)
    assert (s["parity"], s["system_mismatch"], s["think_block"]) == (0, 1, "none")

    strict = runner.invoke(app, [*args, "--strict"])
    assert strict.exit_code == 1
    assert "d.jsonl:7: record 7: its system prompt '你是华妃。' differs from the persona's '你是甄嬛。'" in flat(
        strict.output
    )


def test_dry_run_says_how_a_thinking_only_template_is_trained(tmp_path):
    from tests.tiny import QWEN3_THINKING_TEMPLATE, build_qwen_tokenizer, build_tiny

    base = build_tiny(tmp_path / "thinking", "qwen3", tokenizer=build_qwen_tokenizer(QWEN3_THINKING_TEMPLATE))
    data = tmp_path / "d.json"
    data.write_text(json.dumps([{"instruction": "你好", "output": "好"}], ensure_ascii=False), encoding="utf-8")
    args = ["train", "--data", str(data), "--persona", "zh", "--base", str(base), "--dry-run"]
    out = flat(runner.invoke(app, args).output)
    assert "thinking-only template" in out and "closed empty think block '<think>\\n\\n</think>\\n\\n'" in out
    assert "<think> </think> ⟦好<|im_end|>⟧" in out  # the reply after the closed block, the block not supervised
    assert json.loads(runner.invoke(app, [*args, "--json"]).output)["think_block"] == "closed empty"
