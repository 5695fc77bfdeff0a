"""conversation.worldinfo: SillyTavern's world-info scan over several books (checkWorldInfo, world-info.js), with
books and entries in the field layout SillyTavern's card export writes."""

from __future__ import annotations

import random

import pytest

from rolechat.conversation.lorebook import Lorebook
from rolechat.conversation.worldinfo import ScanSettings, Source, budget_of, scan


def st_entry(uid: int, keys: list[str], content: str, order: int = 100, **ext) -> dict:
    """An entry as SillyTavern's card export writes it (src/endpoints/characters.js)."""
    extensions = {"position": 0, "depth": 4, "probability": 100, "useProbability": True, "selectiveLogic": 0}
    extensions.update(ext)
    return {
        "id": uid,
        "keys": keys,
        "secondary_keys": [],
        "comment": content[:4],
        "content": content,
        "constant": False,
        "selective": True,
        "insertion_order": order,
        "enabled": True,
        "position": "before_char",
        "use_regex": True,
        "extensions": extensions,
    }


def book(name: str, *entries: dict) -> Lorebook:
    return Lorebook.from_dict({"name": name, "entries": list(entries)})


def contents(found) -> list[str]:
    return [d.entry.content for d in found.active]


def run(sources, *lines: str, **kwargs):
    kwargs.setdefault("rng", random.Random(0))
    return scan(sources, [("小明", line) for line in lines], len, kwargs.pop("settings", ScanSettings()), **kwargs)


def test_chat_books_come_first_then_the_character_and_the_global_ones_by_strategy():
    chat = Source(book("旅途", st_entry(0, ["雨"], "chat", 10)), "chat", "旅途")
    own = Source(book("林夕", st_entry(0, ["雨"], "char", 50)), "character", "林夕")
    common = Source(book("世界", st_entry(0, ["雨"], "global", 90)), "global", "世界")
    sources = [common, own, chat]
    # the budget (each entry 5 tokens with its line break) shows who ranks first: one fits
    for strategy, first in (("character_first", "chat"), ("global_first", "chat")):
        found = run(sources, "下雨了", budget=6, settings=ScanSettings(strategy=strategy))
        assert contents(found) == [first] and [d.status for d in found.skipped] == ["budget", "budget"]
    found = run(sources, "下雨了", budget=13, settings=ScanSettings(strategy="character_first"))
    assert contents(found) == ["chat", "char"]  # the chat's book, then the character's
    found = run(sources, "下雨了", budget=13, settings=ScanSettings(strategy="global_first"))
    assert contents(found) == ["chat", "global"]
    found = run([own, common], "下雨了", budget=8, settings=ScanSettings(strategy="evenly"))
    assert contents(found) == ["global"]  # one list by order: global's 90 beats 50
    assert {d.source.name for d in run(sources, "下雨了").active} == {"旅途", "林夕", "世界"}


def test_budget_is_a_share_of_the_context_with_a_cap():
    assert budget_of(25, 0, 2048) == 512
    assert budget_of(25, 300, 2048) == 300
    assert budget_of(0.01, 0, 100) == 1  # never zero


def test_names_are_in_the_scanned_text_unless_turned_off():
    entry = Source(book("b", st_entry(0, ["小明"], "认识小明")), "character", "b")
    assert contents(run([entry], "你好")) == ["认识小明"]  # "小明: 你好" is scanned
    assert contents(run([entry], "你好", settings=ScanSettings(include_names=False))) == []


def test_probability_rolls_and_a_failed_roll_is_reported():
    sure = st_entry(0, ["雨"], "always", useProbability=True, probability=100)
    never = st_entry(1, ["雨"], "never", useProbability=True, probability=0)
    half = st_entry(2, ["雨"], "half", useProbability=True, probability=50)
    unused = st_entry(3, ["雨"], "unused", useProbability=False, probability=0)  # probability off: always
    source = Source(book("b", sure, never, half, unused), "character", "b")
    found = run([source], "雨")
    assert "always" in contents(found) and "unused" in contents(found) and "never" not in contents(found)
    assert any(d.entry.content == "never" and d.status == "probability" for d in found.skipped)
    halves = [("half" in contents(run([source], "雨", rng=random.Random(n)))) for n in range(40)]
    assert 5 < sum(halves) < 35


