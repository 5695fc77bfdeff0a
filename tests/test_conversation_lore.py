"""The engine's lore: where each position puts an entry (SillyTavern's world_info_position), the author's note,
a chat's own books and scenario, timed state across turns, {{original}}; on the tiny Qwen2 model's template."""

from __future__ import annotations

import json

import pytest

from rolechat.conversation import ConversationConfig, Engine, UserPersona
from rolechat.conversation.card import Character
from rolechat.conversation.lorebook import Lorebook
from rolechat.conversation.setting import AuthorsNote, ChatSetting
from rolechat.llm import LLMConfig, Runtime

USER = UserPersona("小明")
SMALL = {"max_new_tokens": 8}


@pytest.fixture(scope="module")
def runtime(tiny_qwen2) -> Runtime:
    return Runtime.load(LLMConfig(model=str(tiny_qwen2)))


def entry(keys, content, order=100, position=0, **ext) -> dict:
    """An entry as SillyTavern exports it: the numeric position in extensions, the spec's one beside it."""
    return {
        "keys": keys,
        "content": content,
        "insertion_order": order,
        "enabled": True,
        "use_regex": True,
        "position": "before_char" if position == 0 else "after_char",
        "extensions": {"position": position, **ext},
    }


def card(*entries: dict, **data) -> Character:
    fields = {"name": "林夕", "description": "{{char}}是说书人。", "first_mes": "客官请坐。"}
    book = {"name": "长安", "entries": list(entries)} if entries else None
    return Character.from_dict({"spec": "chara_card_v2", "data": {**fields, **data, "character_book": book}})


HISTORY = [
    {"role": "assistant", "content": "客官请坐。"},
    {"role": "user", "content": "第一问"},
    {"role": "assistant", "content": "第一答"},
]


def test_depth_entries_go_between_the_messages_in_their_role(runtime):
    char = card(
        entry(["雨"], "深度一用户", 10, 4, depth=1, role=1),
        entry(["雨"], "深度一又一条", 20, 4, depth=1, role=1),
        entry(["雨"], "深度二助手", 10, 4, depth=2, role=2),
        entry(["雨"], "深度三系统", 10, 4, depth=3, role=0),
        entry(["雨"], "深度零系统", 10, 4, depth=0, role=0),
    )
    turn = Engine(runtime).prepare("下雨了", character=char, history=HISTORY, user=USER, params=SMALL)
    chat = [(m["role"], m["content"]) for m in turn.messages[1:]]
    assert chat == [
        ("assistant", "客官请坐。"),
        ("user", "深度三系统"),  # system text inside the chat goes as a user message
        ("user", "第一问"),
        ("assistant", "深度二助手"),
        ("assistant", "第一答"),
        ("user", "深度一用户\n深度一又一条"),  # one message per depth and role, lower order first
        ("user", "下雨了\n\n深度零系统"),  # depth 0: after the new message, in the final turn
    ]
    why = [p.why for p in turn.parts if p.text == "深度二助手"]
    assert why == ["key 雨; order 10; @depth 2 (assistant)"]


def test_positions_before_and_after_the_card_and_with_the_examples(runtime):
    char = card(
        entry(["雨"], "卡前", 10, 0),
        entry(["雨"], "卡后", 10, 1),
        entry(["雨"], "{{user}}: 示例前\n{{char}}: 好", 10, 5),
        entry(["雨"], "<START>\n{{user}}: 示例后\n{{char}}: 嗯", 10, 6),
        mes_example="<START>\n{{user}}: 卡里的示例\n{{char}}: 是",
    )
    system = Engine(runtime).prepare("雨", character=char, user=USER, params=SMALL).messages[0]["content"]
    order = ["卡前", "林夕是说书人。", "卡后", "小明：示例前", "小明：卡里的示例", "小明：示例后"]
    at = [system.index(text) for text in order]
    assert at == sorted(at)


def test_the_authors_note_with_the_entries_around_it(runtime):
    char = card(entry(["雨"], "注释前", 10, 2), entry(["雨"], "注释后", 10, 3))
    note = AuthorsNote("保持紧张。", depth=1)
    setting = ChatSetting(authors_note=note)
    turn = Engine(runtime).prepare("雨", character=char, history=HISTORY, user=USER, params=SMALL, setting=setting)
    assert turn.messages[-2] == {"role": "user", "content": "注释前\n保持紧张。\n注释后"}
    for position, where in (("after_story", -1), ("before_story", 0)):
        setting.authors_note = AuthorsNote("保持紧张。", position=position)
        system = Engine(runtime).prepare("雨", character=char, user=USER, params=SMALL, setting=setting).messages[0]
        paragraphs = system["content"].split("\n\n")
        assert paragraphs[where] == "注释前\n\n保持紧张。\n\n注释后".split("\n\n")[where]
    setting.authors_note = AuthorsNote("保持紧张。", interval=2)  # every 2 user messages: not on the first
    turn = Engine(runtime).prepare("雨", character=char, user=USER, params=SMALL, setting=setting)
    sent = "".join(m["content"] for m in turn.messages)
    assert "保持紧张" not in sent and "注释前" not in sent
    assert any(p.kind == "authors-note" and not p.included and "interval" in p.why for p in turn.parts)
    turn = Engine(runtime).prepare("雨", character=char, history=HISTORY, user=USER, params=SMALL, setting=setting)
    assert any("保持紧张" in m["content"] for m in turn.messages)


