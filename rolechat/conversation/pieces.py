"""The pieces of one turn: what a character card, its lorebook, the user persona, the history, a knowledge
base's passages and the new message each contribute to the prompt, as `Piece`s (a `PromptPart` with its token
count, plus where it goes), and how the pieces that are kept become the messages the runtime renders.

`Assembly` (assembly.py) decides which pieces are kept; the engine (engine.py) puts them together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rolechat.conversation.assembly import Piece, PromptPart

if TYPE_CHECKING:
    from rolechat.conversation.engine import UserPersona

__all__ = ["PieceMaker"]


class PieceMaker:
    """Makes the pieces of one turn, counting each with `count_tokens` (plain text, the runtime's tokenizer).

    `answer_template` is the knowledge-base answer prompt (`rag.prompt` or `rag.prompts.ANSWER_PROMPT`)."""

    def __init__(self, count_tokens: Callable[[str], int], answer_template: str, lore_limits: Any = None) -> None:
        self.count_tokens = count_tokens
        self.answer_template = answer_template
        self.lore_limits = lore_limits  # lorebook.ScanLimits; None: ConversationConfig's defaults

    def part(self, kind: str, label: str, text: str) -> PromptPart:
        return PromptPart(kind, label, self.count_tokens(text), text)

    def system(
        self, manifest: Any, card: Any, user: UserPersona, system: str, scan: list[str], memory: list[PromptPart]
    ) -> list[Piece]:
        """System prompt, caller's system text, lore before, card, lore after, user persona, memory.

        With a card, the pieces joined are exactly `card.system_prompt(character, user, before=..., after=...,
        user_description=...)`, the text training renders (the manifest's `system_prompt` is that text for the
        default user, so it is not added again); without one, the persona's system prompt as trained."""
        pieces: list[Piece] = []

        def macro(text: str | None) -> str:
            if card is None:  # no character: only {{user}} has a value (a trained prompt is sent as it is)
                return (text or "").replace("{{user}}", user.name)
            from rolechat.conversation.card import apply_macros

            return apply_macros(text or "", card, user.name)

        def add(kind: str, label: str, text: str) -> None:
            if text and text.strip():
                pieces.append(Piece(self.part(kind, label, macro(text.strip()).strip()), "system"))

        if card is not None:
            from rolechat.conversation.card import DEFAULT_SYSTEM_PROMPT

            head = card.system_prompt
            add(
                "system",
                "system prompt",
                head.replace("{{original}}", DEFAULT_SYSTEM_PROMPT) if head.strip() else DEFAULT_SYSTEM_PROMPT,
            )
        else:
            prompt = manifest.system_prompt if manifest else ""
            if prompt.strip():
                pieces.append(Piece(self.part("system", "system prompt", prompt), "system"))  # as trained
        add("system", "caller's system message", system)
        before, after = self.lore(card, scan, user, macro)
        pieces += before
        if card is not None:
            add("card", "description", card.description)
            if card.personality.strip():
                add("card", "personality", f"{{{{char}}}}的性格：{card.personality.strip()}")
            if card.scenario.strip():
                add("card", "scenario", f"场景：{card.scenario.strip()}")
        pieces += after
        if user.description:
            add("user-persona", f"user: {user.name}", f"关于{{{{user}}}}：{user.description}")
        for rank, part in enumerate(memory):
            pieces.append(Piece(part, "system", budget_key="memory", rank=rank))
        return pieces

    def lore(self, card: Any, scan: list[str], user: UserPersona, macro: Any) -> tuple[list[Piece], list[Piece]]:
        book = getattr(card, "character_book", None) if card is not None else None
        if book is None or not book.entries:
            return [], []
        # the book's own token_budget applies here; chat.lore_tokens in apply_budgets, so what it leaves out is
        # still listed (dropped) in what the model saw
        macro_keys = any("{{" in k or "<" in k for e in book.entries for k in (*e.keys, *e.secondary_keys))
        notices: list[Any] = []
        entries = book.activate(
            scan,
            self.count_tokens,
            None,
            substitute=macro if macro_keys else None,
            limits=self.lore_limits,
            notices=notices,
        )
        # always-on entries first (they win the budget when the context is full), insertion order inside each
        ordered = sorted(entries, key=lambda e: not e.constant)
        before: list[Piece] = []
        after: list[Piece] = []
        for rank, entry in enumerate(ordered):
            text = macro(entry.content).strip()
            if not text:
                continue
            kind = "lore-constant" if entry.constant else "lore-triggered"
            label = f"{'always-on' if entry.constant else 'triggered'}: {entry.label}"
            piece = Piece(self.part(kind, label, text), "system", budget_key="lore", rank=rank)
            (after if entry.position == "after_char" else before).append(piece)
        # what the scan cut short, for "what the model saw" only (place "notice": never sent, never dropped)
        after += [Piece(PromptPart("notice", "lorebook", 0, str(notice)), "notice") for notice in notices]
        return before, after

    def examples(self, card: Any, user: UserPersona) -> list[Piece]:
        if card is None or not (card.mes_example or "").strip():
            return []
        from rolechat.conversation.card import example_dialogues

        pieces = []
        for rank, block in enumerate(example_dialogues(card, user.name)):
            msgs = [{"role": m["role"], "content": m["content"]} for m in block if m.get("content")]
            if not msgs:
                continue
            text = "\n".join(f"{m['role']}: {m['content']}" for m in msgs)
            tokens = sum(self.count_tokens(m["content"]) for m in msgs)
            part = PromptPart("example", f"example dialogue {rank + 1}", tokens, text)
            pieces.append(Piece(part, "example", msgs, budget_key="example", rank=rank))
        return pieces

    def history(self, past: list[dict[str, str]]) -> list[Piece]:
        n = len(past)
        return [
            Piece(self.part("history", m["role"], m["content"]), "history", [m], budget_key="history", rank=n - i)
            for i, m in enumerate(past)
        ]

    def depth_note(self, card: Any, user: UserPersona) -> list[Piece]:
        """The card's character's note (SillyTavern's depth prompt): `depth` messages from the end, in its role.

        A system-role note joins the end of the system part instead: chat templates here take system text only
        as the first message."""
        note = getattr(card, "depth_prompt", None) if card is not None else None
        if not note:
            return []
        from rolechat.conversation.card import apply_macros

        text, depth, role = note
        text = apply_macros(text.strip(), card, user.name)
        label = f"character's note (depth {depth}, {role})"
        if role == "system":
            return [Piece(self.part("depth-prompt", label, text), "system")]
        return [
            Piece(self.part("depth-prompt", label, text), "depth", [{"role": role, "content": text}], payload=depth)
        ]

    def post_history(self, card: Any, user: UserPersona) -> list[Piece]:
        text = (getattr(card, "post_history_instructions", "") or "").strip() if card is not None else ""
        if not text:
            return []
        from rolechat.conversation.card import apply_macros

        text = apply_macros(text, card, user.name)
        return [Piece(self.part("post-history", "post-history instructions", text), "message")]

    def knowledge(self, docs: list[Any], sources: list[dict[str, Any]], question: str) -> list[Piece]:
        pieces = []
        for rank, (row, doc) in enumerate(zip(sources, docs)):
            label = f"[{row['n']}] {row['file']} {row['location']}".strip()
            part = PromptPart("knowledge", label, self.count_tokens(doc.page_content), doc.page_content)
            pieces.append(Piece(part, "message", budget_key="knowledge", rank=rank, payload=doc))
        frame = self.answer_prompt(question)([]).replace("\n\n\n", "\n\n")
        pieces.append(Piece(self.part("message", "answer prompt (the passages go in it)", frame), "message"))
        return pieces

    def answer_prompt(self, question: str):
        from rolechat.rag.chain import format_context

        template = self.answer_template

        def render(docs: list[Any]) -> str:
            return template.format(context=format_context(docs), question=question)

        return render

    def builder(self, answer_prompt: Any = None):
        """How included pieces become messages: system, example turns, history, the last user turn."""

        def build(included: Sequence[Piece]) -> list[dict[str, str]]:
            system = "\n\n".join(p.part.text for p in included if p.place == "system")
            messages = [{"role": "system", "content": system}] if system else []
            for piece in included:
                if piece.place == "example":
                    messages.extend(dict(m) for m in piece.messages)
            chat = [dict(m) for p in included if p.place == "history" for m in p.messages]
            if answer_prompt is not None:
                last = answer_prompt([p.payload for p in included if p.part.kind == "knowledge"])
            else:
                last = next(p.part.text for p in included if p.part.kind == "message")
            after = [p.part.text for p in included if p.part.kind == "post-history"]
            for note in (p for p in included if p.place == "depth"):
                if note.payload == 0:  # depth 0: after the last message, i.e. in the final user turn
                    after.insert(0, note.part.text)
                else:  # `depth` messages before the end, counting the new message
                    chat.insert(max(len(chat) + 1 - note.payload, 0), dict(note.messages[0]))
            messages += chat
            messages.append({"role": "user", "content": "\n\n".join([last, *after])})
            return messages

        return build
