"""conversation.cardfile: card files (V1/V2/V3 JSON, PNG) and lorebook files (card books, SillyTavern world info)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from rolechat.conversation.card import Character
from rolechat.conversation.cardfile import (
    CardError,
    read_avatar,
    read_card,
    read_lorebook,
    write_card,
    write_lorebook,
)
from rolechat.conversation.worldinfo import activate

ROOT = Path(__file__).resolve().parents[1]


def card(name: str = "苏晚", version: str = "v2", **data) -> dict:
    spec = {"v2": ("chara_card_v2", "2.0"), "v3": ("chara_card_v3", "3.0")}[version]
    return {"spec": spec[0], "spec_version": spec[1], "data": {"name": name, **data}}


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def png_with(path: Path, chunks: dict[str, object], color=(10, 200, 30)) -> Path:
    info = PngInfo()
    for name, obj in chunks.items():
        info.add_text(name, base64.b64encode(json.dumps(obj, ensure_ascii=False).encode("utf-8")).decode("ascii"))
    Image.new("RGB", (8, 12), color).save(path, format="PNG", pnginfo=info)
    return path


def test_reads_v1_v2_and_v3_json(tmp_path):
    v1 = read_card(write_json(tmp_path / "v1.json", {"name": "阿福", "description": "伙计", "first_mes": "来了"}))
    v2 = read_card(write_json(tmp_path / "v2.json", card(description="说书人")))
    v3 = read_card(write_json(tmp_path / "v3.json", card(version="v3", nickname="晚晚", group_only_greetings=["g"])))
    assert (v1.spec, v1.name, v1.description) == ("chara_card_v1", "阿福", "伙计")
    assert (v2.spec, v2.description) == ("chara_card_v2", "说书人")
    assert (v3.spec, v3.nickname, v3.group_only_greetings) == ("chara_card_v3", "晚晚", ["g"])


def test_reads_a_png_card_and_its_picture(tmp_path):
    path = png_with(tmp_path / "c.png", {"chara": card(first_mes="你好")})
    assert read_card(path).first_mes == "你好"
    with Image.open(__import__("io").BytesIO(read_avatar(path))) as image:
        assert image.size == (8, 12) and image.getpixel((0, 0)) == (10, 200, 30)
        assert "chara" not in image.text  # the picture alone, the card text left behind
    assert read_avatar(write_json(tmp_path / "c.json", card())) is None


def test_png_with_both_chunks_uses_v3(tmp_path):
    path = png_with(
        tmp_path / "both.png", {"chara": card(description="旧"), "ccv3": card(version="v3", description="新")}
    )
    char = read_card(path)
    assert char.description == "新" and char.spec == "chara_card_v3"


def test_written_png_carries_both_chunks_and_reads_back_the_same(tmp_path):
    char = Character.from_dict(card(description="d", alternate_greetings=["a"], extensions={"x": {"y": 1}}))
    path = write_card(char, tmp_path / "out.png")
    with Image.open(path) as image:
        text = image.text
        assert image.size == (400, 600)  # a placeholder picture drawn for a card without one
    v2 = json.loads(base64.b64decode(text["chara"]))
    v3 = json.loads(base64.b64decode(text["ccv3"]))
    assert v2["spec"] == "chara_card_v2" and v3["spec"] == "chara_card_v3"
    assert v2["data"]["extensions"] == {"x": {"y": 1}} and v3["data"]["description"] == "d"
    assert read_card(path).to_dict() == {**char.to_dict(), "group_only_greetings": []}  # ccv3 wins: V3 has it


def test_written_png_keeps_the_given_picture(tmp_path):
    picture = png_with(tmp_path / "pic.png", {}, color=(1, 2, 3))
    out = write_card(Character(name="x"), tmp_path / "out.png", avatar=picture)
    with Image.open(out) as image:
        assert image.size == (8, 12) and image.getpixel((0, 0)) == (1, 2, 3)


def test_json_round_trip_keeps_unknown_fields_and_extensions(tmp_path):
    original = card(
        description="d",
        extensions={"talkativeness": "0.5", "vendor": {"deep": [1, {"x": None}]}},
        mystery_field={"a": 1},
        character_book={
            "name": "书",
            "extensions": {"book_ext": True},
            "entries": [
                {
                    "keys": ["长安"],
                    "content": "都城",
                    "extensions": {"probability": 80, "group": "g"},
                    "enabled": True,
                    "insertion_order": 3,
                    "entry_mystery": "kept",
                }
            ],
        },
    )
    original["avatar"] = "none"  # SillyTavern's own top-level bookkeeping
    first = read_card(write_json(tmp_path / "in.json", original))
    second = read_card(write_card(first, tmp_path / "out.json"))
    third = read_card(write_card(second, tmp_path / "out.png"))
    assert first == second and {**first.to_dict(), "group_only_greetings": []} == third.to_dict()  # read from ccv3
    out = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert out["avatar"] == "none" and out["data"]["mystery_field"] == {"a": 1}
    assert out["data"]["extensions"]["vendor"] == {"deep": [1, {"x": None}]}
    entry = out["data"]["character_book"]["entries"][0]
    assert entry["entry_mystery"] == "kept" and entry["extensions"] == {"probability": 80, "group": "g"}
    assert out["data"]["character_book"]["extensions"] == {"book_ext": True}


def test_written_v3_json(tmp_path):
    path = write_card(Character(name="x"), tmp_path / "v3.json", version="v3")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["spec"] == "chara_card_v3" and data["spec_version"] == "3.0"


def test_bad_card_files_name_the_file_and_the_field(tmp_path):
    cases = {
        "book.png": ({"chara": card(character_book={"entries": [{}, {}, {}, {"keys": 5}]})}, None),
        "greet.json": (None, card(alternate_greetings=[1])),
        "broken.json": (None, "{not json"),
        "nameless.json": (None, {"description": "no name"}),
    }
    expected = {
        "book.png": "book.png: data.character_book.entries[3].keys: expected a list of strings",
        "greet.json": "greet.json: data.alternate_greetings: expected a list of strings",
        "broken.json": "broken.json: invalid JSON at line 1",
        "nameless.json": "nameless.json: not a character card: expected `spec` and `data`",
    }
    for name, (chunks, obj) in cases.items():
        path = tmp_path / name
        if chunks is not None:
            png_with(path, chunks)
        elif isinstance(obj, str):
            path.write_text(obj, encoding="utf-8")
        else:
            write_json(path, obj)
        with pytest.raises(CardError) as err:
            read_card(path)
        assert expected[name] in str(err.value)
    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    with pytest.raises(CardError, match="plain.png: PNG has no character card"):
        read_card(plain)
    bad64 = tmp_path / "bad64.png"
    info = PngInfo()
    info.add_text("chara", "!!!not base64 json")
    Image.new("RGB", (4, 4)).save(bad64, pnginfo=info)
    with pytest.raises(CardError, match="bad64.png: PNG text chunk 'chara'"):
        read_card(bad64)
    with pytest.raises(CardError, match="missing.json: file not found"):
        read_card(tmp_path / "missing.json")


WORLD_INFO = {
    "entries": {
        "0": {
            "uid": 0,
            "key": ["长安", "京城"],
            "keysecondary": ["夜"],
            "comment": "长安",
            "content": "长安有宵禁。",
            "constant": False,
            "selective": True,
            "selectiveLogic": 2,
            "order": 40,
            "position": 1,
            "disable": False,
            "excludeRecursion": True,
            "preventRecursion": False,
            "delayUntilRecursion": False,
            "probability": 100,
            "useProbability": True,
            "depth": 4,
            "group": "",
            "scanDepth": 6,
            "caseSensitive": True,
            "matchWholeWords": None,
            "automationId": "",
            "role": None,
            "sticky": 0,
            "displayIndex": 0,
        },
        "7": {"uid": 7, "key": ["西市"], "content": "胡商。", "order": 10, "position": 0, "disable": True},
        "8": {"uid": 8, "key": "曲江, 芙蓉园", "content": "曲江池。", "constant": True, "position": 4},
    },
    "name": "长安风物",
}


def test_sillytavern_world_info_maps_its_fields(tmp_path):
    book = read_lorebook(write_json(tmp_path / "world.json", WORLD_INFO))
    assert book.name == "长安风物" and [e.id for e in book.entries] == [0, 7, 8]
    first, disabled, at_depth = book.entries
    assert first.keys == ["长安", "京城"] and first.secondary_keys == ["夜"] and first.selective
    assert first.selective_logic == "NOT_ANY" and first.insertion_order == 40 and first.position == "after_char"
    assert first.exclude_recursion and first.scan_depth == 6 and first.case_sensitive is True
    assert first.comment == "长安" and first.content == "长安有宵禁。" and first.enabled
    assert first.extensions["probability"] == 100 and first.extensions["useProbability"] is True
    assert first.extensions["position"] == 1 and first.extensions["display_index"] == 0
    assert not disabled.enabled and disabled.position == "before_char"
    assert at_depth.keys == ["曲江", "芙蓉园"] and at_depth.constant and at_depth.position == "at_depth"
    assert at_depth.extensions["position"] == 4 and at_depth.to_dict()["position"] == "after_char"  # as ST exports
    # and it behaves: NOT_ANY with "夜", case-sensitive, disabled entry silent, constant always on
    assert [e.id for e in activate(book, ["长安的白天"], len)] == [0, 8]
    assert [e.id for e in activate(book, ["长安的夜"], len)] == [8]


def test_world_info_without_name_takes_the_file_name_and_bad_fields_are_named(tmp_path):
    assert read_lorebook(write_json(tmp_path / "我的世界.json", {"entries": {}})).name == "我的世界"
    bad = {"entries": {"3": {"key": ["a"], "content": "b"}, "5": {"key": [1], "content": "c"}}}
    with pytest.raises(CardError, match=r"bad.json: entries\.5\.key: expected a list of strings"):
        read_lorebook(write_json(tmp_path / "bad.json", bad))
    bad_order = {"entries": {"2": {"key": ["a"], "order": "first"}}}
    with pytest.raises(CardError, match=r"order.json: entries\.2\.order: expected a number"):
        read_lorebook(write_json(tmp_path / "order.json", bad_order))


def test_lorebook_from_card_book_v3_file_and_card(tmp_path):
    entries = [{"keys": ["a"], "content": "b", "extensions": {}, "enabled": True, "insertion_order": 1}]
    bare = read_lorebook(write_json(tmp_path / "bare.json", {"name": "n", "entries": entries}))
    assert bare.name == "n" and bare.entries[0].keys == ["a"]
    v3 = read_lorebook(write_lorebook(bare, tmp_path / "v3.json"))
    assert json.loads((tmp_path / "v3.json").read_text(encoding="utf-8"))["spec"] == "lorebook_v3"
    assert v3 == bare
    from_card = read_lorebook(png_with(tmp_path / "c.png", {"chara": card(character_book={"entries": entries})}))
    assert from_card.entries[0].content == "b"
    with pytest.raises(CardError, match="nobook.json: the character card has no lorebook"):
        read_lorebook(write_json(tmp_path / "nobook.json", card()))
    with pytest.raises(CardError, match="world.json: this is a lorebook, not a character card"):
        read_card(write_json(tmp_path / "world.json", WORLD_INFO))


def test_sample_cards_read_and_the_lorebook_triggers():
    suwan = read_card(ROOT / "examples" / "characters" / "suwan.json")
    xiaoman = read_card(ROOT / "examples" / "characters" / "xiaoman.json")
    assert suwan.character_book is not None and 8 <= len(suwan.character_book.entries) <= 15
    assert xiaoman.character_book is None and len(xiaoman.alternate_greetings) == 2
    labels = [e.comment for e in activate(suwan.character_book, ["苏晚，你师父是谁？"], len)]
    assert labels == ["茶楼（常驻，不触发其他条目）", "师父陆铁嘴", "醒木（由师父一条递归触发）", "洛阳"]


def test_reads_a_charx_archive_and_its_main_icon(tmp_path):
    import io
    import zipfile

    data = card(
        version="v3",
        description="charx",
        assets=[
            {"type": "icon", "uri": "embeded://assets/icon/images/other.png", "name": "other", "ext": "png"},
            {"type": "icon", "uri": "embeded://assets/icon/images/main.webp", "name": "main", "ext": "webp"},
        ],
    )
    icon = io.BytesIO()
    Image.new("RGB", (6, 9), (5, 6, 7)).save(icon, format="WEBP", lossless=True)
    path = tmp_path / "c.charx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("card.json", json.dumps(data, ensure_ascii=False))
        archive.writestr("assets/icon/images/main.webp", icon.getvalue())
        archive.writestr("assets/icon/images/other.png", b"not used")
    char = read_card(path)
    assert char.description == "charx" and char.spec == "chara_card_v3" and len(char.assets) == 2
    with Image.open(io.BytesIO(read_avatar(path))) as image:
        assert image.format == "PNG" and image.size == (6, 9) and image.getpixel((0, 0)) == (5, 6, 7)
    empty = tmp_path / "empty.charx"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("readme.txt", "no card")
    with pytest.raises(CardError, match="empty.charx: CHARX archive has no card.json"):
        read_card(empty)


# -- hostile files: a clear error naming the file, never a traceback -------------------------------------------


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_cards_nested_too_deep_are_refused_naming_the_file(tmp_path):
    as_json = tmp_path / "deep.json"
    as_json.write_text('{"name": "深", "data": ' + deep(100_000) + "}", encoding="utf-8")
    with pytest.raises(CardError, match=r"^deep\.json: nested deeper than 100 levels"):
        read_card(as_json)
    as_png = tmp_path / "deep.png"
    info = PngInfo()
    info.add_text("chara", base64.b64encode(('{"name": "深", "x": ' + deep(100_000) + "}").encode()).decode())
    Image.new("RGB", (4, 4)).save(as_png, pnginfo=info)
    with pytest.raises(CardError, match=r"^deep\.png: PNG text chunk 'chara': nested deeper than 100 levels"):
        read_card(as_png)
    # shallow enough for the parser, too deep for what reads it after (copy, json.dumps): the field is named
    extensions = tmp_path / "ext.json"
    extensions.write_text(
        '{"spec": "chara_card_v2", "data": {"name": "深", "extensions": ' + '{"a": ' * 900 + "{}" + "}" * 900 + "}}",
        encoding="utf-8",
    )
    with pytest.raises(CardError, match=r"^ext\.json: nested deeper than 100 levels \(at data\.extensions\.a\.a"):
        read_card(extensions)
    with pytest.raises(CardError, match=r"^deep\.json: nested deeper"):
        read_lorebook(as_json)


def test_files_over_the_size_limit_are_refused_before_reading(tmp_path):
    path = write_json(tmp_path / "big.json", card(description="长" * 1000))
    assert read_card(path).description == "长" * 1000
    with pytest.raises(
        CardError, match=r"^big\.json: 0\.0 MB is larger than the limit of 0\.001 MB \(chat\.card_max_mb\)"
    ):
        read_card(path, max_bytes=1000)
    with pytest.raises(CardError, match="chat.card_max_mb"):
        read_lorebook(path, max_bytes=1000)


def test_a_charx_bomb_and_a_pixel_bomb_are_refused(tmp_path):
    import zipfile

    bomb = tmp_path / "bomb.charx"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("card.json", json.dumps(card(description=" " * 5_000_000)))
    with pytest.raises(CardError, match=r"^bomb\.charx: archive member card\.json expands \d+ times"):
        read_card(bomb)
    pixels = tmp_path / "pixels.png"  # 100 million pixels in 12 KB: Pillow would warn, then decode 100 MB
    info = PngInfo()
    info.add_text("chara", base64.b64encode(json.dumps(card()).encode()).decode())
    Image.new("1", (10_000, 10_000)).save(pixels, pnginfo=info)
    with pytest.raises(CardError, match=r"^pixels\.png: the picture is too large to read"):
        read_card(pixels)


def test_a_png_card_keeps_its_pictures_other_chunks_through_import_and_export(tmp_path):
    from rolechat.conversation.characters import export_character, import_card

    info = PngInfo()
    info.add_text("chara", base64.b64encode(json.dumps(card(first_mes="你好")).encode()).decode("ascii"))
    info.add_text("Software", "Stable Diffusion")  # another tool's text chunk
    info.add_itxt("parameters", "masterpiece, 长安", zip=True)
    image = Image.new("RGBA", (8, 12), (10, 200, 30, 255))
    image.save(tmp_path / "in.png", pnginfo=info, dpi=(300, 300), icc_profile=b"\0" * 8)
    import_card(tmp_path / "in.png")
    out = export_character("苏晚", tmp_path / "out.png")
    with Image.open(out) as exported:
        assert exported.text["Software"] == "Stable Diffusion" and exported.text["parameters"] == "masterpiece, 长安"
        assert exported.info["dpi"] == pytest.approx((300, 300), abs=0.01) and exported.info["icc_profile"] == b"\0" * 8
        assert exported.getpixel((0, 0)) == (10, 200, 30, 255)
    assert read_card(out).first_mes == "你好" and {"chara", "ccv3"} <= set(Image.open(out).text)
    # the picture's bytes are the original ones, only the card chunks replaced
    original = (tmp_path / "in.png").read_bytes()
    assert original[original.index(b"IDAT") - 4 : original.index(b"IEND") - 4] in out.read_bytes()


def test_a_v3_card_exports_as_v3_json_unless_asked(tmp_path):
    from rolechat.conversation.characters import export_character, import_card

    import_card(write_json(tmp_path / "v3.json", card(version="v3", group_only_greetings=["各位好"])))
    written = json.loads(export_character("苏晚", tmp_path / "out.json").read_text(encoding="utf-8"))
    assert (written["spec"], written["spec_version"]) == ("chara_card_v3", "3.0")
    asked = json.loads(export_character("苏晚", tmp_path / "v2.json", version="v2").read_text(encoding="utf-8"))
    assert asked["spec"] == "chara_card_v2"


@pytest.mark.parametrize(
    "data",
    [
        {"name": "rolechat", "version": "1.0", "dependencies": {"typer": "^0.12"}},  # a package.json
        {"title": "笔记", "items": [1, 2]},
        {"entries_count": 3},
    ],
)
def test_a_json_that_is_no_card_is_refused(tmp_path, data):
    from rolechat.conversation.characters import import_card

    with pytest.raises(CardError, match=r"x\.json: not a character card: .*this JSON has keys"):
        import_card(write_json(tmp_path / "x.json", data))
    assert not (tmp_path / "home" / "personas").exists() or not list((tmp_path / "home" / "personas").iterdir())


def test_a_pygmalion_card_reads_as_sillytavern_maps_it(tmp_path):
    old = {"char_name": "阿福", "char_persona": "伙计", "char_greeting": "来了", "world_scenario": "酒肆"}
    char = read_card(write_json(tmp_path / "p.json", old))
    assert (char.name, char.description, char.first_mes, char.scenario) == ("阿福", "伙计", "来了", "酒肆")


def test_world_info_keeps_the_books_own_settings_from_the_top_or_from_original_data(tmp_path):
    entries = {"0": {"uid": 0, "key": ["雨"], "content": "下雨", "order": 10, "position": 4, "depth": 2, "role": 1}}
    top = {"entries": entries, "name": "天气", "description": "雨天的设定", "scan_depth": 3, "token_budget": 200}
    book = read_lorebook(write_json(tmp_path / "top.json", top))
    assert (book.name, book.description, book.scan_depth, book.token_budget) == ("天气", "雨天的设定", 3, 200)
    original = {"description": "原卡的书", "scan_depth": 5, "recursive_scanning": False, "entries": []}
    book = read_lorebook(write_json(tmp_path / "st.json", {"entries": entries, "originalData": original}))
    assert (book.description, book.scan_depth, book.recursive_scanning) == ("原卡的书", 5, False)
    rain = book.entries[0]
    assert (rain.position, rain.depth, rain.role) == ("at_depth", 2, "user")


def sillytavern_export() -> dict:
    """A card as SillyTavern's charaFormatData (src/endpoints/characters.js) writes it, its book as
    convertWorldInfoToCharacterBook does (nulls, use_regex, numeric positions, an empty group_only_greetings)."""

    def entry(uid: int, keys: list[str], content: str, position: int = 0, **over) -> dict:
        ext = {
            "position": position,
            "exclude_recursion": False,
            "display_index": uid,
            "probability": 100,
            "useProbability": True,
            "depth": 4,
            "selectiveLogic": 0,
            "group": "",
            "group_override": False,
            "group_weight": 100,
            "prevent_recursion": False,
            "delay_until_recursion": False,
            "scan_depth": None,
            "match_whole_words": None,
            "use_group_scoring": False,
            "case_sensitive": True,
            "automation_id": "",
            "role": 0,
            "vectorized": False,
            "sticky": 0,
            "cooldown": 0,
            "delay": 0,
            **over,
        }
        return {
            "id": uid,
            "keys": keys,
            "secondary_keys": [],
            "comment": content[:3],
            "content": content,
            "constant": False,
            "selective": True,
            "insertion_order": 100,
            "enabled": True,
            "position": "before_char" if position == 0 else "after_char",
            "use_regex": True,
            "extensions": ext,
        }

    book = {
        "entries": [
            entry(0, ["长安"], "长安是都城"),
            entry(1, ["雨"], "下雨了", 4, depth=2, role=1, probability=None, delay_until_recursion=2),
        ],
        "name": "长安",
    }
    data = {
        "name": "林夕",
        "description": "说书人",
        "personality": "健谈",
        "scenario": "茶馆",
        "first_mes": "请坐",
        "mes_example": "",
        "creator_notes": "",
        "system_prompt": "",
        "post_history_instructions": "",
        "tags": ["古风"],
        "creator": "",
        "character_version": "",
        "alternate_greetings": [],
        "extensions": {
            "talkativeness": "0.5",
            "fav": False,
            "world": "长安",
            "depth_prompt": {"prompt": "", "depth": 4, "role": "system"},
        },
        "group_only_greetings": [],
        "character_book": book,
    }
    top = {k: data[k] for k in ("name", "description", "personality", "scenario", "first_mes", "mes_example")}
    return {
        **top,
        "creatorcomment": "",
        "avatar": "none",
        "chat": "林夕 - 2024-9-28",
        "talkativeness": "0.5",
        "fav": False,
        "tags": ["古风"],
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": data,
    }


def test_a_sillytavern_export_round_trips_unchanged_as_json_and_png(tmp_path):
    from rolechat.conversation.characters import export_character, import_card

    original = sillytavern_export()
    import_card(write_json(tmp_path / "st.json", original))
    assert json.loads(export_character("林夕", tmp_path / "out.json").read_text(encoding="utf-8")) == original
    with Image.open(export_character("林夕", tmp_path / "out.png")) as image:
        assert json.loads(base64.b64decode(image.text["chara"])) == original
        v3 = json.loads(base64.b64decode(image.text["ccv3"]))
    assert v3["spec"] == "chara_card_v3" and v3["data"]["character_book"] == original["data"]["character_book"]
