"""conversation.card: the card data object, macros, greetings, example dialogues and the system prompt."""

from __future__ import annotations

import pytest

from rolechat.conversation.card import (
    DEFAULT_SYSTEM_PROMPT,
    CardError,
    Character,
    apply_macros,
    example_dialogues,
    greetings,
    system_prompt,
)


def v2(**data) -> dict:
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "苏晚", **data}}


def test_macros_replace_char_and_user_in_any_case_and_the_legacy_forms():
    char = Character(name="苏晚")
    text = "{{char}}、{{Char}}、{{ CHAR }}、<BOT>、<char>；{{user}}、{{USER}}、<User>"
    assert apply_macros(text, char, "小明") == "苏晚、苏晚、苏晚、苏晚、苏晚；小明、小明、小明"


def test_macros_use_the_v3_nickname_and_do_not_reinterpret_replaced_text():
    assert apply_macros("{{char}}", Character(name="Suwan Long", nickname="晚晚"), "u") == "晚晚"
    assert apply_macros("{{user}}", "c", "{{char}}") == "{{char}}"  # a user named like a macro stays as typed


def test_greetings_are_first_message_then_alternates_with_macros():
    char = Character.from_dict(v2(first_mes="你好，{{user}}", alternate_greetings=["<USER>来了", "  "]))
    assert greetings(char, "小明") == ["你好，小明", "小明来了"]
    assert greetings(Character(name="x"), "u") == []


def test_example_dialogues_split_on_start_into_turns():
    mes = (
        "<START>\n{{user}}: 你好\n{{char}}：客官好\n请坐。\n"
        "<start>\n<USER>: 再见\n<BOT>: 慢走\n"
        "<START>\n苏晚：（自言自语）又下雨了\n小明: 是啊\n"
        "<START>\n\n"
    )
    blocks = example_dialogues(Character.from_dict(v2(mes_example=mes)), "小明")
    assert blocks == [
        [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "客官好\n请坐。"}],
        [{"role": "user", "content": "再见"}, {"role": "assistant", "content": "慢走"}],
        [{"role": "assistant", "content": "（自言自语）又下雨了"}, {"role": "user", "content": "是啊"}],
    ]


def test_example_dialogues_without_start_is_one_block_and_macros_apply_inside():
    blocks = example_dialogues(Character.from_dict(v2(mes_example="{{user}}: 我是{{user}}\n{{char}}: 我是{{char}}")))
    assert blocks == [[{"role": "user", "content": "我是用户"}, {"role": "assistant", "content": "我是苏晚"}]]
    assert example_dialogues(Character(name="x")) == []


def test_system_prompt_orders_the_definition_and_never_includes_creator_notes():
    char = Character.from_dict(
        v2(
            description="{{char}}是说书人",
            personality="风趣",
            scenario="茶楼里，{{user}}进门",
            creator_notes="SECRET NOTES",
            tags=["TAG"],
            creator="CREATOR",
            character_version="9.9",
        )
    )
    text = system_prompt(char, "小明", before=["前置设定"], after=["后置设定"], user_description="一位书生")
    assert text.split("\n\n") == [
        apply_macros(DEFAULT_SYSTEM_PROMPT, char, "小明"),
        "前置设定",
        "苏晚是说书人",
        "苏晚的性格：风趣",
        "场景：茶楼里，小明进门",
        "后置设定",
        "关于小明：一位书生",
    ]
    for secret in ("SECRET", "TAG", "CREATOR", "9.9"):
        assert secret not in text


def test_card_system_prompt_replaces_the_default_and_keeps_original_placeholder():
    char = Character.from_dict(v2(system_prompt="{{original}}只说三句话。"))
    assert system_prompt(char, "u", original="默认。") == "默认。只说三句话。"
    own = Character.from_dict(v2(system_prompt="你是{{char}}。"))
    assert system_prompt(own, "u", original="默认。") == "你是苏晚。"


def test_v1_flat_card_reads_as_a_character():
    char = Character.from_dict({"name": "阿福", "description": "伙计", "first_mes": "来了！", "mes_example": ""})
    assert char.spec == "chara_card_v1" and char.description == "伙计" and char.first_mes == "来了！"


def test_round_trip_keeps_unknown_fields_extensions_and_v3_fields():
    card = {
        "spec": "chara_card_v3",
        "spec_version": "3.0",
        "data": {
            "name": "苏晚",
            "description": "d",
            "extensions": {"depth_prompt": {"prompt": "p", "depth": 4}, "vendor/x": [1]},
            "nickname": "晚晚",
            "group_only_greetings": ["大家好"],
            "assets": [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}],
            "creation_date": 1700000000,
            "source": ["https://example.invalid/card"],
            "future_field": {"kept": True},
            "character_book": {
                "entries": [
                    {"keys": ["a"], "content": "b", "extensions": {"x": 1}, "enabled": True, "insertion_order": 1}
                ]
            },
        },
        "top_level_vendor": 7,
    }
    char = Character.from_dict(card)
    assert char.extra == {"future_field": {"kept": True}} and char.card_extra == {"top_level_vendor": 7}
    again = Character.from_dict(char.to_card("v3"))
    assert again == char
    out = again.to_card("v3")
    assert out["data"]["extensions"]["vendor/x"] == [1] and out["top_level_vendor"] == 7
    assert out["data"]["character_book"]["entries"][0]["extensions"] == {"x": 1}
    assert out["name"] == "苏晚"  # V1 readers find the name at the top too


def test_v2_card_written_as_v3_and_back_keeps_its_data():
    char = Character.from_dict(v2(description="d", alternate_greetings=["a"], tags=["t"]))
    assert Character.from_dict(char.to_card("v3")).to_dict() == char.to_dict()
    assert char.to_card("v3")["data"]["group_only_greetings"] == []  # required by V3


@pytest.mark.parametrize(
    ("card", "message"),
    [
        (v2(name=""), "data.name: a character needs a name"),
        (v2(description=["x"]), "data.description: expected a string"),
        (v2(alternate_greetings=["hi", 2]), "data.alternate_greetings: expected a list of strings"),
        (v2(extensions=[]), "data.extensions: expected an object"),
        (
            v2(character_book={"entries": [{}, {}, {}, {"keys": [1, 2]}]}),
            "data.character_book.entries[3].keys: expected a list of strings",
        ),
        ({"spec": "chara_card_v9", "data": {"name": "x"}}, "spec: expected 'chara_card_v2' or 'chara_card_v3'"),
        ({"spec": "chara_card_v2", "data": "x"}, "data: expected an object"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_bad_cards_name_the_field(card, message):
    with pytest.raises(CardError) as err:
        Character.from_dict(card)
    assert message in str(err.value)
