"""Patterns a card supplies (lorebook keys written `/pattern/flags`, regex scripts), matched at bounded cost.

    scan = Scan(ScanLimits(regex_timeout=0.25, scan_seconds=3.0, max_checks=50000))   # one per activation
    pattern = TimedPattern.compile("(a+)+$", regex.IGNORECASE)   # None when it does not compile
    js_pattern("/第.章/i")               # ("第.章", "i"): a key written as a JavaScript regex, else None
    pattern = TimedPattern.js("第.章", "i")   # compiled with JavaScript's meaning of the flags
    pattern.search("aaaa…!", scan)       # bool; PatternTimeout when it took longer than regex_timeout (the
                                         # pattern then stays off: it raises at once from then on)
    scan.check()                         # before each entry check: ScanStopped past max_checks or scan_seconds
    nested_quantifiers("(a+)+$")         # True: the shape that backtracks catastrophically (import warns)

Matching runs on the `regex` package with its `timeout=`, and with `concurrent=True`, so that other threads
(the API's event loop, other requests) run while a pattern backtracks. A scan also has a time budget for all
its matching together (`scan_seconds`) and a most number of entry checks (`max_checks`): once either is
spent, ScanStopped ends the activation with what it found.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

__all__ = ["PatternTimeout", "Scan", "ScanLimits", "ScanStopped", "TimedPattern", "js_pattern", "nested_quantifiers"]

log = logging.getLogger(__name__)


# SillyTavern's parseRegexFromString (public/scripts/world-info.js): /pattern/ with JavaScript's flags, and no
# unescaped `/` inside the pattern (otherwise the key is plain text).
_JS_KEY = re.compile(r"^/([\s\S]+?)/([gimsuy]*)$")
_UNESCAPED_SLASH = re.compile(r"(^|[^\\])/")


def js_pattern(key: str) -> tuple[str, str] | None:
    """(pattern, flags) of a key written `/pattern/flags` as SillyTavern reads one, else None."""
    found = _JS_KEY.match(key)
    if not found or _UNESCAPED_SLASH.search(found.group(1)):
        return None
    return found.group(1), found.group(2)


def _end_of_input(source: str) -> str:
    """JavaScript's `$` (without the m flag) matches only at the very end; Python's also before a final newline:
    each unescaped `$` outside a character class becomes `\\Z`."""
    out, klass, escaped = [], False, False
    for char in source:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[":
            klass = True
        elif char == "]":
            klass = False
        elif char == "$" and not klass:
            char = "\\Z"
        out.append(char)
    return "".join(out)


class PatternTimeout(Exception):
    """A pattern took longer than its time limit; the message says which and how long it was given."""


class ScanStopped(Exception):
    """The activation's budget (pattern time or entry checks) is spent; the message says which."""


@dataclass(frozen=True)
class ScanLimits:
    """What one lorebook activation may cost (`ConversationConfig`'s lore_* settings give them values)."""

    regex_timeout: float  # seconds one pattern may take on one text
    scan_seconds: float  # seconds of key matching (of every kind) in all
    max_checks: int  # entry checks (each recursion sweep checks the entries not yet active again)

    @classmethod
    def of(cls, cfg) -> ScanLimits:
        """The limits of a ConversationConfig."""
        return cls(cfg.lore_regex_timeout, cfg.lore_scan_seconds, cfg.lore_max_checks)


