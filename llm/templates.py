"""Chat formatting: the one place conversations become text, for inference AND training.

The tokenizer's own chat template is used whenever it has one (Qwen2/Qwen3, GLM-4 "-hf" checkpoints, the
demo model). A small registry supplies templates for tokenizers that ship none (legacy ChatGLM3, bare
ChatML tokenizers). `resolve_format` says how one tokenizer writes chats and where a reply ends;
`render_prompt` is the text the model sees before it answers. Turning that text into token ids (message
text always as plain text, per-turn prompt and reply ids for training) is `llm.encoding`'s job.

Thinking-only templates (Qwen3-Thinking-2507: the generation prompt opens `<think>` and never closes it)
get the block closed, empty, after the generation prompt when thinking is off, as Qwen3's hybrid templates
do themselves; a persona reply is then trained and generated after `<think>\n\n</think>\n\n`, never inside
an open think block.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EMPTY_THINK",
    "TEMPLATES",
    "ChatFormat",
    "TemplateError",
    "check_messages",
    "resolve_format",
    "render_prompt",
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
    reply in training and expected at inference; `stop_strings` end generation. `think_close` is not empty
    for thinking-only templates: the text that closes the think block their generation prompt opens,
    written after the generation prompt whenever thinking is off.
    """

    name: str
    chat_template: str | None
    eot: str
    stop_strings: tuple[str, ...] = ()
    think_close: str = ""

    @property
    def thinking_only(self) -> bool:
        return bool(self.think_close)


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
        return ChatFormat("tokenizer", None, eot, stops, _think_close(tokenizer, None))
    name = _guess_registry_name(tokenizer) if template == "auto" else template
    if name not in TEMPLATES:
        raise TemplateError(f"unknown chat template {name!r}; known: auto, {', '.join(TEMPLATES)}")
    entry = TEMPLATES[name]
    eot = entry.eot or tokenizer.eos_token
    if not eot:
        raise TemplateError(f"template {name!r} ends replies with the eos token, but the tokenizer has none")
    stops = tuple(dict.fromkeys((eot, *entry.stops)))
    return ChatFormat(name, entry.template, eot, stops)


EMPTY_THINK = "<think>\n\n</think>\n\n"


def _think_close(tokenizer: Any, template: str | None) -> str:
    """'' unless the generation prompt (thinking off) leaves a think block open; then the text that closes it
    empty, so that the prompt ends with Qwen3's own empty block `<think>\n\n</think>\n\n`."""
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": _PROBE}],
            tokenize=False,
            add_generation_prompt=True,
            chat_template=template,
            enable_thinking=False,
        )
    except Exception as exc:  # the same templates fail _derive_eot's probe; nothing to close then
        log.debug("could not probe the generation prompt: %s", exc)
        return ""
    tail = text.split(_PROBE, 1)[-1]
    opened = tail.rfind("<think>")
    if opened < 0 or "</think>" in tail[opened:]:
        return ""
    tail = tail[opened:]
    if not EMPTY_THINK.startswith(tail):
        raise TemplateError(
            f"the chat template opens a think block for every reply ({tail!r}) and rolechat cannot close it "
            "empty; persona replies would be trained inside the model's reasoning. Use the model's non-thinking "
            "(Instruct) variant or set llm.template to a registry template"
        )
    return EMPTY_THINK[len(tail) :]


def check_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    """Plain {"role", "content"} copies of `messages`; TemplateError naming the message when one is malformed."""
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
    """The exact text the model sees before it answers (generation prompt included).

    With a thinking-only template and thinking off, the think block the generation prompt opens is closed
    empty (`fmt.think_close`), as Qwen3's hybrid templates write it themselves.
    """
    text = tokenizer.apply_chat_template(
        check_messages(messages),
        tokenize=False,
        add_generation_prompt=add_generation_prompt,
        chat_template=fmt.chat_template,
        enable_thinking=enable_thinking,
    )
    if add_generation_prompt and not enable_thinking:
        text += fmt.think_close
    return text


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
