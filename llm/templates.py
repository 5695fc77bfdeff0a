"""Chat formatting: the one place conversations become text, for inference AND training.

The tokenizer's own chat template is used whenever it has one (Qwen2/Qwen3, GLM-4 "-hf" checkpoints, the
demo model). A small registry supplies templates for tokenizers that ship none (legacy ChatGLM3, bare
ChatML tokenizers). `render_prompt` is what the runtime feeds the model; `render_supervised` produces the
training text for the same conversation, built from the very same prompt strings, so training and
inference are byte-identical up to the reply. The reply is followed by the template's end-of-turn marker
(e.g. `<|im_end|>`), which is supervised so the model learns to stop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "TEMPLATES",
    "ChatFormat",
    "SupervisedText",
    "TemplateError",
    "resolve_format",
    "render_prompt",
    "render_supervised",
    "tokenize_supervised",
    "stop_token_ids",
]

log = logging.getLogger(__name__)

Message = Mapping[str, str]

CHATML = (
    "{%- for m in messages -%}"
    "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and not enable_thinking -%}{{ '<think>\\n\\n</think>\\n\\n' }}{%- endif -%}"
    "{%- endif -%}"
)

# ChatGLM3 (THUDM/chatglm3-6b): role tokens, a newline, the text; the model answers after <|assistant|>.
CHATGLM3 = (
    "[gMASK]sop"
    "{%- for m in messages -%}{{ '<|' + m['role'] + '|>\\n ' + m['content'] }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>' }}{%- endif -%}"
)

# GLM-4 chat layout, for GLM-4 tokenizers that lack a template.
GLM4 = (
    "[gMASK]<sop>"
    "{%- for m in messages -%}{{ '<|' + m['role'] + '|>\\n' + m['content'] }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\\n' }}{%- endif -%}"
)


@dataclass(frozen=True)
class _Entry:
    template: str
    eot: str | None  # None: the tokenizer's eos token ends a reply
    stops: tuple[str, ...]


TEMPLATES: dict[str, _Entry] = {
    "chatml": _Entry(CHATML, "<|im_end|>", ("<|im_end|>", "<|endoftext|>")),
    "chatglm3": _Entry(CHATGLM3, None, ("<|user|>", "<|observation|>")),
    "glm4": _Entry(GLM4, None, ("<|user|>", "<|observation|>", "<|endoftext|>")),
}


class TemplateError(ValueError):
    """A conversation cannot be rendered (unknown template, bad roles, empty reply...)."""


@dataclass(frozen=True)
class ChatFormat:
    """How one tokenizer's conversations are written down and where a reply ends.

    `chat_template` None means "the tokenizer's own"; `eot` is the end-of-turn text appended after each
    reply in training and expected at inference; `stop_strings` end generation.
    """

    name: str
    chat_template: str | None
    eot: str
    stop_strings: tuple[str, ...] = ()


@dataclass
class SupervisedText:
    """A rendered training conversation and the character spans (reply + end-of-turn) that carry loss."""

    text: str
    spans: list[tuple[int, int]] = field(default_factory=list)


_PROBE = "\u2063PROBE\u2063"


def _derive_eot(tokenizer: Any, template: str | None) -> str:
    """The special token the template writes right after a reply (`<|im_end|>`, GLM's `<|user|>`), else eos."""
    msgs = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": _PROBE},
        {"role": "user", "content": "again"},
    ]
    try:
        text = tokenizer.apply_chat_template(msgs, tokenize=False, chat_template=template)
    except Exception as exc:  # a template may insist on other shapes; eos is a safe end of turn then
        log.debug("could not probe end-of-turn: %s", exc)
        text = ""
    tail = text.split(_PROBE, 1)[1].lstrip() if _PROBE in text else ""
    for special in sorted(tokenizer.all_special_tokens, key=len, reverse=True):
        if special and tail.startswith(special):
            return special
    if not tokenizer.eos_token:
        raise TemplateError("the chat template writes nothing after a reply and the tokenizer has no eos token")
    return tokenizer.eos_token


def _guess_registry_name(tokenizer: Any) -> str:
    vocab = tokenizer.get_vocab()
    if "<|im_start|>" in vocab:
        return "chatml"
    if "<|user|>" in vocab:
        return "glm4" if "<sop>" in vocab else "chatglm3"
    log.warning("tokenizer has no chat template and no known special tokens; using ChatML as plain text")
    return "chatml"


