"""`rolechat train-classifier` and `rolechat classify` through the real command line (tiny in-process BERT)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rolechat.cli import app
from tests.classify_support import build_tiny_bert, install, synthetic_rows, train_sample, write_csv

runner = CliRunner()


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("bert") / "bert")


@pytest.fixture(scope="session")
def sample_classifier(tmp_path_factory, tiny_bert):
    return train_sample(tmp_path_factory.mktemp("clf"), tiny_bert)


def test_train_classifier_reports_before_and_after(tiny_bert, tmp_path):
    data = write_csv(tmp_path / "d.csv", [(t, "好评" if y == "pos" else "差评") for t, y in synthetic_rows(60)])
    args = ["train-classifier", "--data", str(data), "--name", "cli", "--model", str(tiny_bert), "--max-steps", "2"]
    result = runner.invoke(app, [*args, "--eval-ratio", "0.2", "--target-modules", "query,value", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout[result.stdout.index("{") :])
    assert body["labels"] == ["好评", "差评"] and body["metrics"]["steps"] == 2
    assert body["metrics"]["accuracy_before"] is not None and body["metrics"]["eval_rows"] == 12
    config = json.loads(open(body["output"] + "/adapter_config.json").read())
    assert sorted(config["target_modules"]) == ["query", "value"]
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "--overwrite" in again.output


def test_train_classifier_names_the_bad_row(tiny_bert, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("text,label\n好,1\n差,0\n,1\n", encoding="utf-8")
    result = runner.invoke(app, ["train-classifier", "--data", str(data), "--name", "x", "--strict"])
    assert result.exit_code == 1
    assert "d.csv:4: record 3: field 'text': empty text" in " ".join(result.output.split())
    bad = runner.invoke(app, ["train-classifier", "--data", str(data), "--name", "x", "--eval-ratio", "0.9"])
    assert bad.exit_code == 1 and "classify.eval_ratio must be in [0, 0.5)" in " ".join(bad.output.split())


def test_classify_json_output_from_arguments_file_and_stdin(sample_classifier, tmp_path):
    install(sample_classifier)
    result = runner.invoke(app, ["classify", "--adapter", "sentiment", "--json", "这本书很好推荐", "快递很差退货"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["label"] for r in rows] == ["pos", "neg"]
    assert all(set(r["probabilities"]) == {"neg", "pos"} for r in rows)
    assert rows[0]["score"] == max(rows[0]["probabilities"].values())
    texts = tmp_path / "t.txt"
    texts.write_text("内容精彩值得\n\n包装糟糕失望\n", encoding="utf-8")
    from_file = runner.invoke(app, ["classify", "-a", "sentiment", "--file", str(texts), "--json"])
    assert [json.loads(x)["label"] for x in from_file.stdout.splitlines()] == ["pos", "neg"]
    from_stdin = runner.invoke(app, ["classify", "-a", "sentiment", "--json"], input="作者很好\n")
    assert [json.loads(x)["text"] for x in from_stdin.stdout.splitlines()] == ["作者很好"]
    listing = runner.invoke(app, ["classify", "--list", "--json"])
    assert json.loads(listing.stdout)[0]["labels"] == ["neg", "pos"]


def test_classify_unknown_adapter_is_a_clear_error():
    result = runner.invoke(app, ["classify", "--adapter", "nope", "文本"])
    assert result.exit_code == 1 and "classifier 'nope' not found" in result.output


def test_train_task_classify_takes_the_shared_flags(tiny_bert, tmp_path):
    data = write_csv(tmp_path / "d.csv", synthetic_rows(40))
    args = ["train", "--task", "classify", "--data", str(data), "--name", "viatrain", "--base", str(tiny_bert)]
    result = runner.invoke(app, [*args, "--max-steps", "3", "--lr", "0.01", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout[result.stdout.index("{") :])
    assert body["metrics"]["steps"] == 3 and body["labels"] == ["neg", "pos"]
    from rolechat.finetune.classifier import ClassifierManifest

    manifest = ClassifierManifest.load(body["output"])
    assert manifest.hyperparameters["learning_rate"] == 0.01 and manifest.base_source == str(tiny_bert.resolve())
    assert manifest.heads == ["classifier"]
