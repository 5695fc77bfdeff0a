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
    again = Character.from_dict(char.to_card("v3")).to_dict()
    assert again.pop("group_only_greetings") == [] and again == char.to_dict()  # V3 requires the field


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


def test_lax_community_cards_still_read():
    """Shapes seen in the wild: `data` without `spec`, nulls, <START> on the line of the first turn, a numeric
    SillyTavern position in the card's entry, keys written as one comma-separated string."""
    char = Character.from_dict(
        {
            "data": {
                "name": "x",
                "description": None,
                "tags": None,
                "extensions": None,
                "mes_example": "<START>{{user}}: hi\n{{char}}: yo<START>{{user}}: bye",
                "character_book": {
                    "entries": [
                        {"keys": "a, b", "content": "c", "position": 4, "insertion_order": None, "extensions": None}
                    ],
                    "scan_depth": None,
                    "token_budget": 2048.0,
                },
            }
        }
    )
    assert char.spec == "chara_card_v2" and char.description == "" and char.tags == [] and char.extensions == {}
    assert example_dialogues(char, "u") == [
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
        [{"role": "user", "content": "bye"}],
    ]
    entry = char.character_book.entries[0]
    assert entry.keys == ["a", "b"] and entry.position == "after_char" and entry.insertion_order == 100
    assert char.character_book.token_budget == 2048


def test_v1_fields_beside_an_empty_data_object_are_used():
    char = Character.from_dict({"name": "Guide", "first_mes": "ようこそ", "spec": "chara_card_v3", "data": {}})
    assert (char.name, char.first_mes, char.spec) == ("Guide", "ようこそ", "chara_card_v3")
    assert "name" not in char.card_extra and char.to_card("v3")["data"]["name"] == "Guide"


def test_comment_macros_vanish_and_newline_breaks():
    text = "a{{// 作者的话 }}b{{comment: 注释}}c{{hidden_key:钥匙}}d{{noop}}e{{newline}}f{{NEWLINE}}g"
    assert apply_macros(text, "苏晚", "u") == "abcde\nf\ng"
    assert apply_macros("{{char}} {{random:a,b}}", "苏晚") == "苏晚 {{random:a,b}}"  # unknown macros stay as written


def test_depth_prompt_reads_sillytavern_characters_note():
    note = Character.from_dict(
        v2(extensions={"depth_prompt": {"prompt": "记住{{char}}怕黑", "depth": 2, "role": "user"}})
    )
    assert note.depth_prompt == ("记住{{char}}怕黑", 2, "user")
    odd = Character.from_dict(v2(extensions={"depth_prompt": {"prompt": "x", "depth": -1, "role": "narrator"}}))
    assert odd.depth_prompt == ("x", 4, "system")
    assert Character.from_dict(v2(extensions={"depth_prompt": {"prompt": " "}})).depth_prompt is None
    assert Character(name="x").depth_prompt is None


def test_original_is_the_overridden_prompt_once_in_any_letter_case():
    from rolechat.conversation.card import replace_original

    assert replace_original("{{ORIGINAL}}，再说一次：{{original}}", "默认") == "默认，再说一次："
    assert replace_original("没有占位符", "默认") == "没有占位符"
    char = Character.from_dict(v2(system_prompt="{{Original}}说话带古风。"))
    assert system_prompt(char, "小明").startswith("你正在扮演苏晚，与小明对话。")


def test_group_greetings_talkativeness_and_the_characters_note():
    from rolechat.conversation.card import group_greetings

    v3 = Character.from_dict(
        {
            "spec": "chara_card_v3",
            "data": {"name": "苏晚", "first_mes": "你好", "group_only_greetings": ["各位{{user}}好"]},
        }
    )
    assert group_greetings(v3, "小明") == ["各位小明好"]
    extension = Character(
        name="苏晚", first_mes="你好", extensions={"group_greetings": ["大家好"], "talkativeness": "0.9"}
    )
    assert group_greetings(extension) == ["大家好"] and extension.talkativeness == 0.9
    plain = Character(name="苏晚", first_mes="你好", extensions={"talkativeness": "很健谈"})
    assert group_greetings(plain) == ["你好"] and plain.talkativeness == 0.5