def test_a_chat_binds_its_own_books_and_overrides_the_scenario(runtime, tmp_path):
    from rolechat.conversation.books import add_book

    world = {"entries": {"0": {"uid": 0, "key": ["雨"], "content": "外面下着大雨。", "order": 50, "position": 0}}}
    path = tmp_path / "天气.json"
    path.write_text(json.dumps(world, ensure_ascii=False), encoding="utf-8")
    add_book(path)
    second = tmp_path / "second.json"
    second.write_text(json.dumps({"spec": "lorebook_v3", "data": {"entries": [entry(["雨"], "另一本书。")]}}))
    char = card(entry(["雨"], "角色的书。", 10), scenario="茶馆")
    setting = ChatSetting(lorebooks=["天气", str(second)], scenario="暴雨夜的客栈")
    turn = Engine(runtime).prepare("下雨了", character=char, user=USER, params=SMALL, setting=setting)
    lore = {p.text: p.source for p in turn.parts if p.kind.startswith("lore")}
    assert lore == {"外面下着大雨。": "天气", "另一本书。": "second", "角色的书。": "长安"}
    system = turn.messages[0]["content"]
    assert "场景：暴雨夜的客栈" in system and "茶馆" not in system
    with pytest.raises(ValueError, match="no lorebook 'missing'"):
        Engine(runtime).prepare("雨", character=char, params=SMALL, setting=ChatSetting(lorebooks=["missing"]))


def test_timed_state_travels_from_turn_to_turn(runtime):
    char = card(entry(["雨"], "雨季来了。", 10, sticky=3))
    engine, setting = Engine(runtime), ChatSetting()
    history: list[dict] = [{"role": "assistant", "content": "客官请坐。"}]
    seen = []
    for message in ("下雨了", "晴天", "晴天"):
        turn = engine.prepare(message, character=char, history=history, user=USER, params=SMALL, setting=setting)
        setting.lore_state = turn.lore_state
        seen.append(any("雨季" in m["content"] for m in turn.messages))
        history += [{"role": "user", "content": message}, {"role": "assistant", "content": "好"}]
    assert seen == [True, True, False]  # activated at message 2, sticky through message 4 (messages, not turns)


def test_the_lore_budget_is_a_share_of_the_room_the_context_leaves(runtime):
    char = card(*(entry(["雨"], "很长的设定" * 40, order) for order in (10, 20, 30)))
    engine = Engine(runtime, chat_cfg=ConversationConfig(lore_budget_percent=5))
    turn = engine.prepare("雨", character=char, user=USER, params=SMALL)
    kept = [p for p in turn.parts if p.kind == "lore-triggered"]
    left = [p for p in turn.parts if p.kind == "lore-skipped"]
    assert len(kept) + len(left) == 3 and left and all("budget" in p.why for p in left)
    assert sum(p.tokens for p in kept) < 0.05 * turn.budget
    capped = Engine(runtime, chat_cfg=ConversationConfig(lore_tokens=5)).prepare("雨", character=char, params=SMALL)
    assert not any(p.kind == "lore-triggered" for p in capped.parts)


def test_original_in_the_system_prompt_and_the_post_history_instructions(runtime):
    from rolechat.conversation.card import DEFAULT_SYSTEM_PROMPT, apply_macros

    char = card(
        system_prompt="{{Original}}另外，说话带古风。{{original}}", post_history_instructions="{{original}}保持口吻。"
    )
    turn = Engine(runtime).prepare("你好", character=char, user=USER, params=SMALL)
    system, last = turn.messages[0]["content"], turn.messages[-1]["content"]
    assert system.startswith(apply_macros(DEFAULT_SYSTEM_PROMPT, char, "小明") + "另外，说话带古风。\n\n")
    assert "{{" not in system and last == "你好\n\n保持口吻。"


def test_a_scene_turn_reads_the_scene_book_and_the_scene_scenario(runtime, tmp_path):
    from rolechat.conversation.books import add_book
    from rolechat.conversation.characters import save_character
    from rolechat.conversation.scene import Scene

    path = tmp_path / "群聊.json"
    path.write_text(json.dumps({"name": "群聊", "entries": [entry(["阿青"], "群聊的设定。")]}, ensure_ascii=False))
    add_book(path)
    save_character(card(group_only_greetings=["（林夕向大家挥手）"]), "linxi")
    save_character(card(name="阿青", description="{{char}}是茶客。"), "aqing")
    runtime.reload_personas()
    engine = Engine(runtime)
    scene = Scene("茶会", ["linxi", "aqing"], lorebooks=["群聊"], scenario="雨夜的茶馆")
    opening = engine.scene_greetings(scene.characters, USER)
    assert opening == [
        {"role": "assistant", "content": "（林夕向大家挥手）", "name": "linxi"},
        {"role": "assistant", "content": "客官请坐。", "name": "aqing"},
    ]
    turn = engine.prepare_scene(
        "大家好", characters=scene.characters, speaker="aqing", history=opening, user=USER, setting=scene.setting()
    )
    system = turn.messages[0]["content"]
    assert "群聊的设定。" in system  # its key is a name: the scan reads each line as `name: text`
    assert "场景：雨夜的茶馆" in system and [p.source for p in turn.parts if p.kind == "lore-triggered"] == ["群聊"]


def test_an_empty_book_or_none_scans_nothing(runtime):
    char = card()
    char.character_book = Lorebook()
    turn = Engine(runtime).prepare("你好", character=char, params=SMALL, setting=ChatSetting())
    assert not any(p.kind.startswith("lore") for p in turn.parts) and turn.lore_state == {}