def test_inclusion_groups_keep_one_entry_each():
    weighted = Source(
        book(
            "b",
            st_entry(0, ["雨"], "A", 10, group="天气", group_weight=100),
            st_entry(1, ["雨"], "B", 20, group="天气", group_weight=0.0001),
            st_entry(2, ["雨"], "solo", 30),
        ),
        "character",
        "b",
    )
    found = run([weighted], "雨")
    assert sorted(contents(found)) == ["A", "solo"]  # the weight decides the draw
    assert [(d.entry.content, d.status) for d in found.skipped] == [("B", "group")]
    override = Source(
        book(
            "b",
            st_entry(0, ["雨"], "low", 10, group="天气", group_override=True),
            st_entry(1, ["雨"], "high", 90, group="天气", group_override=True),
            st_entry(2, ["雨"], "plain", 99, group="天气"),
        ),
        "character",
        "b",
    )
    assert contents(run([override], "雨")) == ["high"]  # the highest order among the prioritised ones


def test_group_scoring_leaves_the_entries_with_the_most_keys_found():
    songs = Source(
        book(
            "b",
            st_entry(0, ["song", "sing", "Black Cat"], "cat", group="songs", use_group_scoring=True),
            st_entry(1, ["song", "sing", "Ghosts"], "ghosts", group="songs", use_group_scoring=True),
        ),
        "character",
        "b",
    )
    assert contents(run([songs], "sing me a song about Ghosts")) == ["ghosts"]  # SillyTavern's docs example
    assert len(contents(run([songs], "sing me a song"))) == 1


def test_sticky_cooldown_and_delay_count_messages():
    entry = st_entry(0, ["雨"], "雨季", sticky=2, cooldown=2)
    source = Source(book("b", entry), "character", "b")
    first = run([source], "下雨了", chat_length=3)
    assert contents(first) == ["雨季"] and set(first.state) == {"sticky", "cooldown"}
    state = first.state
    for length, expected in ((4, ["雨季"]), (5, [])):  # sticky for 2 messages (the keys are gone), then cooldown
        found = run([source], "晴天", chat_length=length, state=state)
        assert contents(found) == expected, length
        state = found.state
    blocked = run([source], "又下雨了", chat_length=6, state=state)
    assert contents(blocked) == [] and [d.status for d in blocked.skipped] == ["cooldown"]
    assert contents(run([source], "又下雨了", chat_length=7, state=blocked.state)) == ["雨季"]
    late = Source(book("b", st_entry(0, ["雨"], "晚到", delay=3)), "character", "b")
    assert contents(run([late], "雨", chat_length=2)) == [] and contents(run([late], "雨", chat_length=3)) == ["晚到"]


def test_a_regeneration_does_not_keep_the_effect_it_set():
    source = Source(book("b", st_entry(0, ["雨"], "雨季", sticky=5)), "character", "b")
    state = run([source], "下雨了", chat_length=3).state
    again = run([source], "晴天", chat_length=3, state=state)  # the same turn again: the chat did not advance
    assert contents(again) == [] and again.state == {}


def test_an_edited_entry_loses_its_timed_effect():
    state = run([Source(book("b", st_entry(0, ["雨"], "雨季", sticky=5)), "character", "b")], "雨", chat_length=3).state
    edited = Source(book("b", st_entry(0, ["雨"], "改过的雨季", sticky=5)), "character", "b")
    assert contents(run([edited], "晴天", chat_length=4, state=state)) == []


def test_character_filter_and_extra_matching_sources():
    only = st_entry(0, ["雨"], "林夕专用", character_filter={"names": ["林夕.png"], "isExclude": False})
    source = Source(book("b", only), "global", "b")
    assert contents(run([source], "雨", accept=lambda e: True)) == ["林夕专用"]
    from rolechat.conversation.lore import _character_filter

    assert contents(run([source], "雨", accept=_character_filter(None, "林夕"))) == ["林夕专用"]
    assert contents(run([source], "雨", accept=_character_filter(None, "阿青"))) == []
    described = Source(book("b", st_entry(0, ["说书"], "说书人设定", match_character_description=True)), "global", "b")
    assert contents(run([described], "你好", extra={"description": "林夕是说书人"})) == ["说书人设定"]
    assert contents(run([described], "你好")) == []


