"""Chats -> token ids, for inference AND training: the one place rendered conversations become ids.

- `encode_prompt`: the ids the model sees before it answers. `Runtime.encode` feeds exactly these (the
  conversation layer has fitted the chat to the context; the runtime only counts and generates).
- `encode_turns`: for each assistant reply, the prompt ids before it (`encode_prompt` of the history) and the
  reply's own ids (the reply as plain text, then the end-of-turn marker). Training concatenates them
  (`supervised_rows`), so a supervised reply always follows exactly the ids inference feeds the model: a
  reply that starts with a newline is never merged with the prompt's last newline into one BPE token.
  `check_row` verifies that for any training row (the dry-run lint's parity count).
- Message text (user, system, card, lorebook, document and assistant text alike) is plain text: a string
  such as `<|im_end|>` or `<think>` inside a message is encoded as ordinary characters; only the template's
  own markers become control tokens. One exception: an assistant message's own think block
  (`<think>…</think>`, what a thinking model wrote) is left to the template, which drops it from the
  history as Qwen3's templates do. Text holding no such string is tokenized exactly as
  `tokenizer(render_prompt(...))` always did, so adapters trained before keep their ids.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rolechat.llm.templates import ChatFormat, TemplateError, check_messages, render_prompt

__all__ = [
    "Row",
    "Turn",
    "check_row",
    "control_tokens",
    "encode_prompt",
    "encode_text",
    "encode_turns",
    "supervised_rows",
]

Message = Mapping[str, str]

# Added tokens that are not flagged special but are markup all the same (Qwen's <think>, <tool_call>,
# <|fim_prefix|>): user text must not produce them either. Plain-word added tokens (vocabulary extensions)
# are left alone.
_MARKUP = re.compile(r"<[^<>\s]+>|\[[^\[\]\s]+\]")


@dataclass(frozen=True)
class _Controls:
    size: int
    strings: tuple[str, ...]
    ids: frozenset[int]
    pattern: re.Pattern | None


# Left as tokens in assistant messages: the model's own reasoning, which thinking templates strip from history.
THINK_TAGS = frozenset({"<think>", "</think>"})

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _controls(tokenizer: Any) -> _Controls:
    size = len(tokenizer)
    try:
        cached = _CACHE.get(tokenizer)
    except TypeError:  # not weak-referenceable
        cached = None
    if cached is not None and cached.size == size:
        return cached
    strings = set(getattr(tokenizer, "all_special_tokens", None) or ())
    for token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        content = getattr(token, "content", str(token))
        if getattr(token, "special", False) or _MARKUP.fullmatch(content):
            strings.add(content)
    strings.discard("")
    ordered = tuple(sorted(strings, key=len, reverse=True))  # longest first: the tokenizer's own preference
    ids = set()
    for s in ordered:
        tid = tokenizer.convert_tokens_to_ids(s)
        if isinstance(tid, int) and tid >= 0 and tid != tokenizer.unk_token_id:
            ids.add(tid)
    pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
    found = _Controls(size, ordered, frozenset(ids), pattern)
    try:
        _CACHE[tokenizer] = found
    except TypeError:
        pass
    return found


def control_tokens(tokenizer: Any) -> frozenset[int]:
    """Ids of the tokenizer's control tokens (special tokens, and markup-like added tokens such as <think>)."""
    return _controls(tokenizer).ids


def _ids(tokenizer: Any, text: str, **kwargs: Any) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False, **kwargs)["input_ids"]) if text else []


def _literal(tokenizer: Any, text: str, controls: _Controls) -> list[int]:
    """A control-token string as ordinary characters."""
    ids = _ids(tokenizer, text, split_special_tokens=True)
    if controls.ids.isdisjoint(ids):
        return ids
    # split_special_tokens leaves non-special added tokens (<think>) whole: take the first character apart.
    return _ids(tokenizer, text[0], split_special_tokens=True) + _literal(tokenizer, text[1:], controls)