def resolve_format(tokenizer: Any, template: str = "auto") -> ChatFormat:
    """Pick the chat format: "auto" = the tokenizer's own template, else a registry guess; or a registry name."""
    if template == "auto" and getattr(tokenizer, "chat_template", None):
        eot = _derive_eot(tokenizer, None)
        stops = tuple(dict.fromkeys(s for s in (eot, tokenizer.eos_token) if s))
        return ChatFormat("tokenizer", None, eot, stops)
    name = _guess_registry_name(tokenizer) if template == "auto" else template
    if name not in TEMPLATES:
        raise TemplateError(f"unknown chat template {name!r}; known: auto, {', '.join(TEMPLATES)}")
    entry = TEMPLATES[name]
    eot = entry.eot or tokenizer.eos_token
    if not eot:
        raise TemplateError(f"template {name!r} ends replies with the eos token, but the tokenizer has none")
    stops = tuple(dict.fromkeys((eot, *entry.stops)))
    return ChatFormat(name, entry.template, eot, stops)


def _check(messages: Sequence[Message]) -> list[dict[str, str]]:
    out = []
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if role not in ("system", "user", "assistant"):
            raise TemplateError(f"message {i}: role must be system, user or assistant, got {role!r}")
        if not isinstance(content, str):
            raise TemplateError(f"message {i} ({role}): content must be a string, got {type(content).__name__}")
        if role == "system" and i != 0:
            raise TemplateError(f"message {i}: a system message may only come first")
        out.append({"role": role, "content": content})
    return out


def render_prompt(
    tokenizer: Any,
    fmt: ChatFormat,
    messages: Sequence[Message],
    *,
    add_generation_prompt: bool = True,
    enable_thinking: bool = False,
) -> str:
    """The exact text the model sees before it answers (generation prompt included)."""
    return tokenizer.apply_chat_template(
        _check(messages),
        tokenize=False,
        add_generation_prompt=add_generation_prompt,
        chat_template=fmt.chat_template,
        enable_thinking=enable_thinking,
    )


def render_supervised(
    tokenizer: Any,
    fmt: ChatFormat,
    messages: Sequence[Message],
    *,
    enable_thinking: bool = False,
    last_turn_only: bool = False,
) -> list[SupervisedText]:
    """Training texts for one conversation, each assistant reply written after its inference prompt.

    The prompt before reply k is `render_prompt(messages[:k])`, so it is byte-identical to what the runtime
    renders. Usually one text covers all turns; templates whose history rendering differs from their
    generation prompt (Qwen3 strips earlier thinking blocks) give one text per supervised turn instead.
    """
    msgs = _check(messages)
    turns = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
    if not turns:
        raise TemplateError("conversation has no assistant reply to learn from")
    for i in turns:
        if not msgs[i]["content"].strip():
            raise TemplateError(f"message {i}: empty assistant reply")
        if i == 0 or msgs[i - 1]["role"] == "assistant":
            raise TemplateError(f"message {i}: an assistant reply must follow a user or system message")
    supervised = turns[-1:] if last_turn_only else turns

    def prompt(k: int) -> str:
        return render_prompt(tokenizer, fmt, msgs[:k], enable_thinking=enable_thinking)

    whole = SupervisedText("")
    for k in turns:
        p = prompt(k)
        if not p.startswith(whole.text):
            return [_single(prompt(k), msgs[k]["content"], fmt.eot) for k in supervised]
        reply = msgs[k]["content"] + fmt.eot
        start = len(p)
        whole.text = p + reply
        if k in supervised:
            whole.spans.append((start, start + len(reply)))
    return [whole]


def _single(prompt: str, reply: str, eot: str) -> SupervisedText:
    text = prompt + reply + eot
    return SupervisedText(text, [(len(prompt), len(text))])


def tokenize_supervised(tokenizer: Any, item: SupervisedText) -> tuple[list[int], list[int]]:
    """Token ids and labels: labels are the ids inside supervised spans and -100 everywhere else."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(item.text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        labels = [
            tid if any(s <= start < e for s, e in item.spans) else -100
            for tid, (start, _end) in zip(ids, enc["offset_mapping"])
        ]
        return ids, labels
    # Slow tokenizers have no offsets: tokenize piece by piece at span boundaries.
    ids, labels, pos = [], [], 0
    for s, e in sorted(item.spans) + [(len(item.text), len(item.text))]:
        for text, keep in ((item.text[pos:s], False), (item.text[s:e], True)):
            if text:
                piece = tokenizer(text, add_special_tokens=False)["input_ids"]
                ids += piece
                labels += piece if keep else [-100] * len(piece)
        pos = e
    return ids, labels


def stop_token_ids(tokenizer: Any, fmt: ChatFormat, generation_config: Any = None) -> list[int]:
    """Token ids that end a reply: single-token stop strings plus the model's eos ids."""
    ids: list[int] = []
    for s in fmt.stop_strings:
        tid = tokenizer.convert_tokens_to_ids(s)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.append(tid)
    eos = getattr(generation_config, "eos_token_id", None)
    for tid in ([eos] if isinstance(eos, int) else list(eos or [])) + [tokenizer.eos_token_id]:
        if isinstance(tid, int):
            ids.append(tid)
    return list(dict.fromkeys(ids))
