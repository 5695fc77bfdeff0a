"""conversation.lorebook: one test per activation rule (SillyTavern's world-info semantics), and the data shape."""

from __future__ import annotations

import pytest

from rolechat.conversation.lorebook import CardError, Lorebook, LoreEntry


def book(*entries: LoreEntry, **settings) -> Lorebook:
    return Lorebook(entries=list(entries), **settings)


def active(b: Lorebook, *messages: str, budget: int | None = None) -> list[str]:
    return [e.content for e in b.activate(list(messages), len, budget)]


def test_primary_key_activates_and_absent_key_does_not():
    b = book(LoreEntry(keys=["长安", "京城"], content="长安是都城"))
    assert active(b, "我们去京城吧") == ["长安是都城"]
    assert active(b, "我们去洛阳吧") == []


def test_chinese_keys_match_as_substrings_without_word_boundaries():
    b = book(LoreEntry(keys=["西市"], content="胡商云集"))
    assert active(b, "听说长安西市来了波斯商人") == ["胡商云集"]


def test_entry_without_keys_never_activates_unless_constant():
    b = book(LoreEntry(keys=[], content="无关键词"), LoreEntry(keys=[" "], content="空白关键词"))
    assert active(b, "任何话") == []


def test_constant_entry_is_always_on():
    b = book(LoreEntry(keys=[], content="常驻设定", constant=True), LoreEntry(keys=["剑"], content="剑"))
    assert active(b, "你好") == ["常驻设定"]


def test_disabled_entry_never_activates_even_if_constant():
    b = book(
        LoreEntry(keys=["长安"], content="关闭的", enabled=False),
        LoreEntry(keys=[], content="关闭的常驻", constant=True, enabled=False),
    )
    assert active(b, "长安") == []


def test_blank_content_is_never_inserted():
    assert active(book(LoreEntry(keys=["长安"], content="  "), LoreEntry(keys=["长安"], content="有内容")), "长安") == [
        "有内容"
    ]


@pytest.mark.parametrize(
    ("logic", "text", "expected"),
    [
        ("AND_ANY", "剑 师父", True),
        ("AND_ANY", "剑", False),
        ("AND_ALL", "剑 师父", False),
        ("AND_ALL", "剑 师父 洛阳", True),
        ("NOT_ANY", "剑", True),
        ("NOT_ANY", "剑 洛阳", False),
        ("NOT_ALL", "剑 师父", True),
        ("NOT_ALL", "剑 师父 洛阳", False),
        ("NOT_ALL", "没有主键 师父", False),
    ],
)
def test_secondary_keys_follow_the_selective_logic(logic, text, expected):
    entry = LoreEntry(keys=["剑"], secondary_keys=["师父", "洛阳"], selective=True, selective_logic=logic, content="x")
    assert (active(book(entry), text) == ["x"]) is expected


def test_secondary_keys_are_ignored_when_the_entry_is_not_selective():
    entry = LoreEntry(keys=["剑"], secondary_keys=["师父"], selective=False, selective_logic="AND_ALL", content="x")
    assert active(book(entry), "剑") == ["x"]


def test_keys_are_case_insensitive_unless_the_entry_is_case_sensitive():
    loose = LoreEntry(keys=["Paris"], content="loose")
    strict = LoreEntry(keys=["Paris"], content="strict", case_sensitive=True)
    assert active(book(loose, strict), "we flew to PARIS") == ["loose"]
    assert active(book(loose, strict), "we flew to Paris") == ["loose", "strict"]


def test_slashed_key_is_a_regex_with_its_own_flags():
    entry = LoreEntry(keys=[r"/第[一二三]章/"], content="章节")
    flagged = LoreEntry(keys=["/hello\\s+world/i"], content="flagged")
    assert active(book(entry, flagged), "请讲第二章") == ["章节"]
    assert active(book(entry, flagged), "请讲第五章") == []
    assert active(book(entry, flagged), "HELLO   World") == ["flagged"]
    broken = LoreEntry(keys=["/[unclosed/"], content="broken")
    assert active(book(broken), "[unclosed") == []  # a broken regex never matches (and never raises)


def test_use_regex_makes_plain_keys_patterns_and_bad_patterns_literal():
    entry = LoreEntry(keys=["猫|狗"], content="宠物", use_regex=True)
    assert active(book(entry), "我养了一只狗") == ["宠物"]
    literal = LoreEntry(keys=["C++"], content="语言", use_regex=True)
    assert active(book(literal), "I write C++ daily") == ["语言"]


def test_match_whole_words_applies_to_single_ascii_words():
    entry = LoreEntry(keys=["king"], content="king", match_whole_words=True)
    assert active(book(entry), "long live the king!") == ["king"]
    assert active(book(entry), "not to my liking") == []


