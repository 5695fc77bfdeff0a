"""Conversations -> token ids + labels, through the runtime's own chat template (llm.templates).

The persona's system prompt goes first, exactly as the runtime adds it at inference. Labels are -100
except on the assistant replies and their end-of-turn marker. Over-long examples are shortened from the
prompt side: oldest turns first, then the head of the last user message (the runtime drops the same
things when a chat outgrows its context); a reply's end is never cut. An example whose last reply alone
does not fit is skipped and counted.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rolechat.finetune.data import Conversation
from rolechat.llm.templates import ChatFormat, SupervisedText, TemplateError, render_supervised, tokenize_supervised

__all__ = ["Example", "EncodeStats", "encode_conversations", "show_example", "with_system"]

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


def _encode(tokenizer: Any, items: Sequence[SupervisedText]) -> list[tuple[list[int], list[int]]]:
    return [tokenize_supervised(tokenizer, item) for item in items]


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
) -> list[tuple[list[int], list[int]]] | None:
    """Encode, shortening from the prompt side until every text fits; None when even the last reply can't."""
    system = messages[:1] if messages[0]["role"] == "system" else []
    turns = messages[len(system) :]
    encoded = _encode(tokenizer, render_supervised(tokenizer, fmt, system + turns, last_turn_only=last_turn_only))
    if all(len(ids) <= max_length for ids, _ in encoded):
        return encoded
    stats.truncated += 1
    while len(turns) > 2 and any(len(ids) > max_length for ids, _ in encoded):
        turns = turns[2:]  # drop the oldest user/assistant pair
        stats.turns_dropped += 1
        encoded = _encode(tokenizer, render_supervised(tokenizer, fmt, system + turns, last_turn_only=last_turn_only))
    if all(len(ids) <= max_length for ids, _ in encoded):
        return encoded
    # One exchange left and still too long: keep the end of the user message (where the question is).
    user, reply = dict(turns[0]), turns[1]

    def longest(content: str) -> int:
        items = render_supervised(tokenizer, fmt, system + [{**user, "content": content}, reply])
        nonlocal encoded
        encoded = _encode(tokenizer, items)
        return max(len(ids) for ids, _ in encoded)

    if longest("") > max_length:
        return None
    content = user["content"]
    over = (
        max(len(ids) for ids, _ in _encode(tokenizer, render_supervised(tokenizer, fmt, system + [user, reply])))
        - max_length
    )
    per_char = max(len(tokenizer(content, add_special_tokens=False)["input_ids"]) / max(len(content), 1), 0.1)
    while over > 0 and content:
        content = content[min(len(content), int(over / per_char) + 1) :]
        over = longest(content) - max_length
    return encoded if over <= 0 else None


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
            encoded = _fit(tokenizer, fmt, with_system(conv, system), max_length, last_turn_only, stats)
        except TemplateError as exc:
            stats.template_errors += 1
            log.warning("record %d (line %d) cannot be rendered: %s", conv.record, conv.line, exc)
            continue
        if encoded is None:
            stats.skipped_too_long += 1
            continue
        for ids, labels in encoded:
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
