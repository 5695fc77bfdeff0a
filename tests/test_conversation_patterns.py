"""conversation.patterns: card-supplied key patterns cost bounded time, turn their entry off when they take too long,
and never stop other threads; the lorebook's scan has a time and a check budget; import spots nested quantifiers."""

from __future__ import annotations

import threading
import time

import pytest

from rolechat.conversation import lorebook, worldinfo
from rolechat.conversation.lorebook import Lorebook, LoreEntry, LoreNotice
from rolechat.conversation.patterns import ScanLimits, nested_quantifiers

SLOW = "(a|aa)+$"  # exponential on "aaa…!" even for the `regex` package (it defuses `(a+)+$` itself)
TEXT = "a" * 47 + "!"
FAST = ScanLimits(regex_timeout=0.05, scan_seconds=5.0, max_checks=10_000)


@pytest.fixture(autouse=True)
def _fresh_patterns():
    """A timed-out pattern stays off for the process: each test starts from compiled-anew patterns."""
    lorebook._matcher.cache_clear()
    yield
    lorebook._matcher.cache_clear()


def activate(book: Lorebook, text: str, limits: ScanLimits = FAST) -> tuple[list[str], list[LoreNotice], float]:
    notices: list[LoreNotice] = []
    start = time.perf_counter()
    found = worldinfo.activate(book, [text], len, limits=limits, notices=notices)
    return [e.content for e in found], notices, time.perf_counter() - start


def test_a_catastrophic_key_turns_its_entry_off_and_the_other_entries_still_work():
    book = Lorebook(
        entries=[
            LoreEntry(keys=[f"/{SLOW}/"], content="慢", comment="危险条目"),
            LoreEntry(keys=["aaa"], content="好", match_whole_words=False),
        ]
    )
    found, notices, seconds = activate(book, TEXT)
    assert found == ["好"]
    assert [n.entry for n in notices] == ["危险条目"]
    assert "0.05 s" in notices[0].message and "chat.lore_regex_timeout" in notices[0].message
    assert seconds < 5  # generous: the pattern alone would run for hours
    found, notices, seconds = activate(book, TEXT)  # off for good: no second wait
    assert found == ["好"] and [n.entry for n in notices] == ["危险条目"]
    assert seconds < 0.05


def test_v3_use_regex_keys_are_plain_text_so_nothing_backtracks():
    book = Lorebook(entries=[LoreEntry(keys=[SLOW], content="慢", use_regex=True, comment="v3")])
    found, notices, seconds = activate(book, TEXT)
    assert found == [] and notices == [] and seconds < 0.05


def test_a_fast_pattern_still_matches_as_before():
    book = Lorebook(entries=[LoreEntry(keys=["/长安|洛阳/"], content="都城")])
    assert activate(book, "我们去洛阳吧")[:2] == (["都城"], [])


def test_the_scan_stops_when_its_time_is_spent_keeping_what_it_found():
    slow = [LoreEntry(keys=[f"/{SLOW}(?#{i})/"], content=f"慢{i}") for i in range(40)]  # 40 different patterns
    book = Lorebook(
        entries=[
            LoreEntry(keys=[], content="常驻", constant=True, insertion_order=1),
            LoreEntry(keys=["!"], content="先", match_whole_words=False),
            *slow,
        ]
    )
    limits = ScanLimits(regex_timeout=0.05, scan_seconds=0.3, max_checks=10_000)
    found, notices, seconds = activate(book, TEXT, limits)
    assert found == ["常驻", "先"]
    assert notices[-1].entry == "" and "chat.lore_scan_seconds" in notices[-1].message
    assert 0 < len(notices) - 1 < 40  # some patterns timed out before the scan's time ran out, not all 40
    assert seconds < 3


def test_the_scan_stops_after_its_most_checks_and_constant_entries_stay_on():
    entries = [LoreEntry(keys=[f"词{i}"], content=f"条目{i}") for i in range(10)]
    book = Lorebook(entries=[*entries, LoreEntry(keys=[], content="常驻", constant=True)])
    limits = ScanLimits(regex_timeout=0.05, scan_seconds=5.0, max_checks=3)
    found, notices, _ = activate(book, "词0 词1 词2 词3 词4", limits)
    assert sorted(found) == ["常驻", "条目0", "条目1", "条目2"]
    assert [n.entry for n in notices] == [""] and "chat.lore_max_checks" in notices[0].message


def test_recursion_sweeps_count_against_the_checks():
    chain = [LoreEntry(keys=[f"k{i}"], content=f"k{i + 1}") for i in range(50)]  # each activates the next
    found, notices, _ = activate(Lorebook(entries=chain), "k0", ScanLimits(0.05, 5.0, 200))
    assert 1 < len(found) < 50 and "chat.lore_max_checks" in notices[-1].message


def test_a_slow_pattern_lets_other_threads_run_meanwhile():
    """What keeps the API's /health answering while a request's lorebook scan backtracks."""
    book = Lorebook(entries=[LoreEntry(keys=[f"/{SLOW}/"], content="慢")])
    limits = ScanLimits(regex_timeout=1.0, scan_seconds=5.0, max_checks=10)
    worker = threading.Thread(target=activate, args=(book, TEXT, limits))
    ticks = 0
    worker.start()
    while worker.is_alive():
        ticks += 1
        time.sleep(0.005)
    assert ticks > 20  # one second of matching; a pattern holding the interpreter lock would allow ~1


@pytest.mark.parametrize(
    "pattern, nested",
    [
        ("(a+)+$", True),
        ("(x+x+)+y", True),
        (r"(\w+\s?)*$", True),
        ("((ab)*c)+", True),
        ("(?:a|b+)+", True),
        ("长安|洛阳", False),
        ("(ab)+c", False),
        ("[a-z]+@[a-z]+", False),
        ("(a{2,3})+", False),
        ("(unclosed", False),
    ],
)
def test_nested_quantifiers_are_spotted(pattern, nested):
    assert nested_quantifiers(pattern) is nested


def test_risky_keys_names_the_entry_and_key_of_each_nested_pattern():
    book = Lorebook(
        entries=[
            LoreEntry(keys=["/(a+)+$/", "长安"], content="x", comment="危险"),
            LoreEntry(keys=["/(x+x+)+y/i"], content="y", name="flags"),
            LoreEntry(keys=["(x+x+)+y"], content="z", use_regex=True),  # a plain key: matched literally, no pattern
        ]
    )
    assert book.risky_keys() == [("危险", "/(a+)+$/"), ("flags", "/(x+x+)+y/i")]
