"""Prompt assembly: the pieces of one turn, each within its budget, packed so the whole prompt fits the context.

A turn's prompt is built from pieces (`PromptPart`s) that land in four places:

    system message   persona/card system prompt, lore "before", card definition, lore "after", user persona,
                     character memory            (one message, pieces joined by blank lines)
    example turns    the card's example dialogues, one block (several messages) per piece
    history          earlier turns, one message per piece
    last user turn   the new message (or the knowledge-base answer prompt with its passages), then the
                     post-history instructions

`Assembly.fit` first applies each kind's own budget (`ConversationConfig`), then measures the rendered prompt
with the runtime's own tokenizer and template and, while it is longer than the context allows, drops pieces
in a fixed order: example blocks (last first), history (oldest first), the summary of older turns, knowledge
passages (worst-ranked first), character memory, triggered lore, always-on lore (last in insertion order first).
The system prompt, the card, the user persona, the message and the post-history instructions are never dropped;
when they alone do not fit, `ContextOverflow` says by how much.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Assembly", "ContextOverflow", "Piece", "PromptPart", "DROP_ORDER", "NOT_SENT"]

# Kinds a full context drops, first dropped first (the reverse of their priority).
DROP_ORDER = ("example", "history", "summary", "knowledge", "memory", "lore-triggered", "lore-constant")
MESSAGE_OVERHEAD = 5  # tokens a chat template adds per message (ChatML: <|im_start|>role\n ... <|im_end|>\n)
CONTIGUOUS = ("example", "history")  # kinds kept as an unbroken run (no gaps in a conversation)
NOT_SENT = ("question", "notice", "lore-skipped")  # kinds shown in "what the model saw" that never reach the model


class ContextOverflow(ValueError):
    """The parts that are never dropped (system prompt, card, message) do not fit the context on their own."""


@dataclass
class PromptPart:
    """One piece of the prompt, for the "what the model saw" view.

    kind: system, card, user-persona, lore-constant, lore-triggered, authors-note, memory, knowledge, example,
    history, message, depth-prompt (the card's character's note), post-history, summary (of older turns no
    longer sent) (and, never sent: question, the standalone question a knowledge base was searched with;
    lore-skipped, an entry the scan activated but left out, `why` saying why; notice, what the lorebook scan cut
    short, such as an entry turned off because its key pattern took too long). `source` names the lorebook a
    lore part came from; `why` says why it is there (the key that activated it, its order and position) or why
    it is not.
    """

    kind: str
    label: str
    tokens: int
    text: str
    included: bool = True  # False: over its budget or the context, not sent
    source: str = ""
    why: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "tokens": self.tokens,
            "text": self.text,
            "included": self.included,
            "source": self.source,
            "why": self.why,
        }


@dataclass
class Piece:
    """A part plus where it goes: `place` is system, examples (the example-dialogue section closing the system
    message), history, message, depth (injected into the chat: `payload` is (depth, role, group)) or notice
    (shown, never sent); `messages` are the turns a history turn contributes; `budget_key` names its
    ConversationConfig budget."""

    part: PromptPart
    place: str
    messages: list[dict[str, str]] = field(default_factory=list)
    budget_key: str | None = None
    rank: int = 0  # order inside its kind for dropping: pieces with a higher rank go first
    payload: Any = None  # what the message builder needs besides the text (a knowledge passage's Document)

    @property
    def included(self) -> bool:
        return self.part.included


MessageBuilder = Callable[[Sequence[Piece]], list[dict[str, str]]]


class Assembly:
    """The pieces of one turn, in prompt order, and the fitting of them into the context budget."""

    def __init__(self, pieces: list[Piece], build: MessageBuilder) -> None:
        self.pieces = pieces
        self._build = build

    def messages(self) -> list[dict[str, str]]:
        return self._build([p for p in self.pieces if p.included])

    def apply_budgets(self, budgets: dict[str, int]) -> None:
        """Each budgeted kind keeps its pieces, in priority order (lowest rank first), while they fit its budget.
        History and example blocks stop at the first that does not fit (no gaps); other kinds skip it."""
        for key, limit in budgets.items():
            if not limit:
                continue
            used = 0
            full = False
            for piece in sorted((p for p in self.pieces if p.budget_key == key), key=lambda p: p.rank):
                if full or used + piece.part.tokens > limit:
                    piece.part.included = False
                    full = full or piece.part.kind in CONTIGUOUS
                    continue
                used += piece.part.tokens

    def _victims(self) -> list[Piece]:
        order = {kind: i for i, kind in enumerate(DROP_ORDER)}
        droppable = [p for p in self.pieces if p.included and p.part.kind in order]
        return sorted(droppable, key=lambda p: (order[p.part.kind], -p.rank))

    def fit(self, measure: Callable[[list[dict[str, str]]], int], budget: int) -> int:
        """Drop pieces (DROP_ORDER) until `measure(messages) <= budget`; returns the prompt's token count.

        `measure` renders and tokenizes with the runtime's template. It is called a few times, not once per
        piece: each round drops as many pieces as the overflow needs, estimated from their token counts plus
        their share of the template's overhead, and the pieces dropped last are then put back while the
        prompt still fits (the estimate may overshoot by a piece or two)."""
        dropped: list[Piece] = []
        kept = sum(p.part.tokens for p in self.pieces if p.included and p.part.kind not in DROP_ORDER)
        if kept > 2 * budget:  # what is never dropped is twice the room: no need to render it to know
            raise ContextOverflow(
                f"the system prompt, the character's card and the message need about {kept} tokens, but the context "
                f"leaves room for {budget} (llm.context_length minus the reply's max_new_tokens): shorten the "
                "message or the card, lower max_new_tokens, or raise llm.context_length if the model allows"
            )
        # a long history would be rendered and tokenized whole just to learn that most of it goes: drop on an
        # estimate first (content tokens plus a few per message for the template's role markers)
        messages = self.messages()
        estimate = sum(p.part.tokens for p in self.pieces if p.included) + MESSAGE_OVERHEAD * len(messages)
        for piece in self._victims():
            if estimate <= budget:
                break
            piece.part.included = False
            dropped.append(piece)
            estimate -= piece.part.tokens + (MESSAGE_OVERHEAD * len(piece.messages) if piece.place != "system" else 1)
        total = measure(self.messages())
        while total > budget:
            victims = self._victims()
            if not victims:
                raise ContextOverflow(
                    f"the system prompt, the character's card and the message need {total} tokens, but the context "
                    f"leaves room for {budget} (llm.context_length minus the reply's max_new_tokens): shorten the "
                    "message or the card, lower max_new_tokens, or raise llm.context_length if the model allows"
                )
            messages = self.messages()
            content = sum(p.part.tokens for p in self.pieces if p.included)
            overhead = max(total - content, 0) / max(len(messages), 1)
            over = total - budget
            for piece in victims:
                piece.part.included = False
                dropped.append(piece)
                over -= piece.part.tokens + (overhead * len(piece.messages) if piece.place != "system" else 1)
                if over <= 0:
                    break
            total = measure(self.messages())
        for piece in reversed(dropped):  # put back what the estimate dropped too many, highest priority first
            piece.part.included = True
            again = measure(self.messages())
            if again > budget:
                piece.part.included = False
                break
            total = again
        return total