def test_scan_depth_limits_the_messages_scanned_and_an_entry_can_override_it():
    old = LoreEntry(keys=["长安"], content="长安")
    deep = LoreEntry(keys=["洛阳"], content="洛阳", scan_depth=5)
    msgs = ["长安 洛阳", "第二句", "第三句"]
    assert active(book(old, deep, scan_depth=2), *msgs) == ["洛阳"]
    assert active(book(old, deep, scan_depth=3), *msgs) == ["长安", "洛阳"]
    assert active(book(old, deep), *msgs[1:], "提到长安") == ["长安"]  # the default depth (2) sees the last message


def test_scan_depth_zero_scans_no_message():
    assert active(book(LoreEntry(keys=["长安"], content="长安"), scan_depth=0), "长安") == []


def test_a_key_never_matches_across_two_messages():
    entry = LoreEntry(keys=["长安"], content="长安")
    assert active(book(entry), "我想去长", "安") == []


def test_budget_keeps_constant_then_highest_order_and_drops_the_rest():
    b = book(
        LoreEntry(keys=["x"], content="a" * 10, insertion_order=1),  # lowest priority
        LoreEntry(keys=["x"], content="b" * 10, insertion_order=50),
        LoreEntry(keys=[], content="c" * 10, constant=True, insertion_order=100),
        LoreEntry(keys=["x"], content="d" * 10, insertion_order=90),
    )
    assert active(b, "x", budget=30) == ["b" * 10, "d" * 10, "c" * 10]  # dropped a; result in insertion order
    assert active(b, "x", budget=20) == ["d" * 10, "c" * 10]
    assert active(b, "x") == ["a" * 10, "b" * 10, "d" * 10, "c" * 10]


def test_priority_ranks_before_insertion_order_for_the_budget():
    b = book(
        LoreEntry(keys=["x"], content="keep", insertion_order=1, priority=100),
        LoreEntry(keys=["x"], content="drop", insertion_order=99, priority=1),
    )
    assert active(b, "x", budget=4) == ["keep"]


def test_the_book_budget_and_the_callers_budget_the_smaller_wins():
    b = book(LoreEntry(keys=["x"], content="12345"), LoreEntry(keys=["x"], content="67890"), token_budget=5)
    assert len(active(b, "x")) == 1
    assert len(active(b, "x", budget=100)) == 1
    assert active(b, "x", budget=4) == []


def test_recursion_activates_entries_mentioned_in_activated_content():
    b = book(
        LoreEntry(keys=["贝西"], content="贝西是一头牛，和鲁弗斯是朋友。", insertion_order=1),
        LoreEntry(keys=["鲁弗斯"], content="鲁弗斯是一条狗。", insertion_order=2),
    )
    assert active(b, "说说贝西") == ["贝西是一头牛，和鲁弗斯是朋友。", "鲁弗斯是一条狗。"]
    b.recursive_scanning = False
    assert active(b, "说说贝西") == ["贝西是一头牛，和鲁弗斯是朋友。"]


def test_recursion_stops_at_the_step_limit():
    chain = [LoreEntry(keys=[f"k{i}"], content=f"k{i + 1}", insertion_order=i) for i in range(5)]
    assert active(book(*chain), "k0") == ["k1", "k2", "k3", "k4", "k5"]
    assert active(book(*chain, max_recursion_steps=1), "k0") == ["k1"]
    assert active(book(*chain, max_recursion_steps=3), "k0") == ["k1", "k2", "k3"]


def test_recursion_flags_per_entry():
    a = LoreEntry(keys=["甲"], content="提到乙和丙", insertion_order=1)
    excluded = LoreEntry(keys=["乙"], content="乙", insertion_order=2, exclude_recursion=True)
    c = LoreEntry(keys=["丙"], content="丙", insertion_order=3)
    assert active(book(a, excluded, c), "甲") == ["提到乙和丙", "丙"]
    silent = LoreEntry(keys=["甲"], content="提到乙和丙", prevent_recursion=True)
    assert active(book(silent, c), "甲") == ["提到乙和丙"]
    delayed = LoreEntry(keys=["甲"], content="延迟", delay_until_recursion=True, insertion_order=5)
    assert active(book(delayed), "甲") == ["延迟"]  # allowed in the recursion sweep
    assert active(book(delayed, max_recursion_steps=1), "甲") == []  # never in the first


def test_directly_triggered_entries_outrank_recursive_ones_for_the_budget():
    b = book(
        LoreEntry(keys=["甲"], content="甲提到乙", insertion_order=1),
        LoreEntry(keys=["乙"], content="乙乙乙乙", insertion_order=99),
        LoreEntry(keys=["丙"], content="丙丙丙丙", insertion_order=2),
    )
    assert active(b, "甲 丙", budget=8) == ["甲提到乙", "丙丙丙丙"]


