"""`rolechat character import / export / import-lorebook / list` (in-process, typer's CliRunner)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo
from typer.testing import CliRunner

from rolechat import settings
from rolechat.cli import app
from rolechat.conversation.card import Character
from rolechat.conversation.cardfile import read_card
from rolechat.llm import PersonaManifest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def png_card(path: Path, card: dict) -> Path:
    info = PngInfo()
    info.add_text("chara", base64.b64encode(json.dumps(card, ensure_ascii=False).encode("utf-8")).decode("ascii"))
    Image.new("RGB", (20, 30), (200, 100, 50)).save(path, pnginfo=info)
    return path


CARD = {
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "data": {
        "name": "Rin Tohsaka",
        "description": "{{char}} is a mage.",
        "first_mes": "Hi {{user}}",
        "alternate_greetings": ["Yo"],
        "extensions": {"fav": True, "vendor": {"k": [1, 2]}},
        "future": "kept",
        "character_book": {
            "entries": [
                {"keys": ["gem"], "content": "Gems hold mana.", "extensions": {"x": 1}, "enabled": True, "id": 0}
            ]
        },
    },
    "create_date": "2024-1-1",
}


def test_import_export_import_gives_the_same_card(tmp_path):
    source = png_card(tmp_path / "rin.png", CARD)
    out = run("character", "import", str(source))
    assert out.exit_code == 0, out.output
    assert "Rin_Tohsaka" in out.output and "2 greetings" in out.output and "1 entries" in out.output
    folder = settings.personas_dir() / "Rin_Tohsaka"
    with Image.open(folder / "avatar.png") as image:
        assert image.size == (20, 30) and image.getpixel((0, 0)) == (200, 100, 50)
    for suffix in ("png", "json"):
        exported = tmp_path / f"out.{suffix}"
        out = run("character", "export", "Rin_Tohsaka", "--out", str(exported))
        assert out.exit_code == 0, out.output
        got, want = read_card(exported).to_dict(), read_card(source).to_dict()
        assert got == ({**want, "group_only_greetings": []} if suffix == "png" else want)  # a PNG's ccv3 is V3
    exported_png = tmp_path / "out.png"
    with Image.open(exported_png) as image:
        assert image.size == (20, 30) and {"chara", "ccv3"} <= set(image.text)
    again = run("character", "import", str(exported_png), "--name", "rin2")
    assert again.exit_code == 0, again.output
    first = Character.from_dict(PersonaManifest.load(folder).card)
    second = Character.from_dict(PersonaManifest.load(settings.personas_dir() / "rin2").card)
    assert {**first.to_dict(), "group_only_greetings": []} == second.to_dict() and second.extra == {"future": "kept"}
    assert json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))["create_date"] == "2024-1-1"
    v3 = run("character", "export", "Rin_Tohsaka", "--out", str(tmp_path / "v3.json"), "--version", "v3")
    assert v3.exit_code == 0 and json.loads((tmp_path / "v3.json").read_text())["spec"] == "chara_card_v3"


def test_import_errors_are_clean_and_leave_nothing(tmp_path):
    bad = dict(CARD, data={**CARD["data"], "character_book": {"entries": [{}, {}, {}, {"keys": {"a": 1}}]}})
    out = run("character", "import", str(png_card(tmp_path / "bad.png", bad)))
    assert out.exit_code == 1
    assert "bad.png: data.character_book.entries[3].keys: expected a list of strings" in out.output.replace("\n", "")
    assert not settings.personas_dir().exists() or not any(settings.personas_dir().iterdir())
    good = png_card(tmp_path / "rin.png", CARD)
    assert run("character", "import", str(good), "--name", "rin").exit_code == 0
    again = run("character", "import", str(good), "--name", "rin")
    assert again.exit_code == 1 and "--overwrite" in again.output
    assert run("character", "import", str(good), "--name", "rin", "--overwrite").exit_code == 0
    bad_name = run("character", "import", str(good), "--name", "no/slash")
    assert bad_name.exit_code == 1 and "invalid persona name" in bad_name.output
    missing = run("character", "export", "ghost", "--out", str(tmp_path / "g.png"))
    assert missing.exit_code == 1 and "no character 'ghost'" in missing.output


def test_import_lorebook_attaches_world_info_and_it_exports_with_the_card(tmp_path):
    plain = dict(CARD, data={k: v for k, v in CARD["data"].items() if k != "character_book"})
    card = tmp_path / "rin.json"
    card.write_text(json.dumps(plain), encoding="utf-8")
    assert run("character", "import", str(card), "--name", "rin").exit_code == 0
    world = tmp_path / "world.json"
    entries = {"0": {"uid": 0, "key": ["宝石"], "content": "宝石储存魔力。", "order": 5, "selectiveLogic": 3}}
    world.write_text(json.dumps({"entries": entries}, ensure_ascii=False), encoding="utf-8")
    out = run("character", "import-lorebook", str(world), "--name", "rin")
    assert out.exit_code == 0, out.output
    assert run("character", "import-lorebook", str(world), "--name", "rin").exit_code == 1  # needs --replace
    assert run("character", "import-lorebook", str(world), "--name", "rin", "--replace").exit_code == 0
    assert run("character", "export", "rin", "--out", str(tmp_path / "rin.png")).exit_code == 0
    book = read_card(tmp_path / "rin.png").character_book
    assert book is not None and book.name == "world" and book.entries[0].keys == ["宝石"]
    assert book.entries[0].selective_logic == "AND_ALL"


def test_list_shows_imported_and_sample_characters():
    run("character", "import", str(ROOT / "examples" / "characters" / "xiaoman.json"), "--name", "mine")
    out = run("character", "list", "--json")
    assert out.exit_code == 0, out.output
    rows = {r["name"]: r for r in json.loads(out.output)}
    assert rows["mine"]["display_name"] == "小满" and rows["mine"]["adapter"] is False
    assert rows["suwan"]["lore_entries"] == 12 and rows["xiaoman"]["greetings"] == 3
    table = run("character", "list")
    assert "prompt only" in table.output and "苏晚" in table.output


def _data(tmp_path: Path) -> Path:
    rows = [{"instruction": f"推荐一本书{i}", "output": "读读《人间草木》吧。"} for i in range(12)]
    path = tmp_path / "d.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


def test_train_dry_run_with_a_character_renders_its_system_prompt(tiny_qwen2, tmp_path):
    from rolechat.conversation.card import system_prompt

    card_file = ROOT / "examples" / "characters" / "xiaoman.json"
    args = ["train", "--character", str(card_file), "--data", str(_data(tmp_path)), "--base", str(tiny_qwen2)]
    out = run(*args, "--dry-run", "--json")
    assert out.exit_code == 0, out.output
    lint = json.loads(out.output)
    assert lint["system"] == system_prompt(read_card(card_file))
    assert "小满是大学图书馆的学生助理" in lint["example"] and "{{char}}" not in lint["example"]
    missing = run("train", "--character", "nobody", "--data", "x.json", "--dry-run")
    assert missing.exit_code == 1 and "no character 'nobody'" in missing.output


def test_train_with_a_character_keeps_card_name_and_avatar(tiny_qwen2, tmp_path):
    card = png_card(tmp_path / "rin.png", CARD)
    args = ["train", "--character", str(card), "--data", str(_data(tmp_path)), "--base", str(tiny_qwen2)]
    out = run(*args, "--max-steps", "1", "--batch-size", "4", "--eval-ratio", "0")
    assert out.exit_code == 0, out.output
    folder = settings.personas_dir() / "Rin_Tohsaka"
    manifest = PersonaManifest.load(folder)
    assert manifest.display_name == "Rin Tohsaka" and manifest.card["data"]["future"] == "kept"
    assert manifest.system_prompt.endswith("Rin Tohsaka is a mage.")
    assert (folder / "adapter_model.safetensors").is_file() and (folder / "avatar.png").is_file()
    listed = {r["name"]: r for r in json.loads(run("character", "list", "--json").output)}
    assert listed["Rin_Tohsaka"]["adapter"] is True


def test_show_prints_what_the_model_gets():
    out = run("character", "show", "suwan", "--user-name", "小明", "--json")
    assert out.exit_code == 0, out.output
    info = json.loads(out.output)
    assert info["character"] == "苏晚" and "小明" in info["system_prompt"] and "{{user}}" not in info["system_prompt"]
    assert len(info["greetings"]) == 3 and info["example_dialogues"][0][0]["role"] == "user"
    assert len(info["lorebook"]) == 12 and info["lorebook"][7]["logic"] == "AND_ANY"
    text = run("character", "show", "suwan")
    assert text.exit_code == 0 and "greeting 2" in text.output and "(always)" in text.output
