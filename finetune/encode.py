"""Conversations -> token ids + labels, through the runtime's own encoding (llm.encoding).

The persona's system prompt goes first, exactly as the runtime adds it at inference. Each reply follows
exactly the ids the runtime feeds the model for that history (`encode_turns`), and every example is
checked against them (`check_row`): `stats.parity` counts the ones that would not be, which the dry-run
lint reports. Labels are -100 except on the assistant replies and their end-of-turn marker. Over-long
examples are shortened from the prompt side: oldest turns first, then the head of the last user message
(the runtime drops the same things when a chat outgrows its context); a reply's end is never cut. An
example whose last reply alone does not fit is skipped and counted.
"""

from __future__ import annotations

import bisect
import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rolechat.finetune.data import Conversation
from rolechat.llm.encoding import Row, check_row, encode_turns, supervised_rows
from rolechat.llm.templates import ChatFormat, TemplateError

__all__ = ["Example", "EncodeStats", "build_rows", "encode_conversations", "show_example", "with_system"]

log = logging.getLogger(__name__)


@dataclass
class Example:
    """One training row."""

    input_ids: list[int]
    labels: list[int]
    record: int = 0


@dataclass
class EncodeStats:
    """What encoding did to the data (the body of `rolechat train --dry-run`)."""

    conversations: int = 0
    examples: int = 0
    truncated: int = 0
    turns_dropped: int = 0
    skipped_too_long: int = 0
    template_errors: int = 0
    eot_lost: int = 0
    parity: int = 0
    parity_first: list[str] = field(default_factory=list)
    tokens: int = 0
    supervised_tokens: int = 0
    lengths: list[int] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        lengths = sorted(self.lengths)

        def pct(p: float) -> int:
            return lengths[min(len(lengths) - 1, int(p * len(lengths)))] if lengths else 0

        return {
            "conversations": self.conversations,
            "examples": self.examples,
            "truncated": self.truncated,
            "turns_dropped": self.turns_dropped,
            "skipped_too_long": self.skipped_too_long,
            "template_errors": self.template_errors,
            "eot_lost": self.eot_lost,
            "parity": self.parity,
            "parity_first": list(self.parity_first),
            "tokens": self.tokens,
            "supervised_tokens": self.supervised_tokens,
            "supervised_ratio": round(self.supervised_tokens / self.tokens, 4) if self.tokens else 0.0,
            "length": {
                "min": lengths[0] if lengths else 0,
                "p50": pct(0.5),
                "p90": pct(0.9),
                "p99": pct(0.99),
                "max": lengths[-1] if lengths else 0,
                "mean": round(statistics.fmean(lengths), 1) if lengths else 0.0,
            },
        }


def with_system(conv: Conversation, system: str) -> list[dict[str, str]]:
    """The messages as the runtime will see them for this persona: its system prompt first."""
    return ([{"role": "system", "content": system}] if system else []) + [dict(m) for m in conv.messages]


def build_rows(
    tokenizer: Any, fmt: ChatFormat, messages: list[dict[str, str]], last_turn_only: bool = False
) -> list[Row]:
    """The training rows of one conversation: each reply after its inference prompt's exact ids."""
    turns = encode_turns(tokenizer, fmt, messages, last_only=last_turn_only)
    return supervised_rows(turns)


def _ends_with_eot(labels: list[int], eot_ids: list[int]) -> bool:
    sup = [t for t in labels if t != -100]
    return bool(eot_ids) and sup[-len(eot_ids) :] == eot_ids


