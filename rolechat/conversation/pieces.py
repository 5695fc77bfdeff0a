"""The pieces of one turn: what a character card, the lore, the user persona, the history, a knowledge base's
passages and the new message each contribute to the prompt, as `Piece`s (a `PromptPart` with its token count,
plus where it goes), and how the pieces that are kept become the messages the runtime renders.

`Assembly` (assembly.py) decides which pieces are kept; the engine (engine.py) puts them together; `lore` turns
the world-info scan into pieces by position.

The system message follows SillyTavern's story string: the author's note placed before it, the system prompt,
the caller's system text, lore before the character, description, personality, scenario, lore after, the user
persona, the author's note placed after it (then rolechat's character memory and the summary of older turns),
and last the example dialogues, as `名字：台词` text (SillyTavern's text completion keeps them in the prompt
text too: sent as turns they read as a conversation that happened, and the greeting would follow an example's
reply as a second assistant turn). Injections at a depth (the author's note, the character's note, @depth lore)
go between the chat's messages as SillyTavern's `doChatInject` puts them; as the chat templates here take system
text only as the first message, a system-role injection inside the chat is sent as a user message, and one at
depth 0 (after the new message) joins the final user turn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rolechat.conversation.assembly import Piece, PromptPart

if TYPE_CHECKING:
    from rolechat.conversation.lore import Placed
    from rolechat.conversation.setting import UserPersona

__all__ = ["EXAMPLES_HEADER", "PieceMaker"]

EXAMPLES_HEADER = "示例对话（只示范说话的方式）："


class PieceMaker:
    """Makes the pieces of one turn, counting each with `count_tokens` (plain text, the runtime's tokenizer).

    `answer_template` is the knowledge-base answer prompt (`rag.prompt` or `rag.prompts.ANSWER_PROMPT`)."""

    def __init__(self, count_tokens: Callable[[str], int], answer_template: str, lore_limits: Any = None) -> None:
        self.count_tokens = count_tokens
        self.answer_template = answer_template
        self.lore_limits = lore_limits  # lorebook.ScanLimits; None: ConversationConfig's defaults
        self.too_long = 1 << 62  # characters past which a text cannot fit the context: no macros for it

    def part(self, kind: str, label: str, text: str) -> PromptPart:
        return PromptPart(kind, label, self.count_tokens(text), text)

    def macro(self, card: Any, user: UserPersona) -> Callable[[str | None], str]:
        """The macro substitution of this turn's card and user (`{{user}}` alone without a card)."""

        def apply(text: str | None) -> str:
            if text and len(text) > self.too_long:  # it cannot be sent anyway: ContextOverflow says so
                return text
            if card is None:  # no character: only {{user}} has a value (a trained prompt is sent as it is)
                return (text or "").replace("{{user}}", user.name)
            from rolechat.conversation.card import apply_macros

            return apply_macros(text or "", card, user.name)

        return apply

    def system(
        self,
        manifest: Any,
        card: Any,
        user: UserPersona,
        system: str,
        lore: Placed,
        memory: list[PromptPart],
        scenario: str | None = None,
    ) -> list[Piece]:
        """The system message's pieces in story-string order (see the module docstring); `scenario` overrides
        the card's (a chat's or scene's scenario override).

        With a card, the card's pieces are those of `card.system_prompt(character, user, ...)`, the text training
        renders; without one, the persona's system prompt as trained."""
        pieces: list[Piece] = list(lore.note_before)
        macro = self.macro(card, user)

        def add(kind: str, label: str, text: str) -> None:
            if text and text.strip():
                pieces.append(Piece(self.part(kind, label, macro(text.strip()).strip()), "system"))

        if card is not None:
            from rolechat.conversation.card import DEFAULT_SYSTEM_PROMPT, replace_original

            head = card.system_prompt
            add(
                "system",
                "system prompt",
                replace_original(head, DEFAULT_SYSTEM_PROMPT) if head.strip() else DEFAULT_SYSTEM_PROMPT,
            )
        else:
            prompt = manifest.system_prompt if manifest else ""
            if prompt.strip():
                pieces.append(Piece(self.part("system", "system prompt", prompt), "system"))  # as trained
        add("system", "caller's system message", system)
        pieces += lore.before
        if card is not None:
            add("card", "description", card.description)
            if card.personality.strip():
                add("card", "personality", f"{{{{char}}}}的性格：{card.personality.strip()}")
            told = card.scenario if scenario is None or not scenario.strip() else scenario
            if told.strip():
                label = "scenario" if scenario is None or not scenario.strip() else "scenario (this chat's override)"
                add("card", label, f"场景：{told.strip()}")
        elif scenario and scenario.strip():
            add("card", "scenario (this chat's override)", f"场景：{scenario.strip()}")
        pieces += lore.after
        if user.description:
            add("user-persona", f"user: {user.name}", f"关于{{{{user}}}}：{user.description}")
        pieces += lore.note_after
        for rank, part in enumerate(memory):
            pieces.append(Piece(part, "system", budget_key="memory", rank=rank))
        return pieces

    def examples(self, card: Any, user: UserPersona, lore: Placed | None = None) -> list[Piece]:
        """The example-dialogue blocks (the card's, with lore placed before and after them), as `名字：台词` text
        closing the system message; each block a piece the example budget (and a full context) may drop."""
        from rolechat.conversation.card import example_dialogues, example_text

        char = card.display_name if card is not None else "assistant"
        pieces = []
        for piece in reversed(lore.em_top) if lore else ():  # SillyTavern puts each in front: highest order first
            pieces.append(self._lore_block(piece, card, user, char))
        blocks = example_dialogues(card, user.name) if card is not None else []
        for rank, text in enumerate(example_text(blocks, user.name, char)):
            part = PromptPart("example", f"example dialogue {rank + 1}", self.count_tokens(text), text)
            pieces.append(Piece(part, "examples", budget_key="example", rank=rank))
        pieces += [self._lore_block(p, card, user, char) for p in (lore.em_bottom if lore else ())]
        return pieces

    def _lore_block(self, piece: Piece, card: Any, user: UserPersona, char: str) -> Piece:
        """A lore entry placed with the examples, parsed as example dialogue like the card's own."""
        from rolechat.conversation.card import Character, example_dialogues, example_text

        who = card if card is not None else Character(name=char)
        text = "\n\n".join(example_text(example_dialogues(who, user.name, piece.part.text), user.name, char))
        piece.part.text, piece.part.tokens = text, self.count_tokens(text)
        return piece

    def history(self, past: list[dict[str, str]]) -> list[Piece]:
        n = len(past)
        return [
            Piece(self.part("history", m["role"], m["content"]), "history", [m], budget_key="history", rank=n - i)
            for i, m in enumerate(past)
        ]

    def depth_note(self, card: Any, user: UserPersona) -> list[Piece]:
        """The card's character's note (SillyTavern's depth prompt): `depth` messages from the end, in its role."""
        note = getattr(card, "depth_prompt", None) if card is not None else None
        if not note:
            return []
        from rolechat.conversation.lore import depth_piece

        text, depth, role = note
        text = self.macro(card, user)(text.strip())
        label = f"character's note (depth {depth}, {role})"
        return [depth_piece(Piece(self.part("depth-prompt", label, text), "depth"), depth, role, 1)]

    def post_history(self, card: Any, user: UserPersona) -> list[Piece]:
        """The card's post-history instructions (its `{{original}}` is the default ones: none in rolechat)."""
        text = (getattr(card, "post_history_instructions", "") or "").strip() if card is not None else ""
        if not text:
            return []
        from rolechat.conversation.card import replace_original

        text = self.macro(card, user)(replace_original(text, "")).strip()
        return [Piece(self.part("post-history", "post-history instructions", text), "message")] if text else []

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
        """How included pieces become messages: the system message (examples last), the history with the
        injections at their depths, the last user turn."""

        def build(included: Sequence[Piece]) -> list[dict[str, str]]:
            system = "\n\n".join(p.part.text for p in included if p.place == "system")
            examples = [p.part.text for p in included if p.place == "examples" and p.part.text]
            if examples:
                system = "\n\n".join(t for t in (system, EXAMPLES_HEADER, *examples) if t)
            messages = [{"role": "system", "content": system}] if system else []
            chat = [dict(m) for p in included if p.place == "history" for m in p.messages]
            if answer_prompt is not None:
                last = answer_prompt([p.payload for p in included if p.part.kind == "knowledge"])
            else:
                last = next(p.part.text for p in included if p.part.kind == "message")
            after = [p.part.text for p in included if p.part.kind == "post-history"]
            chat.append({"role": "user", "content": last})
            chat = _inject(chat, [p for p in included if p.place == "depth"], after)
            return messages + [{**m, "role": "user"} if m["role"] == "system" else m for m in chat]

        return build


def _inject(chat: list[dict[str, str]], pieces: Sequence[Piece], after: list[str]) -> list[dict[str, str]]:
    """SillyTavern's doChatInject: at each depth (messages from the end, the new message included), one message
    per role, assistant then user then system, each the injections of that depth and role joined by lines.
    Depth 0 text of system or user role, and `after` (the post-history instructions), close the final turn."""
    groups: dict[int, dict[str, list[tuple[int, int, str]]]] = {}
    for n, piece in enumerate(pieces):
        depth, role, group = piece.payload
        groups.setdefault(depth, {}).setdefault(role, []).append((group, n, piece.part.text))
    closing: list[str] = []
    backwards = list(reversed(chat))
    inserted = 0
    for depth in sorted(groups):
        roles = {role: "\n".join(t for _, _, t in sorted(found)) for role, found in groups[depth].items()}
        made = [{"role": r, "content": roles[r]} for r in ("system", "user", "assistant") if roles.get(r)]
        if depth == 0:
            closing += [m["content"] for m in made if m["role"] != "assistant"]
            made = [m for m in made if m["role"] == "assistant"]
        at = depth + inserted
        backwards[at:at] = made
        inserted += len(made)
    out = list(reversed(backwards))
    final = next(i for i in range(len(out) - 1, -1, -1) if out[i]["role"] == "user")
    if closing or after:
        out[final] = {**out[final], "content": "\n\n".join([out[final]["content"], *closing, *after])}
    return out
