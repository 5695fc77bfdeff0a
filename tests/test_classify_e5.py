"""Classifiers on a sentence encoder (by default multilingual-e5-small): read through the mean of the token states
with the encoder's query prefix before every text, in training and in prediction alike (a tiny stand-in encoder
here; bench/bench_classify.py has the real figures)."""

from __future__ import annotations

import pytest

from rolechat import encoder
from rolechat.finetune.classifier import Classifier, ClassifierManifest
from rolechat.finetune.classify_config import ClassifyConfig
from rolechat.finetune.classify_train import reading, resolve_base, train_classifier
from tests.classify_support import build_tiny_bert, build_tiny_sentence_encoder, synthetic_rows, write_csv


@pytest.fixture(scope="module")
def sentence_encoder(tmp_path_factory):
    return build_tiny_sentence_encoder(tmp_path_factory.mktemp("st") / "tiny-e5")


def test_the_default_base_is_e5_from_the_hub_cache_or_the_bundled_copy(monkeypatch, tmp_path):
    monkeypatch.setattr(encoder, "model_folder", lambda: tmp_path)
    for name in ("", "multilingual-e5-small", "intfloat/multilingual-e5-small", "e5"):
        resolved = resolve_base(ClassifyConfig(model=name))
        assert (resolved.source, resolved.model_id) == (str(tmp_path), "multilingual-e5-small")


def test_a_sentence_encoder_is_read_by_its_mean_with_its_query_prefix(sentence_encoder, tmp_path):
    assert reading(ClassifyConfig(), str(sentence_encoder)) == ("mean", "query: ")
    assert reading(ClassifyConfig(pooling="head"), str(sentence_encoder)) == ("head", "query: ")
    plain = build_tiny_bert(tmp_path / "plain-bert")
    assert reading(ClassifyConfig(), str(plain)) == ("head", "")  # bert-base-chinese and the like: their own head


def test_training_on_it_learns_and_prediction_reads_texts_the_same_way(sentence_encoder, tmp_path):
    data = write_csv(tmp_path / "reviews.csv", synthetic_rows(160))
    cfg = ClassifyConfig(
        model=str(sentence_encoder),
        eval_ratio=0.25,
        batch_size=16,
        epochs=8,
        learning_rate=5e-3,
        train_embeddings=True,
        target_modules=["query", "value"],
        seed=0,
    )
    result = train_classifier(data, "mean", cfg, show_progress=False)
    assert result.metrics["accuracy_after"] >= 0.9 > result.metrics["accuracy_before"] + 0.2
    manifest = ClassifierManifest.load(result.output)
    assert (manifest.pooling, manifest.text_prefix, manifest.heads[0]) == ("mean", "query: ", "classifier")
    clf = Classifier.load("mean", device="cpu")
    good, bad = clf.predict(["这本书很好推荐", "快递很差退货"])
    assert (good.label, bad.label) == ("pos", "neg")
    seen = []
    encode = clf.tokenizer.__call__
    clf.tokenizer.__class__.__call__ = lambda self, texts, **kw: (seen.extend(texts), encode(texts, **kw))[1]
    try:
        clf.predict(["包装不错"])
    finally:
        del clf.tokenizer.__class__.__call__
    assert seen == ["query: 包装不错"]


def test_lora_layers_adapts_only_the_last_layers(sentence_encoder, tmp_path):
    from safetensors import safe_open

    data = write_csv(tmp_path / "reviews.csv", synthetic_rows(64))
    cfg = ClassifyConfig(model=str(sentence_encoder), lora_layers=1, max_steps=2)  # all-linear, the default
    result = train_classifier(data, "top", cfg, show_progress=False)
    with safe_open(str(result.output / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    lora = [k for k in keys if "lora_" in k]
    assert lora and all(".layer.1." in k for k in lora)  # the tiny encoder has layers 0 and 1
    adapted = {k.split(".layer.1.")[1].split(".lora_")[0] for k in lora}
    assert adapted == {
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    }
    assert any("classifier" in k and "lora_" not in k for k in keys)  # the head is saved whole, not adapted
    assert ClassifierManifest.load(result.output).hyperparameters["lora_layers"] == 1