class Scan:
    """The running cost of one activation."""

    def __init__(self, limits: ScanLimits) -> None:
        self.limits = limits
        self.checks = 0
        self.deadline = time.monotonic() + limits.scan_seconds

    def check(self) -> None:
        """Count one entry check; ScanStopped when the checks or the time are spent."""
        self.checks += 1
        if self.checks > self.limits.max_checks:
            raise ScanStopped(
                f"the lorebook scan stopped after {self.limits.max_checks} entry checks (chat.lore_max_checks); "
                "entries not checked by then stay out this turn"
            )
        if time.monotonic() >= self.deadline:
            raise self.spent()

    def timeout(self) -> float:
        """The time the next pattern may take: its own limit, or what is left of the scan's time."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.spent()
        return min(self.limits.regex_timeout, left)

    def spent(self) -> ScanStopped:
        return ScanStopped(
            f"the lorebook scan stopped after {self.limits.scan_seconds:g} s (chat.lore_scan_seconds); "
            "entries not checked by then stay out this turn"
        )


class TimedPattern:
    """A compiled key pattern that remembers it timed out (and then stays off)."""

    __slots__ = ("compiled", "source", "failure")

    def __init__(self, compiled, source: str) -> None:
        self.compiled = compiled
        self.source = source
        self.failure: str | None = None

    @classmethod
    def compile(cls, source: str, flags: int = 0) -> TimedPattern | None:
        import regex

        try:
            return cls(regex.compile(source, flags), source)
        except (regex.error, RecursionError, OverflowError, ValueError, MemoryError):
            return None

    @classmethod
    def js(cls, source: str, flags: str = "") -> TimedPattern | None:
        """A pattern with JavaScript's flags: i, m, s as in Python; without u, `\\w`, `\\d`, `\\b` are ASCII (as
        JavaScript's are); y anchors the match at the start; g changes nothing for a test."""
        import regex

        value = regex.ASCII if "u" not in flags else 0
        for flag, bit in (("i", regex.IGNORECASE), ("m", regex.MULTILINE), ("s", regex.DOTALL)):
            if flag in flags:
                value |= bit
        if "m" not in flags:
            source = _end_of_input(source)
        return cls.compile(rf"\G(?:{source})" if "y" in flags else source, value)

    def search(self, text: str, scan: Scan) -> bool:
        return (
            self._timed(scan, lambda timeout: self.compiled.search(text, timeout=timeout, concurrent=True)) is not None
        )

    def sub(self, replace, text: str, count: int, scan: Scan) -> str:
        """`text` with matches replaced by `replace(match)` (`count` 0: every match), time-bounded as `search`."""
        return self._timed(
            scan, lambda timeout: self.compiled.sub(replace, text, count, timeout=timeout, concurrent=True)
        )

    def _timed(self, scan: Scan, run):
        if self.failure is not None:
            raise PatternTimeout(self.failure)
        timeout = scan.timeout()
        try:
            return run(timeout)
        except TimeoutError:
            if timeout < scan.limits.regex_timeout:  # cut short by the scan's own budget: not this pattern's fault
                raise scan.spent() from None
            shown = self.source if len(self.source) <= 60 else self.source[:59] + "…"
            self.failure = (
                f"its key pattern /{shown}/ took longer than {timeout:g} s to match (chat.lore_regex_timeout), "
                "so the entry is off"
            )
            log.warning("lorebook entry turned off: %s", self.failure)  # once: from now on it raises at once
            raise PatternTimeout(self.failure) from None


def nested_quantifiers(pattern: str) -> bool:
    """Whether `pattern` repeats, without bound, something that itself repeats without bound (`(a+)+`,
    `(x+x+)+y`, `(\\w+\\s?)*`): the shape that backtracks exponentially on a text that almost matches."""
    from re import _constants as c
    from re import _parser

    unbounded = {c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT}

    def walk(items, inside: bool) -> bool:
        for op, av in items:
            if op in unbounded:
                low, high, body = av
                endless = high == c.MAXREPEAT
                if (endless and inside) or walk(body, inside or endless):
                    return True
            elif op is c.SUBPATTERN and walk(av[-1], inside):
                return True
            elif op is c.BRANCH and any(walk(branch, inside) for branch in av[1]):
                return True
            elif op in (c.ASSERT, c.ASSERT_NOT) and walk(av[1], inside):
                return True
            elif op is c.ATOMIC_GROUP and walk(av, inside):
                return True
        return False

    try:
        return walk(_parser.parse(pattern), False)
    except Exception:  # not a pattern Python's parser takes (or nested beyond its recursion): nothing to say
        return False
