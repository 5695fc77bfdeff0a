"""Characters as personas: persona folders written from cards, prompt-only characters in the runtime (base model
with the card's prompt), adapter + card personas, training into a character, and the shipped sample characters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rolechat import settings
from rolechat.conversation.card import Character, system_prompt
from rolechat.conversation.cardfile import read_card
from rolechat.conversation.characters import (
    attach_lorebook,
    export_character,
    find_character,
    load_character,
    persona_name,
    save_character,
)
from rolechat.conversation.lorebook import Lorebook, LoreEntry
from rolechat.llm import LLMConfig, PersonaManifest, Runtime, describe, discover
from rolechat.llm.demo import SAMPLE_PERSONAS_DIR
from tests.test_llm_runtime import HELLO, install, make_adapter

ROOT = Path(__file__).resolve().parents[1]
CARD = {
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "data": {
        "name": "林 夕",
        "description": "{{char}}是说书人。",
        "first_mes": "客官请坐。",
        "creator_notes": "给用户看的说明\n第二行",
        "extensions": {"vendor": 1},
    },
}


def test_save_character_writes_a_prompt_only_persona_folder():
    char = Character.from_dict(CARD)
    folder = save_character(char, avatar=b"\x89PNG fake")
    assert folder == settings.personas_dir() / persona_name(char) and folder.name == "林_夕"
    manifest = PersonaManifest.load(folder)
    assert manifest.display_name == "林 夕" and manifest.system_prompt == system_prompt(char)
    assert manifest.description == "给用户看的说明" and manifest.card["data"]["extensions"] == {"vendor": 1}
    assert load_character(manifest) == char
    assert (folder / "avatar.png").read_bytes() == b"\x89PNG fake"
    (entry,) = discover([settings.personas_dir()])
    assert entry.ok and not entry.has_adapter and entry.avatar == folder / "avatar.png"
    assert describe([entry])[0]["kind"] == "character" and describe([entry])[0]["adapter"] is False
    with pytest.raises(FileExistsError):
        save_character(char)
    assert not list(settings.personas_dir().glob(".*"))  # no leftover staging folders


def test_attach_lorebook_and_export(tmp_path):
    save_character(Character.from_dict(CARD), "linxi")
    book = Lorebook(name="书", entries=[LoreEntry(keys=["长安"], content="都城")])
    attach_lorebook("linxi", book)
    _, char = find_character("linxi")
    assert char.character_book == book
    with pytest.raises(FileExistsError, match="--replace"):
        attach_lorebook("linxi", Lorebook(entries=[LoreEntry(keys=["x"], content="y")]))
    out = export_character("linxi", tmp_path / "linxi.json")
    assert read_card(out).character_book == book
    with pytest.raises(ValueError, match="no character 'ghost'; characters: .*linxi"):
        find_character("ghost")


def test_manifest_without_card_or_adapter_is_still_broken():
    folder = settings.personas_dir() / "empty"
    PersonaManifest(name="empty", system_prompt="x").save(folder)
    (entry,) = discover([settings.personas_dir()])
    assert not entry.ok and "no character card" in entry.error


@pytest.fixture(scope="module")
def alpha(tiny_models, tmp_path_factory):
    return make_adapter(tiny_models["qwen2"], tmp_path_factory.mktemp("p") / "alpha", 1, system="你是阿尔法。")


def test_prompt_only_character_is_listed_and_generates_with_the_base_model(tiny_qwen2, alpha):
    install(alpha)
    char = Character.from_dict(CARD)
    save_character(char, "linxi")
    rt = Runtime.load(LLMConfig(model=str(tiny_qwen2)))
    assert rt.persona_names() == ["base", "alpha", "linxi"]
    assert rt.manifest("linxi").card["data"]["name"] == "林 夕"
    with_prompt = [{"role": "system", "content": system_prompt(char)}, *HELLO]
    base = rt.logits(with_prompt, persona=None)
    rt.logits(HELLO, persona="alpha")  # leave the adapter selected: the character must not inherit it
    assert torch.equal(rt.logits(HELLO, persona="linxi"), base)
    assert not torch.allclose(rt.logits(with_prompt, persona="alpha"), base)
    greedy = {"temperature": 0, "max_new_tokens": 6}
    assert rt.chat(HELLO, persona="linxi", params=greedy) == rt.chat(with_prompt, params=greedy)


def test_prompt_only_character_works_before_any_adapter_is_loaded(tiny_qwen2):
    save_character(Character.from_dict(CARD), "linxi")
    rt = Runtime.load(LLMConfig(model=str(tiny_qwen2)))
    assert rt.persona_names() == ["base", "linxi"] and rt.model is rt.base_model
    assert rt.chat(HELLO, persona="linxi", params={"temperature": 0, "max_new_tokens": 3})


def test_adapter_with_a_card_uses_its_adapter_and_keeps_its_card(tiny_qwen2, alpha):
    install(alpha)
    folder = settings.personas_dir() / "alpha"
    trained_prompt = PersonaManifest.load(folder).system_prompt
    save_character(Character.from_dict(CARD), "alpha", overwrite=True)
    manifest = PersonaManifest.load(folder)
    assert manifest.card["data"]["name"] == "林 夕" and manifest.system_prompt == trained_prompt
    assert (folder / "adapter_model.safetensors").is_file()
    rt = Runtime.load(LLMConfig(model=str(tiny_qwen2)))
    assert rt.persona_names() == ["base", "alpha"]
    assert not torch.allclose(rt.logits(HELLO, persona="alpha"), rt.logits(HELLO, persona=None))
    row = describe(rt.personas())[0]
    assert row["kind"] == "character" and row["adapter"] is True


def test_training_into_a_character_keeps_its_card_and_avatar(tiny_qwen2, tmp_path):
    from rolechat.finetune import TrainConfig, train

    save_character(Character.from_dict(CARD), "linxi", avatar=b"avatar bytes")
    rows = [{"instruction": f"问题{i}", "output": f"回答{i}"} for i in range(12)]
    data = tmp_path / "d.json"
    data.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    cfg = TrainConfig(max_steps=1, batch_size=4, eval_ratio=0, warmup_ratio=0.0, logging_steps=1)
    result = train(data, "linxi", cfg, LLMConfig(model=str(tiny_qwen2)), show_progress=False)  # no --overwrite
    folder = settings.personas_dir() / "linxi"
    manifest = PersonaManifest.load(folder)
    assert result.output == folder and (folder / "adapter_model.safetensors").is_file()
    assert manifest.card == Character.from_dict(CARD).to_card("v2")
    assert manifest.system_prompt == system_prompt(Character.from_dict(CARD)) and manifest.display_name == "林 夕"
    assert (folder / "avatar.png").read_bytes() == b"avatar bytes"


def test_sample_characters_match_their_cards_and_are_offered_with_the_demo_model():
    entries = {e.name: e for e in discover([SAMPLE_PERSONAS_DIR])}
    for name in ("suwan", "xiaoman"):
        entry = entries[name]
        card = read_card(ROOT / "examples" / "characters" / f"{name}.json")
        assert entry.ok and not entry.has_adapter and entry.avatar is not None
        assert load_character(entry.manifest) == card, "run scripts/sample_characters.py"
        assert entry.manifest.system_prompt == system_prompt(card)
    from rolechat.llm.runtime import persona_roots

    assert SAMPLE_PERSONAS_DIR in persona_roots(LLMConfig(), is_demo=True)


def test_prompt_only_character_follows_the_base_models_thinking_setting(tiny_models):
    char = Character.from_dict(CARD)
    save_character(char, "linxi")
    with_prompt = [{"role": "system", "content": system_prompt(char)}, *HELLO]
    thinking = Runtime.load(LLMConfig(model=str(tiny_models["qwen3"]), enable_thinking=True))
    plain = Runtime.load(LLMConfig(model=str(tiny_models["qwen3"]), enable_thinking=False))
    assert plain.encode(with_prompt) != thinking.encode(with_prompt)  # the template does render the setting
    assert thinking.encode(HELLO, "linxi") == thinking.encode(with_prompt)
    assert plain.encode(HELLO, "linxi") == plain.encode(with_prompt)


def test_prompt_only_character_is_a_model_of_the_api(tiny_qwen2):
    from fastapi.testclient import TestClient

    from rolechat.api import ServerConfig, create_app

    save_character(Character.from_dict(CARD), "linxi")
    rt = Runtime.load(LLMConfig(model=str(tiny_qwen2)))
    with TestClient(create_app(rt, ServerConfig())) as client:
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["base", "linxi"]
        body = {"model": "linxi", "messages": HELLO, "temperature": 0, "max_tokens": 4}
        reply = client.post("/v1/chat/completions", json=body)
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"]


def test_import_from_uploaded_bytes_names_the_upload_in_errors(tmp_path):
    from rolechat.conversation.characters import import_card, import_lorebook
    from rolechat.conversation.lorebook import CardError

    raw = json.dumps(CARD, ensure_ascii=False).encode("utf-8")
    folder, char = import_card(raw, "林夕.json", name="linxi")
    assert folder.name == "linxi" and char.name == "林 夕" and not (folder / "avatar.png").exists()
    world = {"entries": {"1": {"key": ["长安"], "content": "都城"}}}
    _, book = import_lorebook("linxi", json.dumps(world).encode("utf-8"), "长安.json")
    assert book.name == "长安" and find_character("linxi")[1].character_book == book
    with pytest.raises(CardError, match="坏卡.png: PNG has no character card"):
        import_card(png_bytes(), "坏卡.png")
    assert sorted(p.name for p in settings.personas_dir().iterdir()) == ["linxi"]


def png_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buffer, format="PNG")
    return buffer.getvalue()
