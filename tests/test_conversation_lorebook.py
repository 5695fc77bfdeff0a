"""conversation.lorebook: one test per activation rule (SillyTavern's world-info semantics), and the data shape."""

from __future__ import annotations

import pytest

from rolechat.conversation.lorebook import CardError, Lorebook, LoreEntry
from rolechat.conversation.worldinfo import activate


def book(*entries: LoreEntry, **settings) -> Lorebook:
    return Lorebook(entries=list(entries), **settings)


def active(b: Lorebook, *messages: str, budget: int | None = None) -> list[str]:
    return [e.content for e in activate(b, list(messages), len, budget)]


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
    assert sorted(active(book(loose, strict), "we flew to Paris")) == ["loose", "strict"]


def test_slashed_key_is_a_regex_with_its_own_flags():
    entry = LoreEntry(keys=[r"/第[一二三]章/"], content="章节")
    flagged = LoreEntry(keys=["/hello\\s+world/i"], content="flagged")
    assert active(book(entry, flagged), "请讲第二章") == ["章节"]
    assert active(book(entry, flagged), "请讲第五章") == []
    assert active(book(entry, flagged), "HELLO   World") == ["flagged"]
    broken = LoreEntry(keys=["/[unclosed/"], content="broken")
    assert active(book(broken), "[unclosed") == []  # a broken regex never matches (and never raises)


def test_use_regex_changes_nothing_only_slashed_keys_are_patterns():
    # SillyTavern writes use_regex: true on every exported entry and never reads it: keys stay literal text
    entry = LoreEntry(keys=["猫|狗"], content="宠物", use_regex=True)
    assert active(book(entry), "我养了一只狗") == []
    assert active(book(entry), "猫|狗 是什么意思") == ["宠物"]
    punctuated = LoreEntry(keys=["Mr. Li?", "C++", "(秘密)"], content="字面", use_regex=True)
    assert active(book(punctuated), "I write C++ daily") == ["字面"]
    assert active(book(punctuated), "Mrs Lin") == []  # `.` and `?` are not wildcards
    assert active(book(punctuated), "这是（秘密）不是(秘密)") == ["字面"]
    assert active(book(LoreEntry(keys=["/猫|狗/"], content="宠物")), "我养了一只狗") == ["宠物"]


def test_match_whole_words_applies_to_single_ascii_words():
    entry = LoreEntry(keys=["king"], content="king", match_whole_words=True)
    assert active(book(entry), "long live the king!") == ["king"]
    assert active(book(entry), "not to my liking") == []


def test_whole_words_is_the_default_and_chinese_keys_match_inside_chinese_text():
    # JavaScript's \W (no u flag) is ASCII: a Chinese character is a non-word character on both sides
    chinese = LoreEntry(keys=["长安"], content="都城")
    ascii_key = LoreEntry(keys=["tea"], content="茶")
    assert active(book(chinese), "我想去长安城看看") == ["都城"]
    assert active(book(chinese), "abc长安def") == []  # ASCII letters around it are word characters
    assert active(book(ascii_key), "我喜欢tea。") == ["茶"]
    assert active(book(ascii_key), "steam") == []
    assert active(book(LoreEntry(keys=["tea"], content="茶", match_whole_words=False)), "steam") == ["茶"]


def test_scan_depth_limits_the_messages_scanned_and_an_entry_can_override_it():
    old = LoreEntry(keys=["长安"], content="长安")
    deep = LoreEntry(keys=["洛阳"], content="洛阳", scan_depth=5)
    msgs = ["长安 洛阳", "第二句", "第三句"]
    assert active(book(old, deep, scan_depth=2), *msgs) == ["洛阳"]
    assert sorted(active(book(old, deep, scan_depth=3), *msgs)) == sorted(["长安", "洛阳"])
    assert active(book(old, deep), *msgs[1:], "提到长安") == ["长安"]  # the default depth (2) sees the last message


def test_scan_depth_zero_scans_no_message():
    assert active(book(LoreEntry(keys=["长安"], content="长安"), scan_depth=0), "长安") == []


def test_a_key_never_matches_across_two_messages():
    entry = LoreEntry(keys=["长安"], content="长安")
    assert active(book(entry), "我想去长", "安") == []