def test_results_come_in_insertion_order_with_their_position():
    b = book(
        LoreEntry(keys=["x"], content="after", insertion_order=5, position="after_char"),
        LoreEntry(keys=["x"], content="before", insertion_order=10, position="before_char"),
        LoreEntry(keys=["x"], content="first", insertion_order=1),
    )
    got = b.activate(["x"], len)
    assert [e.content for e in got] == ["first", "after", "before"]
    assert [e.position for e in got] == ["before_char", "after_char", "before_char"]


def test_substitute_rewrites_keys_and_returns_the_original_entries():
    entry = LoreEntry(keys=["{{char}}的剑"], content="剑")
    got = book(entry).activate(["苏晚的剑"], len, substitute=lambda k: k.replace("{{char}}", "苏晚"))
    assert got == [entry] and got[0] is entry


def test_entry_from_card_dict_reads_sillytavern_extensions_and_round_trips():
    d = {
        "keys": ["剑"],
        "secondary_keys": ["师父"],
        "content": "x",
        "enabled": True,
        "insertion_order": 5,
        "selective": True,
        "position": "after_char",
        "extensions": {
            "selectiveLogic": 3,
            "scan_depth": 7,
            "exclude_recursion": True,
            "probability": 50,
            "vendor/x": {"y": 1},
        },
        "mystery": [1, 2],
    }
    entry = LoreEntry.from_dict(d)
    assert entry.selective_logic == "AND_ALL" and entry.scan_depth == 7 and entry.exclude_recursion
    assert entry.position == "after_char" and entry.extra == {"mystery": [1, 2]}
    again = LoreEntry.from_dict(entry.to_dict())
    assert again == entry
    assert entry.to_dict()["extensions"]["probability"] == 50


def test_book_round_trips_with_unknown_fields():
    d = {
        "name": "书",
        "scan_depth": 3,
        "token_budget": 100,
        "recursive_scanning": False,
        "extensions": {"x": 1},
        "entries": [{"keys": ["a"], "content": "b", "extensions": {}, "enabled": True, "insertion_order": 1}],
        "unknown": "kept",
    }
    b = Lorebook.from_dict(d)
    assert b.extra == {"unknown": "kept"} and b.scan_depth == 3 and b.recursive_scanning is False
    assert Lorebook.from_dict(b.to_dict()) == b


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"entries": "no"}, "character_book.entries: expected a list"),
        ({"entries": [{"keys": [1]}]}, "character_book.entries[0].keys: expected a list of strings"),
        ({"entries": [{}, {"keys": ["a"], "content": 5.5j}]}, "character_book.entries[1].content: expected a string"),
        ({"entries": [{"keys": ["a"], "position": "middle"}]}, "character_book.entries[0].position"),
        ({"entries": [{"keys": ["a"], "extensions": {"selectiveLogic": 9}}]}, "entries[0].extensions.selectiveLogic"),
        ({"entries": [{"keys": ["a"], "insertion_order": "soon"}]}, "entries[0].insertion_order: expected a number"),
        ({"entries": [], "scan_depth": -1}, "character_book.scan_depth"),
    ],
)
def test_bad_books_name_the_field(bad, message):
    with pytest.raises(CardError) as err:
        Lorebook.from_dict(bad)
    assert message in str(err.value)


def test_v3_decorators_are_kept_apart_from_the_prompt_text_and_activate_ones_apply():
    d = {"keys": ["never"], "content": "@@activate\n@@depth 4\n@@@instruct_depth 4\n常驻的内容", "insertion_order": 1}
    entry = LoreEntry.from_dict(d)
    assert entry.content == "常驻的内容" and entry.decorators == ["@@activate", "@@depth 4", "@@@instruct_depth 4"]
    assert entry.to_dict()["content"] == d["content"] and LoreEntry.from_dict(entry.to_dict()) == entry
    off = LoreEntry.from_dict({"keys": ["长安"], "content": "@@dont_activate\n不出现", "constant": True})
    assert active(book(entry, off), "长安") == ["常驻的内容"]
    plain = LoreEntry.from_dict({"keys": ["a"], "content": "正文\n@@not a decorator here"})
    assert plain.decorators == [] and plain.content == "正文\n@@not a decorator here"


def test_ignore_budget_entries_go_in_even_after_the_budget_is_spent():
    b = book(
        LoreEntry(keys=["x"], content="a" * 10, insertion_order=90),
        LoreEntry(keys=["x"], content="b" * 10, insertion_order=50),
        LoreEntry(keys=["x"], content="c" * 10, insertion_order=10, extensions={"ignore_budget": True}),
    )
    assert active(b, "x", budget=15) == ["c" * 10, "a" * 10]