def test_recursion_off_in_the_settings_and_a_step_limit():
    chain = Source(
        book("b", st_entry(0, ["甲"], "提到乙", 10), st_entry(1, ["乙"], "提到丙", 20), st_entry(2, ["丙"], "完", 30)),
        "character",
        "b",
    )
    assert contents(run([chain], "甲")) == ["提到乙", "提到丙", "完"]
    assert contents(run([chain], "甲", settings=ScanSettings(recursive=False))) == ["提到乙"]
    assert contents(run([chain], "甲", settings=ScanSettings(max_recursion_steps=2))) == ["提到乙", "提到丙"]
    why = {d.entry.content: d.reason for d in run([chain], "甲").active}
    assert why == {"提到乙": "key 甲", "提到丙": "key 乙 (recursion, sweep 2)", "完": "key 丙 (recursion, sweep 3)"}


def test_an_entry_its_books_budget_left_out_feeds_no_recursion():
    # SillyTavern's recursion scans only entries that went in: its one budget refuses an entry by ending
    # recursion (checkWorldInfo, token_budget_overflowed), and it reads no book token_budget. Here the book's
    # budget (7 tokens: one entry and its line break) leaves 虎's entry out; 虎 must not come by recursion
    lore = book("设定", st_entry(0, ["雨"], "下雨时提到龙", 90), st_entry(1, ["雨"], "下雨时提到虎", 50))
    lore.token_budget = 7
    world = Source(book("世界", st_entry(0, ["龙"], "龙", 10), st_entry(1, ["虎"], "虎", 20)), "global", "世界")
    found = run([Source(lore, "character", "设定"), world], "下雨了")
    assert contents(found) == ["龙", "下雨时提到龙"]
    assert [(d.entry.content, d.status) for d in found.skipped] == [("下雨时提到虎", "book budget")]
    assert {d.entry.content: d.reason for d in found.active}["龙"] == "key 龙 (recursion, sweep 2)"
    lore.token_budget = 14  # both fit: both feed the next sweep
    assert contents(run([Source(lore, "character", "设定"), world], "下雨了")) == [
        "龙",
        "虎",
        "下雨时提到虎",
        "下雨时提到龙",
    ]


def test_an_entry_the_scans_budget_refused_is_still_scanned_by_a_delayed_level():
    # SillyTavern: the overflow ends recursion, but a "delay until recursion" level still to open (level 1 is
    # open from the start) runs one more sweep over every entry that rolled in, the refused one included
    # (successfulNewEntries); only an ignore-budget entry can go in after the overflow
    lore = book(
        "设定",
        st_entry(0, ["雨"], "下雨时提到龙", 90),
        st_entry(1, ["雨"], "下雨时提到虎", 50),
        st_entry(2, ["虎"], "虎", 10, delay_until_recursion=2, ignore_budget=True),
        st_entry(3, ["无"], "无", 10, delay_until_recursion=1),
    )
    found = run([Source(lore, "character", "设定")], "下雨了", budget=8)
    assert contents(found) == ["虎", "下雨时提到龙"]
    assert [(d.entry.content, d.status) for d in found.skipped] == [("下雨时提到虎", "budget")]


@pytest.mark.parametrize(
    ("key", "text", "hit"),
    [
        ("/^\\x01小明:.*雨/", "下雨了", True),  # SillyTavern's per-message marker and the name prefix
        ("/RAIN/i", "rain", True),
        ("/RAIN/", "rain", False),  # a pattern's own flags decide case
        ("/\\bcat\\b/", "中cat中", True),  # \\b is ASCII: Chinese characters are non-word characters
        ("/a/b/", "路径 /a/b/ 在这", True),  # an unescaped slash: not a pattern, so plain text
        ("/a/b/", "ab", False),
    ],
)
def test_slashed_keys_are_javascript_patterns(key, text, hit):
    source = Source(book("b", st_entry(0, [key], "x")), "character", "b")
    assert (contents(run([source], text)) == ["x"]) is hit
