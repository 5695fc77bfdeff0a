"""Classifier training on a tiny in-process BERT (and a tiny Qwen2): learning, save -> load, labels, resume."""

from __future__ import annotations

import json

import pytest

from rolechat.finetune.classifier import Classifier, ClassifierManifest, discover_classifiers
from rolechat.finetune.classify_config import ClassifyConfig
from rolechat.finetune.classify_train import classify_progress_path, scores, train_classifier
from rolechat.finetune.data import DataError
from rolechat.finetune.model import TrainError
from rolechat.finetune.progress import read_progress
from tests.classify_support import build_tiny_bert, synthetic_rows, write_csv


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("bert") / "bert")


@pytest.fixture
def data_csv(tmp_path):
    return write_csv(tmp_path / "reviews.csv", synthetic_rows(160))


def _cfg(model, **kw):
    base = {"model": str(model), "eval_ratio": 0.25, "batch_size": 16, "logging_steps": 2, "seed": 0}
    return ClassifyConfig(**{**base, **kw})


def test_scores_accuracy_macro_f1_and_confusion():
    s = scores([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], 3)
    assert s["accuracy"] == pytest.approx(0.6)
    assert s["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert s["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_accuracy_rises_with_training_and_the_folder_is_complete(tiny_bert, data_csv):
    result = train_classifier(
        data_csv, "syn", _cfg(tiny_bert, epochs=8, learning_rate=5e-3, train_embeddings=True), show_progress=False
    )
    m = result.metrics
    assert m["accuracy_after"] >= 0.9 > m["accuracy_before"] + 0.2
    assert m["macro_f1_after"] > m["macro_f1_before"]
    names = {p.name for p in result.output.iterdir()}
    assert {"adapter_model.safetensors", "classifier.json", "confusion.png", "loss.png", "metrics.json"} <= names
    events = read_progress(classify_progress_path("syn"))
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    assert [e["phase"] for e in events if e["event"] == "eval"] == ["before", "after"]
    steps = [e for e in events if e["event"] == "step"]
    assert steps and all(e["loss"] > 0 and e["max_steps"] == m["steps"] for e in steps)
    assert [e["step"] for e in steps] == sorted({e["step"] for e in steps})
    assert [e.name for e in discover_classifiers() if e.ok] == ["syn"]
    clf = Classifier.load("syn", device="cpu")
    good, bad = clf.predict(["这本书很好推荐", "快递很差退货"])
    assert (good.label, bad.label) == ("pos", "neg")
    assert sum(good.probabilities.values()) == pytest.approx(1.0)


def test_save_load_gives_identical_logits_and_keeps_the_label_mapping(tiny_bert, tmp_path):
    labels = ["正面", "负面", "10", "2"]
    rows = [(t, labels[i % 4]) for i, (t, _) in enumerate(synthetic_rows(80))]
    data = write_csv(tmp_path / "four.csv", rows, header=("review", "sentiment"))
    captured = {}

    from transformers import TrainerCallback

    class Grab(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kw):
            captured["model"] = model

    cfg = _cfg(tiny_bert, max_steps=4, text_column="review", label_column="sentiment")
    result = train_classifier(data, "four", cfg, callbacks=[Grab()], show_progress=False)
    assert result.manifest.labels == ["10", "2", "正面", "负面"]  # sorted: numeric-looking labels are not all numeric
    manifest = ClassifierManifest.load(result.output)
    assert (manifest.labels, manifest.text_column, manifest.architecture) == (
        result.manifest.labels,
        "review",
        "encoder",
    )
    texts = ["这本书很好", "快递很差退货", "hello <|im_end|> [SEP]"]
    trained = captured["model"].eval()
    import torch

    clf = Classifier.load("four", device="cpu")
    from rolechat.finetune.classifier import encode_texts

    with torch.inference_mode():
        expect = torch.cat(
            [
                trained(**clf.tokenizer.pad({"input_ids": [ids]}, return_tensors="pt")).logits
                for ids in encode_texts(clf.tokenizer, texts, 256)
            ]
        )
    assert torch.allclose(clf.logits(texts, batch_size=2), expect, atol=1e-5)
    assert clf.model.config.id2label == {0: "10", 1: "2", 2: "正面", 3: "负面"}
    assert set(clf.predict(texts)[0].probabilities) == set(labels)


def test_bad_rows_fail_under_strict_before_training(tiny_bert, tmp_path):
    data = tmp_path / "bad.csv"
    data.write_text("text,label\n好,1\n差,0\n坏行,\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.csv:4: record 3: field 'label': missing"):
        train_classifier(data, "bad", _cfg(tiny_bert, strict=True), show_progress=False)
    assert read_progress(classify_progress_path("bad"))[-1]["status"] == "failed"


def test_resume_continues_from_the_last_checkpoint(tiny_bert, data_csv):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 5:
                raise KeyboardInterrupt

    cfg = _cfg(tiny_bert, max_steps=8, save_steps=4)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(data_csv, "again", cfg, callbacks=[Crash()], show_progress=False)
    assert read_progress(classify_progress_path("again"))[-1]["error"].startswith("interrupted")
    with pytest.raises(TrainError, match="--resume"):
        train_classifier(data_csv, "again", cfg, show_progress=False)
    result = train_classifier(None, "again", resume=True, show_progress=False)
    assert result.metrics["resumed_from"] == "checkpoint-4" and result.metrics["steps"] == 8
    assert json.loads((result.output / "metrics.json").read_text())["accuracy_before"] is not None


def test_a_decoder_trains_its_score_head(tiny_qwen2, data_csv):
    result = train_classifier(data_csv, "dec", _cfg(tiny_qwen2, max_steps=3), show_progress=False)
    assert result.manifest.architecture == "decoder" and "score" in result.manifest.heads
    clf = Classifier.load("dec", device="cpu")
    one = clf.logits(["这本书很好"])
    batch = clf.logits(["这本书很好", "快递很差退货，包装也坏了，非常失望"])
    assert torch_close(one[0], batch[0])  # right padding: the head reads the last real token


def torch_close(a, b):
    import torch

    return torch.allclose(a, b, atol=1e-5)


def test_a_classifier_on_a_rebuilt_demo_model_loads_that_model_not_the_shipped_one(tiny_qwen2, data_csv, tmp_path):
    import shutil

    from rolechat.llm.demo import DEMO_MODEL_ID, MARKER_FILE

    rebuilt = tmp_path / "demo-rebuilt"  # e.g. `python -m rolechat.llm.demo.build --out DIR`, then classify.model = DIR
    shutil.copytree(tiny_qwen2, rebuilt)
    (rebuilt / MARKER_FILE).write_text(json.dumps({"model_id": DEMO_MODEL_ID}), encoding="utf-8")
    result = train_classifier(data_csv, "onrebuilt", _cfg(rebuilt, max_steps=1), show_progress=False)
    assert result.manifest.base_model == DEMO_MODEL_ID
    clf = Classifier.load("onrebuilt", device="cpu")  # the shipped demo model has another size: it used to fail
    assert clf.predict(["这本书很好"])[0].label in result.manifest.labels