def _fit(
    tokenizer: Any,
    fmt: ChatFormat,
    messages: list[dict[str, str]],
    max_length: int,
    last_turn_only: bool,
    stats: EncodeStats,
) -> tuple[list[Row], list[dict[str, str]]] | None:
    """Encode, shortening from the prompt side until every row fits; None when even the last reply can't.
    Returns the rows and the messages they were built from."""
    system = messages[:1] if messages[0]["role"] == "system" else []
    turns = messages[len(system) :]

    def longest(rows: list[Row]) -> int:
        return max((len(r.input_ids) for r in rows), default=0)

    def last_fits(pairs: int) -> bool:  # the row of the last reply holds the whole history: the longest one
        return longest(build_rows(tokenizer, fmt, system + turns[2 * pairs :], True)) <= max_length

    # The fewest oldest user/assistant pairs to drop: bisected on the last reply's row (a few encodes of one
    # prompt), then confirmed on every row, so a long conversation is not re-encoded turn by turn per pair.
    most = max(0, (len(turns) - 2) // 2)
    dropped = bisect.bisect_left(range(most + 1), True, key=last_fits)
    rows = build_rows(tokenizer, fmt, system + turns[2 * min(dropped, most) :], last_turn_only)
    while dropped < most and longest(rows) > max_length:
        dropped += 1
        rows = build_rows(tokenizer, fmt, system + turns[2 * dropped :], last_turn_only)
    dropped = min(dropped, most)
    turns = turns[2 * dropped :]
    if dropped or longest(rows) > max_length:
        stats.truncated += 1
        stats.turns_dropped += dropped
    if longest(rows) <= max_length:
        return rows, system + turns
    # One exchange left and still too long: keep the end of the user message (where the question is).
    user, reply = dict(turns[0]), turns[1]

    def attempt(content: str) -> int:
        nonlocal rows, turns
        turns = [{**user, "content": content}, reply]
        rows = build_rows(tokenizer, fmt, system + turns)
        return longest(rows)

    content = user["content"]
    over = longest(rows) - max_length
    if attempt("") > max_length:
        return None
    per_char = max(len(tokenizer(content, add_special_tokens=False)["input_ids"]) / max(len(content), 1), 0.1)
    while over > 0 and content:
        content = content[min(len(content), int(over / per_char) + 1) :]
        over = attempt(content) - max_length
    return (rows, system + turns) if over <= 0 else None


def encode_conversations(
    tokenizer: Any,
    fmt: ChatFormat,
    conversations: Sequence[Conversation],
    system: str,
    *,
    max_length: int,
    last_turn_only: bool = False,
) -> tuple[list[Example], EncodeStats]:
    """Tokenized, label-masked, length-capped examples for `conversations` under the persona's `system`."""
    stats = EncodeStats()
    eot_ids = tokenizer(fmt.eot, add_special_tokens=False)["input_ids"]
    examples: list[Example] = []
    for conv in conversations:
        stats.conversations += 1
        try:
            fitted = _fit(tokenizer, fmt, with_system(conv, system), max_length, last_turn_only, stats)
        except TemplateError as exc:
            stats.template_errors += 1
            log.warning("record %d (line %d) cannot be rendered: %s", conv.record, conv.line, exc)
            continue
        if fitted is None:
            stats.skipped_too_long += 1
            continue
        rows, messages = fitted
        for row in rows:
            ids, labels = row.input_ids, row.labels
            problem = check_row(tokenizer, fmt, messages, ids, labels, row.turns)
            if problem:
                stats.parity += 1
                if len(stats.parity_first) < 3:
                    stats.parity_first.append(f"record {conv.record} (line {conv.line}): {problem}")
            if not _ends_with_eot(labels, eot_ids):
                stats.eot_lost += 1
            stats.examples += 1
            stats.tokens += len(ids)
            stats.supervised_tokens += sum(t != -100 for t in labels)
            stats.lengths.append(len(ids))
            examples.append(Example(ids, labels, conv.record))
    return examples, stats


def show_example(tokenizer: Any, example: Example, open_mark: str = "⟦", close_mark: str = "⟧") -> str:
    """The example's text with the supervised (loss-carrying) stretches wrapped in marks."""
    out: list[str] = []
    run: list[int] = []
    supervised = None
    for tid, label in zip(example.input_ids + [None], example.labels + [None]):
        flag = label is not None and label != -100
        if tid is None or (supervised is not None and flag != supervised):
            text = tokenizer.decode(run, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            out.append(f"{open_mark}{text}{close_mark}" if supervised else text)
            run = []
        if tid is not None:
            run.append(tid)
            supervised = flag
    return "".join(out)
