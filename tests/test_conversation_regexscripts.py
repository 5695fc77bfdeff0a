"""conversation.regexscripts: SillyTavern's regex scripts (extensions/regex/engine.js) where SillyTavern applies
them, in the JSON shape it exports, on the bounded pattern path."""

from __future__ import annotations

import json
import time

import pytest

from rolechat.conversation import ConversationConfig, Engine, UserPersona
from rolechat.conversation.card import Character
from rolechat.conversation.lorebook import CardError
from rolechat.conversation.patterns import ScanLimits
from rolechat.conversation.regexscripts import RegexScript, ScriptSet, card_scripts, global_scripts, regex_dir
from rolechat.llm import LLMConfig, Runtime


def st_script(name: str, find: str, replace: str, placement: list[int], **flags) -> dict:
    """A script as SillyTavern's regex extension exports it."""
    return {
        "id": "c0ffee",
        "scriptName": name,
        "findRegex": find,
        "replaceString": replace,
        "trimStrings": flags.pop("trimStrings", []),
        "placement": placement,
        "disabled": False,
        "markdownOnly": False,
        "promptOnly": False,
        "runOnEdit": True,
        "substituteRegex": False,
        "minDepth": None,
        "maxDepth": None,
        **flags,
    }


def scripts(*dicts: dict, macro=None) -> ScriptSet:
    return ScriptSet([RegexScript.from_dict(d) for d in dicts], macro)


def test_placements_and_modes_decide_where_a_script_runs():
    kept = st_script("kept", "/猫/g", "狗", [1, 2])
    prompt = st_script("prompt", "/狗/g", "犬", [1], promptOnly=True)
    shown = st_script("shown", "/狗/g", "🐶", [2], markdownOnly=True)
    lore = st_script("lore", "/设定/", "背景", [5])
    s = scripts(kept, prompt, shown, lore)
    assert s.user_input("猫猫") == "狗狗"  # kept text: only scripts with neither "only"
    assert s.ai_output("猫") == "狗"
    assert s.prompt("狗", "user", 0) == "犬" and s.prompt("狗", "assistant", 0) == "狗"
    assert s.display("狗", "assistant") == "🐶" and s.display("狗", "user") == "狗"
    assert s.lore("设定与设定") == "背景与设定"  # no g flag: the first match only
    assert s.rewrites("assistant") and s.shows("assistant") and not s.shows("user")


def test_groups_match_trim_strings_macros_and_depth():
    s = scripts(
        st_script("quote", "/「(.+?)」/g", "“$1”{{match}}", [2], trimStrings=["嗯"]),
        st_script("name", "/NAME/", "{{char}}", [2]),
        st_script("recent", "/x/g", "y", [2], promptOnly=True, minDepth=1, maxDepth=2),
        macro=lambda text: text.replace("{{char}}", "林夕"),
    )
    assert s.ai_output("「嗯好」") == "“好”「好」"  # trim strings are cut from $0 ({{match}}) too
    assert s.ai_output("NAME") == "林夕"
    past = [{"role": "assistant", "content": "x"} for _ in range(4)]  # depths 4, 3, 2, 1 (the new message is 0)
    assert [m["content"] for m in s.prompt_history(past)] == ["x", "x", "y", "y"]


def test_a_bad_script_is_refused_naming_its_field_and_a_broken_pattern_changes_nothing():
    with pytest.raises(CardError, match=r"data\.extensions\.regex_scripts\[1\]\.placement"):
        card_scripts(
            Character(name="x", extensions={"regex_scripts": [st_script("a", "/a/", "b", [2]), {"placement": "2"}]})
        )
    assert scripts(st_script("broken", "/(unclosed/", "x", [2])).ai_output("(unclosed") == "(unclosed"
    assert scripts(st_script("pcre", "/a/X", "b", [2])).ai_output("a") == "a"  # a flag JavaScript refuses


def test_dollar_is_the_end_of_the_text_as_in_javascript():
    assert scripts(st_script("end", "/$/", "喵", [2])).ai_output("好\n") == "好\n喵"
    assert scripts(st_script("lines", "/$/gm", "。", [2])).ai_output("a\nb") == "a。\nb。"


def test_a_backtracking_find_pattern_is_cut_off_in_time():
    slow = ScriptSet(
        [RegexScript.from_dict(st_script("slow", "/(a|aa)+$/", "x", [2]))], limits=ScanLimits(0.05, 5.0, 100)
    )
    start = time.perf_counter()
    assert slow.ai_output("a" * 47 + "!") == "a" * 47 + "!"
    assert time.perf_counter() - start < 2


def test_the_engine_applies_global_and_card_scripts(tiny_qwen2):
    (regex_dir() / "global.json").write_text(
        json.dumps(st_script("global", "/你好/g", "您好", [1]), ensure_ascii=False), encoding="utf-8"
    )
    own = [st_script("card", "/茶/g", "好茶", [1], promptOnly=True), st_script("out", "/$/", "喵", [2])]
    char = Character(name="林夕", extensions={"regex_scripts": own})
    assert [s.name for s in global_scripts()] == ["global"]
    runtime = Runtime.load(LLMConfig(model=str(tiny_qwen2), temperature=0, max_new_tokens=4))
    engine = Engine(runtime)
    history = [{"role": "user", "content": "来杯茶"}, {"role": "assistant", "content": "好"}]
    turn = engine.prepare("你好，茶", character=char, history=history, user=UserPersona("小明"))
    assert turn.user_text == "您好，茶"  # what the chat keeps: the user-input script, not the prompt-only one
    assert turn.messages[-1]["content"] == "您好，好茶" and turn.messages[1]["content"] == "来杯好茶"
    assert any(p.kind == "notice" and "card: user input; prompt only" in p.text for p in turn.parts)
    reply = engine.stream(turn).join()
    assert reply.endswith("喵") and reply[:-1] == runtime.stream(turn.messages, None, turn.params).join()
    off = Engine(runtime, chat_cfg=ConversationConfig(card_regex=False))
    assert off.prepare("茶", character=char, user=UserPersona("小明")).messages[-1]["content"] == "茶"


def test_macros_in_the_find_pattern_raw_or_escaped():
    macro = lambda text: text.replace("{{char}}", "A.B")
    raw = scripts(st_script("raw", "/{{char}}/g", "X", [2], substituteRegex=1), macro=macro)
    escaped = scripts(st_script("escaped", "/{{char}}/g", "X", [2], substituteRegex=2), macro=macro)
    assert raw.ai_output("AxB A.B") == "X X" and escaped.ai_output("AxB A.B") == "AxB X"
    assert RegexScript.from_dict(st_script("x", "/a/", "b", [2], substituteRegex=2)).to_dict()["substituteRegex"] == 2