class _Shield:
    """Replaces control-token strings in message text by numbered placeholders before the template runs, and
    encodes the rendered text with each placeholder turned back into its string as plain characters."""

    def __init__(self, tokenizer: Any, texts: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.controls = _controls(tokenizer)
        self.literals: list[str] = []
        self.texts = texts
        self._mark = ""

    @property
    def mark(self) -> str:
        """A private-use character that no message holds, to number the placeholders with."""
        if not self._mark:
            joined = "".join(self.texts)
            self._mark = next(chr(c) for c in range(0xE000, 0xF900) if chr(c) not in joined)
        return self._mark

    def protect(self, text: str, keep: Collection[str] = ()) -> str:
        if self.controls.pattern is None or not self.controls.pattern.search(text):
            return text

        def hide(match: re.Match) -> str:
            if match.group(0) in keep:
                return match.group(0)
            self.literals.append(match.group(0))
            return f"{self.mark}{len(self.literals) - 1}{self.mark}"

        return self.controls.pattern.sub(hide, text)

    def encode(self, text: str) -> list[int]:
        if not self.literals:
            return _ids(self.tokenizer, text)
        mark = re.escape(self.mark)
        ids: list[int] = []
        for i, part in enumerate(re.split(f"{mark}(\\d+){mark}", text)):
            if i % 2:
                ids += _literal(self.tokenizer, self.literals[int(part)], self.controls)
            else:
                ids += _ids(self.tokenizer, part)
        return ids


def encode_text(tokenizer: Any, text: str, role: str = "user") -> list[int]:
    """`text` as plain text: control-token strings in it become ordinary characters (except an assistant
    text's think tags)."""
    shield = _Shield(tokenizer, [text])
    return shield.encode(shield.protect(text, THINK_TAGS if role == "assistant" else ()))


def encode_prompt(
    tokenizer: Any,
    fmt: ChatFormat,
    messages: Sequence[Message],
    *,
    enable_thinking: bool = False,
    add_generation_prompt: bool = True,
) -> list[int]:
    """The ids the model sees before it answers: `render_prompt`, with every message's text as plain text."""
    msgs = check_messages(messages)
    shield = _Shield(tokenizer, [m["content"] for m in msgs])
    protected = [
        {**m, "content": shield.protect(m["content"], THINK_TAGS if m["role"] == "assistant" else ())} for m in msgs
    ]
    text = render_prompt(
        tokenizer, fmt, protected, add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking
    )
    return shield.encode(text)


@dataclass(frozen=True)
class Turn:
    """One assistant reply of a conversation: `prompt` is what inference feeds the model before it (the
    history up to message `index`), `reply` the reply's ids followed by the end-of-turn marker."""

    index: int
    prompt: list[int]
    reply: list[int]


def encode_turns(
    tokenizer: Any,
    fmt: ChatFormat,
    messages: Sequence[Message],
    *,
    enable_thinking: bool = False,
    last_only: bool = False,
) -> list[Turn]:
    """Per assistant reply (only the last one with `last_only`): the inference prompt's ids, and the reply +
    end-of-turn ids."""
    msgs = check_messages(messages)
    replies = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
    if not replies:
        raise TemplateError("conversation has no assistant reply to learn from")
    for i in replies:
        if not msgs[i]["content"].strip():
            raise TemplateError(f"message {i}: empty assistant reply")
        if i == 0 or msgs[i - 1]["role"] == "assistant":
            raise TemplateError(f"message {i}: an assistant reply must follow a user or system message")
    eot = _ids(tokenizer, fmt.eot)
    return [
        Turn(
            k,
            encode_prompt(tokenizer, fmt, msgs[:k], enable_thinking=enable_thinking),
            encode_text(tokenizer, msgs[k]["content"], "assistant") + eot,
        )
        for k in (replies[-1:] if last_only else replies)
    ]


@dataclass
class Row:
    """One training sequence: ids, labels (-100 off the supervised replies) and the supervised replies'
    message indices, in order."""

    input_ids: list[int]
    labels: list[int]
    turns: list[int]


def supervised_rows(turns: Sequence[Turn], supervised: Collection[int] | None = None) -> list[Row]:
    """Training rows for one conversation's turns; `supervised`: the message indices that carry loss (all).

    Turns share a row while each prompt extends the row so far (ChatML: the history is the earlier prompt,
    reply and end of turn, token for token). Where it does not (Qwen3 drops earlier think blocks; a reply
    starting with a newline merges with the template's newline once it is history) the next reply starts a
    new row holding its full inference prompt.
    """
    rows: list[Row] = []
    row: Row | None = None
    for turn in turns:
        keep = supervised is None or turn.index in supervised
        if row is not None and turn.prompt[: len(row.input_ids)] == row.input_ids:
            extra = turn.prompt[len(row.input_ids) :]
            row.input_ids += extra
            row.labels += [-100] * len(extra)
        else:
            row = Row(list(turn.prompt), [-100] * len(turn.prompt), [])
            rows.append(row)
        row.input_ids += turn.reply
        row.labels += list(turn.reply) if keep else [-100] * len(turn.reply)
        if keep:
            row.turns.append(turn.index)
    return [r for r in rows if r.turns]


def _spans(labels: Sequence[int]) -> list[tuple[int, int]]:
    out, start = [], None
    for i, label in enumerate([*labels, -100]):
        if label != -100 and start is None:
            start = i
        elif label == -100 and start is not None:
            out.append((start, i))
            start = None
    return out


def _show(tokenizer: Any, ids: Sequence[int]) -> str:
    return " ".join(repr(t) for t in tokenizer.convert_ids_to_tokens(list(ids))) or "(nothing)"


def check_row(
    tokenizer: Any,
    fmt: ChatFormat,
    messages: Sequence[Message],
    input_ids: Sequence[int],
    labels: Sequence[int],
    turns: Sequence[int],
    *,
    enable_thinking: bool = False,
) -> str | None:
    """Why this training row would train differently from inference, or None when it is faithful.

    Faithful: before the supervised stretch of reply `turns[j]` the ids are exactly `encode_prompt` of the
    history before it (what `Runtime.encode` feeds the model), and the stretch is exactly the reply as plain
    text plus the end-of-turn marker.
    """
    msgs = check_messages(messages)
    spans = _spans(labels)
    if len(spans) != len(turns):
        return f"{len(spans)} supervised stretches for {len(turns)} replies"
    eot = _ids(tokenizer, fmt.eot)
    for (start, end), k in zip(spans, turns):
        prompt = encode_prompt(tokenizer, fmt, msgs[:k], enable_thinking=enable_thinking)
        have = list(input_ids[:start])
        if have != prompt:
            at = next((i for i, (a, b) in enumerate(zip(have, prompt)) if a != b), min(len(have), len(prompt)))
            return (
                f"reply {k}: the training prompt differs from the inference prompt at token {at}: training has "
                f"{_show(tokenizer, have[at : at + 3])}, inference {_show(tokenizer, prompt[at : at + 3])}"
            )
        reply = encode_text(tokenizer, msgs[k]["content"], "assistant") + eot
        if list(input_ids[start:end]) != reply:
            return (
                f"reply {k}: the supervised ids are {_show(tokenizer, input_ids[start : start + 4])}…, but the "
                f"reply plus end of turn is {_show(tokenizer, reply[:4])}…"
            )
    return None
