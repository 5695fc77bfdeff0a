"""One manifest loader for both kinds of adapter: persona.json and classifier.json round-trip, old files
still load, bad files name the file and the field."""

from __future__ import annotations

import json

import pytest

from rolechat.finetune.classifier import ClassifierError, ClassifierManifest
from rolechat.llm.manifest import is_folder_name, write_manifest
from rolechat.llm.personas import PersonaError, PersonaManifest


def test_a_persona_manifest_round_trips(tmp_path):
    card = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "喵喵"}}
    saved = PersonaManifest(
        name="miaomiao", display_name="喵喵", system_prompt="你是一只猫。", stop=["<|im_end|>"], card=card
    )
    path = saved.save(tmp_path)
    assert path == tmp_path / "persona.json" and not list(tmp_path.glob("*.tmp"))
    assert PersonaManifest.load(tmp_path) == saved
    assert json.loads(path.read_text(encoding="utf-8"))["system_prompt"] == "你是一只猫。"  # readable Chinese


def test_a_classifier_manifest_round_trips(tmp_path):
    saved = ClassifierManifest(name="情感", labels=["0", "1"], base_model="e5", pooling="mean", text_prefix="query: ")
    assert saved.save(tmp_path) == tmp_path / "classifier.json"
    loaded = ClassifierManifest.load(tmp_path)
    assert loaded == saved and loaded.label2id == {"0": 0, "1": 1}


def test_older_and_newer_files_load(tmp_path):
    # an early persona.json: no card, evaluation or fingerprint; a newer one: a field this version does not know
    write_manifest(tmp_path / "old" / "persona.json", {"name": "old", "system_prompt": "你好", "format_version": 1})
    assert PersonaManifest.load(tmp_path / "old").display_name == "old"
    write_manifest(tmp_path / "new" / "classifier.json", {"name": "new", "labels": ["a", "b"], "added_later": 3})
    assert ClassifierManifest.load(tmp_path / "new").labels == ["a", "b"]


@pytest.mark.parametrize(
    ("kind", "error", "content", "message"),
    [
        (PersonaManifest, PersonaError, None, r"persona\.json: missing \(every persona folder needs a persona\.json\)"),
        (ClassifierManifest, ClassifierError, None, r"classifier\.json: missing \(train it with rolechat train-"),
        (PersonaManifest, PersonaError, "{", r"persona\.json: invalid JSON.* at line 1, column 2"),
        (ClassifierManifest, ClassifierError, "[1]", r"classifier\.json: expected a JSON object"),
        (PersonaManifest, PersonaError, '{"display_name": "x"}', r"persona\.json: missing field 'name'"),
        (ClassifierManifest, ClassifierError, '{"name": "c"}', r"classifier\.json: missing field 'labels'"),
        (ClassifierManifest, ClassifierError, '{"name": "c", "labels": ["a"]}', r"'labels' must list at least two"),
        (PersonaManifest, PersonaError, '{"name": "p", "stop": "x", "v9": 1}', r"'stop'.*\(unknown fields: \['v9'\]\)"),
    ],
)
def test_a_bad_manifest_names_the_file_and_the_field(tmp_path, kind, error, content, message):
    if content is not None:
        (tmp_path / kind.FILE).write_text(content, encoding="utf-8")
    with pytest.raises(error, match=message):
        kind.load(tmp_path)


def test_adapter_names_are_folder_names():
    assert is_folder_name("甄嬛") and is_folder_name("a_b-1")
    assert not any(is_folder_name(n) for n in ("", "-x", "a/b", "a" * 65, None))