def test_budget_takes_the_highest_orders_and_stops_at_the_first_that_does_not_fit():
    # SillyTavern: by order, highest first (a constant entry has no head start); used + tokens must stay under
    # the budget (each entry counts its text and a line break); the first that does not fit ends the scan, even
    # when a smaller one after it would fit
    b = book(
        LoreEntry(keys=["x"], content="a" * 2, insertion_order=1),  # small, lowest order
        LoreEntry(keys=["x"], content="b" * 10, insertion_order=50),
        LoreEntry(keys=[], content="c" * 10, constant=True, insertion_order=40),
        LoreEntry(keys=["x"], content="d" * 10, insertion_order=90),
    )
    assert active(b, "x", budget=34) == ["c" * 10, "b" * 10, "d" * 10]  # 11 + 11 + 11 < 34; prompt: lower first
    assert active(b, "x", budget=33) == ["b" * 10, "d" * 10]  # 33 is not under 33: c overflows, a never tried
    assert active(b, "x", budget=12) == ["d" * 10]
    assert active(b, "x") == ["a" * 2, "c" * 10, "b" * 10, "d" * 10]


def test_priority_is_kept_but_order_ranks_for_the_budget():
    b = book(
        LoreEntry(keys=["x"], content="low", insertion_order=1, priority=100),
        LoreEntry(keys=["x"], content="high", insertion_order=99, priority=1),
    )
    assert active(b, "x", budget=6) == ["high"]
    assert Lorebook.from_dict(b.to_dict()).entries[0].priority == 100


def test_equal_orders_put_the_later_admitted_entry_first():
    # SillyTavern builds each position from order high to low, putting every entry in front of the others
    b = book(*(LoreEntry(keys=["x"], content=c, insertion_order=5) for c in ("one", "two", "three")))
    assert active(b, "x") == ["three", "two", "one"]


def test_the_book_budget_and_the_callers_budget_the_smaller_wins():
    b = book(LoreEntry(keys=["x"], content="12345"), LoreEntry(keys=["x"], content="67890"), token_budget=6)
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
    assert active(book(delayed), "甲") == []  # no sweep of recursion without another entry
    assert active(book(delayed, a), "甲") == ["提到乙和丙", "延迟"]  # the recursion sweep sees the chat too
    assert active(book(delayed, a, max_recursion_steps=1), "甲") == ["提到乙和丙"]  # never in the first


def test_directly_triggered_entries_outrank_recursive_ones_for_the_budget():
    b = book(
        LoreEntry(keys=["甲"], content="甲提到乙", insertion_order=1),
        LoreEntry(keys=["乙"], content="乙乙乙乙", insertion_order=99),
        LoreEntry(keys=["丙"], content="丙丙丙丙", insertion_order=2),
    )
    assert active(b, "甲 丙", budget=11) == ["甲提到乙", "丙丙丙丙"]  # 乙's order is higher but it came by recursion


def test_numeric_delay_until_recursion_levels_open_one_after_another():
    # SillyTavern's recursion levels: the lowest level first; a sweep that finds nothing opens the next level
    b = book(
        LoreEntry(keys=["龙"], content="龙住在山里。", insertion_order=10),
        LoreEntry(keys=["山"], content="山下有村庄。", delay_until_recursion=1, insertion_order=20),
        LoreEntry(keys=["龙"], content="传说的结局。", delay_until_recursion=3, insertion_order=30),
    )
    entries = activate(b, ["说说龙"], len)
    assert [e.content for e in entries] == ["龙住在山里。", "山下有村庄。", "传说的结局。"]
    card = {"keys": ["龙"], "content": "x", "extensions": {"delay_until_recursion": 2}}
    assert LoreEntry.from_dict(card).recursion_level == 2  # a number imports (it used to refuse the card)
    assert LoreEntry.from_dict(card).to_dict()["extensions"]["delay_until_recursion"] == 2


def test_results_come_in_insertion_order_with_their_position():
    b = book(
        LoreEntry(keys=["x"], content="after", insertion_order=5, position="after_char"),
        LoreEntry(keys=["x"], content="before", insertion_order=10, position="before_char"),
        LoreEntry(keys=["x"], content="first", insertion_order=1),
    )
    got = activate(b, ["x"], len)
    assert [e.content for e in got] == ["first", "after", "before"]
    assert [e.position for e in got] == ["before_char", "after_char", "before_char"]


def test_substitute_rewrites_keys_and_returns_the_original_entries():
    entry = LoreEntry(keys=["{{char}}的剑"], content="剑")
    got = activate(book(entry), ["苏晚的剑"], len, substitute=lambda k: k.replace("{{char}}", "苏晚"))
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
        LoreEntry(keys=["x"], content="c" * 10, insertion_order=10, ignore_budget=True),
    )
    assert active(b, "x", budget=15) == ["c" * 10, "a" * 10]
    read = LoreEntry.from_dict({"keys": ["x"], "content": "c", "extensions": {"ignore_budget": True}})
    assert read.ignore_budget
