"""The conversation engine: the ONE place where a turn's inputs become the messages the runtime renders.

Everything that turns (character, user persona, lorebook, character memory, knowledge base, chat history,
new message) into a prompt lives here; the app, the CLI (`chat`, `ask`) and the API all call it, so the
same inputs give the same prompt whichever door they came through.

Interface (the API, the app and the CLI are written against it):

    engine = Engine(runtime, rag_cfg, chat_cfg=ConversationConfig())   # knowledge bases open lazily
    engine.greetings("miaomiao", user)   # the character's greeting and its alternates, macros applied
    engine.greeting("miaomiao", user, index=0)        # "" for a character without one
    turn = engine.prepare("茶园几点开门？", character="miaomiao", history=[...],
                          user=UserPersona("小明", "一个爱喝茶的学生"), knowledge_base="示例知识库", k=5,
                          params={"temperature": 0})
    turn.messages        # exactly what the runtime renders (list of {"role", "content"}), system message included
    turn.persona         # the adapter the reply is generated with (None = the base model)
    turn.parts           # "what the model saw": one PromptPart per piece, with its token count, dropped ones
                         # marked included=False
    turn.prompt_tokens   # the rendered prompt's length; turn.budget: what the context leaves for it
    turn.sources         # numbered knowledge-base sources ([n] in the reply = sources[n-1]), source_rows shape
    stream = engine.stream(turn)     # text pieces; .text, .stats (prompt/completion tokens, finish_reason)
    for piece in stream: ...         # closing the stream early cancels the generation
    engine.close()                   # closes the knowledge bases it opened

`character` is a persona name (None/"base": the plain base model) or a `Character` (a card used without a
persona folder). `history` holds earlier turns as {"role": "user" | "assistant", "content"} dicts (extra
keys are ignored); a chat with a character starts with its greeting as the first assistant turn.

The prompt, in order: one system message (the persona's or card's system prompt, the caller's system text,
lore placed before the character, the card's description, personality and scenario, lore placed after it,
the user persona's description, character memory: the exchanges of the persona folder's memory.jsonl most
like the new message and the one before it, see `memory`), the card's example dialogues as example turns, the
history (with the card's character's note, `extensions.depth_prompt`, that many messages from the end), then
the new message followed by the card's post-history instructions. Each part is within its
budget (`ConversationConfig`, section `[chat]`) and the whole never exceeds the model's context minus the
reply's max_new_tokens (capped at half the context, as the runtime does); see `assembly` for what a full
context drops first. Macros ({{char}}, {{user}}, <BOT>, <USER>) are replaced in card and lore text;
creator_notes never reach the prompt.

Knowledge-base turns keep the answer prompt of `rag.prompts` (or `rag.prompt`) as the user message, exactly
as the demo model learned it, after an optional standalone-question rewrite (`rag.condense_prompt`) of a
follow-up; they carry the system message but no history or example turns. When retrieval finds nothing
the reply is `rag.prompts.NOT_FOUND` and the model is not called.

Scenes (several characters, see `scene`): `engine.prepare_scene(message, characters=["a", "b"], speaker="b",
history=[... assistant lines with "name": the persona that said them], user=...)` is the turn of `speaker`
with its own card and adapter, the others' lines as named user-side turns and stop strings at their names;
`engine.next_speaker(characters, history, order="natural" | "round-robin")` says who speaks next. A long chat
passes `summary=` (the summary of the turns no longer in `history`, `summary.summarise`) to `prepare`.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from rolechat.conversation.assembly import Assembly, ContextOverflow, MessageBuilder, Piece, PromptPart
from rolechat.conversation.config import ConversationConfig
from rolechat.conversation.knowledge import Found, Knowledge
from rolechat.conversation.pieces import PieceMaker
from rolechat.conversation.setting import ChatSetting, UserPersona
from rolechat.llm import GenerationParams, GenerationStats

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from transformers import PreTrainedTokenizerBase

    from rolechat.conversation.card import Character
    from rolechat.conversation.memory import CharacterMemory
    from rolechat.conversation.regexscripts import ScriptSet
    from rolechat.llm import Backend, PersonaManifest, TextStream
    from rolechat.rag import RAGConfig

# who a turn is with: a persona name (None or "base": the plain base model) or a card used as it is
Who: TypeAlias = "str | Character | None"
Params: TypeAlias = "GenerationParams | Mapping[str, Any] | None"

MIN_REPLY_TOKENS = 64  # the shortest reply a prompt may squeeze max_new_tokens down to

__all__ = ["Engine", "FixedReply", "PromptPart", "Turn", "UserPersona", "ContextOverflow"]

log = logging.getLogger(__name__)

CARDS_CACHED = 64  # parsed characters kept (per manifest card, see Engine._card_of)
COUNTS_CACHED = 1 << 16  # token counts of texts kept (history messages are counted again every turn)
_CARDS: OrderedDict[int, tuple[dict[str, Any], Character]] = OrderedDict()
_CARDS_LOCK = threading.Lock()


def _longest_token(tokenizer: PreTrainedTokenizerBase) -> int:
    """The most characters one token of `tokenizer` can stand for (its longest vocabulary entry: byte-level and
    SentencePiece pieces are never shorter than the text they decode to), once per tokenizer."""
    key = id(tokenizer)
    if key not in _LONGEST:
        try:
            _LONGEST[key] = max((len(t) for t in tokenizer.get_vocab()), default=1) or 1
        except (AttributeError, TypeError):  # not a transformers tokenizer (a stub): tokenize everything
            _LONGEST[key] = 1 << 30
    return _LONGEST[key]


_LONGEST: dict[int, int] = {}


@dataclass
class Turn:
    """A prepared turn: what will be sent, with whom, and why."""

    persona: str | None
    messages: list[dict[str, str]]
    params: GenerationParams
    parts: list[PromptPart] = field(default_factory=list)
    sources: list[dict[str, Any]] | None = None  # None: no knowledge base was asked
    question: str = ""  # what the knowledge base was searched with
    fixed_reply: str | None = None  # set when the reply is known without the model (nothing found)
    prompt_tokens: int = 0  # the rendered prompt's length in tokens
    speaker: str = ""  # in a scene: the persona that replies
    budget: int = 0  # what the context leaves for the prompt
    lore_state: dict[str, Any] = field(default_factory=dict)  # timed lore effects for the chat's next turn
    user_text: str = ""  # the new message as the chat keeps it (after the regex scripts on user input)
    scripts: ScriptSet | None = None  # the regex scripts of the turn, for its reply
    answer_mode: str = ""  # knowledge-base turns: "generate" (the model answers) or "extract" (sentences quoted)
    grounded: bool | None = None  # knowledge-base turns: False when the knowledge base holds no answer
    confidence: float | None = None  # extract: the best sentence's match with the question (0-1)
    docs: list[Document] = field(default_factory=list)  # knowledge-base turns: the passages, ranked

    def what_the_model_saw(self) -> list[dict[str, Any]]:
        return [p.as_dict() for p in self.parts]


class FixedReply:
    """A reply known in advance, shaped like a GenerationStream (iterate, .text, .stats, .close())."""

    def __init__(self, text: str, tokens: int = 0) -> None:
        self.text = text
        self.stats = GenerationStats(completion_tokens=tokens, finish_reason="stop", time_to_first_token=0.0)

    def __iter__(self) -> Iterator[str]:
        yield self.text

    def join(self) -> str:
        return self.text

    def close(self) -> None:
        return None

    def cancel(self) -> None:
        return None


class WrappedReply:
    """A reply made from another stream, shaped like a GenerationStream: its stats, and closing or cancelling it,
    are the wrapped stream's; `join` reads it to its end. Subclasses say what `__iter__` yields and `text` is."""

    text: str

    def __init__(self, stream: TextStream | WrappedReply) -> None:
        self._stream = stream

    @property
    def stats(self) -> GenerationStats:
        return self._stream.stats

    def __iter__(self) -> Iterator[str]:
        raise NotImplementedError

    def join(self) -> str:
        for _ in self:
            pass
        return self.text

    def close(self) -> None:
        self._stream.close()

    def cancel(self) -> None:
        self._stream.cancel()


class RewrittenReply(WrappedReply):
    """A reply that regex scripts rewrite (AI output): the generation runs to its end, then the rewritten text,
    the one a chat keeps, comes as one piece."""

    def __init__(self, stream: TextStream, rewrite: Callable[[str], str]) -> None:
        super().__init__(stream)
        self._rewrite = rewrite
        self.text = ""

    def __iter__(self) -> Iterator[str]:
        self.text = self._rewrite("".join(self._stream))
        yield self.text


# what `Engine.stream` gives: the model's stream, a reply known without it, or a rewritten one
ReplyStream: TypeAlias = "TextStream | FixedReply | WrappedReply"

DROPPED_NAMES = {
    "example": "example dialogues",
    "history": "history messages (the oldest)",
    "summary": "the summary of earlier turns",
    "knowledge": "knowledge passages",
    "memory": "memory lines",
    "lore-triggered": "lore entries",
    "lore-constant": "always-on lore entries",
}


def dropped_notice(parts: Sequence[PromptPart]) -> PromptPart | None:
    """One notice of what a full context (or a part's own budget) left out, by kind, e.g. "left out to fit the
    context: 6 of 8 example dialogues, lore entries 'Lighthouse'"; None when everything went in."""
    counts: dict[str, list[PromptPart]] = {}
    totals: dict[str, int] = {}
    for part in parts:
        if part.kind in DROPPED_NAMES:
            totals[part.kind] = totals.get(part.kind, 0) + 1
            if not part.included:
                counts.setdefault(part.kind, []).append(part)
    if not counts:
        return None
    said = []
    for kind, left in counts.items():
        text = f"{len(left)} of {totals[kind]} {DROPPED_NAMES[kind]}"
        if kind.startswith("lore"):
            text += " (" + ", ".join(p.label for p in left[:5]) + (", …" if len(left) > 5 else "") + ")"
        said.append(text)
    text = "left out to fit the context (llm.context_length) and the [chat] budgets: " + "; ".join(said)
    return PromptPart("notice", "context full", 0, text)


class Engine:
    """Assembles every prompt. Thread-safe: knowledge bases are opened once and shared."""

    def __init__(
        self,
        runtime: Backend,
        rag_cfg: RAGConfig | None = None,
        embeddings: Embeddings | None = None,
        chat_cfg: ConversationConfig | None = None,
    ) -> None:
        from rolechat.rag import RAGConfig

        self.runtime = runtime
        self.rag_cfg = rag_cfg or RAGConfig()
        self.chat_cfg = chat_cfg or ConversationConfig()
        self._embeddings = embeddings
        self.knowledge = Knowledge(runtime, self.rag_cfg, embeddings, ask=self.ask)  # what turns answer from
        self._counts: dict[str, int] = {}
        self._memories: dict[Path, tuple[tuple[int, int, int], CharacterMemory]] = {}  # memory.jsonl -> (stamp, index)
        self._memory_lock = threading.Lock()

    def close(self) -> None:
        """Close every knowledge base this engine opened (the engine stays usable)."""
        self.knowledge.close()

    @property
    def embeddings(self) -> Embeddings | None:
        """The embeddings knowledge bases are opened with (None: each one's configured embedder)."""
        return self._embeddings

    # -- characters ---------------------------------------------------------------------------------------

    def character(self, character: Who) -> Character | None:
        """The `Character` of a persona name (None when the persona has no card), or `character` itself."""
        if character is None or isinstance(character, str):
            persona = None if character in (None, "", "base") else character
            return self._card_of(self.runtime.manifest(persona))  # PersonaError for an unknown persona
        return character

    @staticmethod
    def _card_of(manifest: PersonaManifest | None) -> Character | None:
        """The character of a persona manifest, parsed once while the manifest holds the same card (a card with a
        book of thousands of entries takes seconds to read; a turn must not read it again)."""
        if manifest is None or not getattr(manifest, "card", None):
            return None
        from rolechat.conversation.card import CardError, Character

        card = manifest.card
        with _CARDS_LOCK:
            cached = _CARDS.get(id(card))
            if cached is not None and cached[0] is card:
                _CARDS.move_to_end(id(card))
                return cached[1]
        try:
            character = Character.from_dict(card)
        except CardError as exc:
            raise CardError(f"persona {manifest.name!r}: persona.json: card.{exc}") from None
        with _CARDS_LOCK:
            _CARDS[id(card)] = (card, character)  # the card itself is kept, so its id is not reused meanwhile
            while len(_CARDS) > CARDS_CACHED:
                _CARDS.popitem(last=False)
        return character

    def greetings(self, character: Who, user: UserPersona | None = None) -> list[str]:
        """The character's first message then its alternate greetings, macros applied ([] without a card)."""
        card = self.character(character)
        if card is None:
            return []
        from rolechat.conversation.card import greetings

        return greetings(card, (user or UserPersona()).name)

    def greeting(self, character: Who, user: UserPersona | None = None, index: int = 0) -> str:
        """Greeting number `index` (0 = first_mes); "" when the character has none. IndexError when out of range."""
        options = self.greetings(character, user)
        if not options:
            return ""
        if not 0 <= index < len(options):
            raise IndexError(f"greeting {index} out of range: the character has {len(options)} (0-{len(options) - 1})")
        return options[index]

    def memory(self, character: Who, texts: Sequence[str], user: UserPersona) -> list[PromptPart]:
        """The character's remembered exchanges most like `texts` (the recent conversation, newest last), packed
        greedily into `chat.memory_tokens`, as memory parts (most relevant first); [] for a character without
        a memory (`character`: a persona name; a `Character` used without a folder has none).

        The memory is `memory.jsonl` in the persona folder (`rolechat.llm.memoryfile`); its index is built on
        first use and rebuilt when the file changes. Dense retrieval (`rag.embedder`'s model) joins BM25."""
        if not isinstance(character, str) or character in ("", "base"):
            return []
        folder = next((e.path for e in self.runtime.personas() if e.name == character), None)
        if folder is None:
            return []
        memory = self._memory_of(Path(folder))
        if memory is None:
            return []
        manifest = self.runtime.manifest(character)
        card = self._card_of(manifest)
        speaker = card.name if card is not None else (manifest.display_name or manifest.name)
        kept = memory.recall(texts, self.count_tokens, self.chat_cfg.memory_tokens, speaker)
        return [PromptPart("memory", f"memory: {entry.source or 'line'}", tokens, text) for entry, text, tokens in kept]

    def _memory_of(self, folder: Path) -> CharacterMemory:
        """The cached index of `folder`'s memory.jsonl (None without one), rebuilt when the file changes."""
        import hashlib

        from rolechat import settings
        from rolechat.conversation.memory import CharacterMemory
        from rolechat.llm.memoryfile import MEMORY_FILE

        path = folder / MEMORY_FILE
        try:
            st = path.stat()
        except OSError:
            self._memories.pop(path, None)
            return None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._memory_lock:
            cached = self._memories.get(path)
            if cached is None or cached[0] != stamp:
                cache = settings.cache_dir() / "memory" / hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
                cached = (stamp, CharacterMemory.load(path, self._memory_embeddings(), cache))
                self._memories[path] = cached
            return cached[1]

    def _memory_embeddings(self) -> Any:
        """The embedder dense memory retrieval uses: `rag.embedder`'s (by default multilingual-e5-small, which
        reads Chinese), shared with the knowledge bases; None (BM25 alone) when none can be had here or the
        configured one is the English-only MiniLM."""
        if self._embeddings is None:
            from rolechat.rag.embedder import shared_embedder
            from rolechat.rag.embedder_spec import MINILM, resolve_spec

            cfg = self.rag_cfg
            try:
                spec = resolve_spec(cfg.embedder, cfg.embedder_backend)
            except ValueError as exc:
                log.warning("character memory: dense retrieval is off (%s)", exc)
                return None
            if spec.name == MINILM:  # blind to Chinese: its vectors would only reorder BM25's hits at random
                return None
            return shared_embedder(spec, cfg.batch_size)
        return self._embeddings

    # -- assembly -----------------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` as plain text, as the runtime encodes message text (cached: history turns are
        counted again every turn). A text too long for the whole context even at the tokenizer's longest token
        is not tokenized: its lower bound (already more than the context) is returned."""
        if not text:
            return 0
        if len(text) > self.too_long():
            return len(text) // _longest_token(self.runtime.tokenizer)
        count = self._counts.get(text)
        if count is None:
            from rolechat.llm.encoding import encode_text

            count = len(encode_text(self.runtime.tokenizer, text))
            while len(self._counts) >= COUNTS_CACHED:  # the oldest counts go first, one by one: clearing them all
                try:  # at once made a chat longer than the cache re-tokenize its whole history every turn
                    del self._counts[next(iter(self._counts))]
                except (StopIteration, KeyError, RuntimeError):  # another thread changed it meanwhile
                    break
            self._counts[text] = count
        return count

    def too_long(self) -> int:
        """Characters past which a text cannot fit the context whatever it holds (context length times the
        tokenizer's longest token): such a text is neither tokenized nor run through macros."""
        return self.runtime.info.context_length * _longest_token(self.runtime.tokenizer)

    def pieces(self) -> PieceMaker:
        """The maker of a turn's pieces, counting with this engine's (cached) token counter."""
        from rolechat.conversation.patterns import ScanLimits
        from rolechat.rag import prompts

        make = PieceMaker(self.count_tokens, self.rag_cfg.prompt or prompts.ANSWER_PROMPT, ScanLimits.of(self.chat_cfg))
        make.too_long = self.too_long()
        return make

    def budget(self, gen: GenerationParams) -> int:
        """Prompt tokens the context allows: its length minus the reply's room (at most half the context)."""
        context = self.runtime.info.context_length
        return context - min(gen.max_new_tokens, context // 2)

    def prepare(
        self,
        message: str,
        *,
        character: Who = None,
        history: Sequence[Mapping[str, Any]] = (),
        user: UserPersona | None = None,
        knowledge_base: str | None = None,
        k: int | None = None,
        mode: str | None = None,
        condense: bool = True,
        system: str = "",
        params: Params = None,
        summary: str = "",
        setting: ChatSetting | None = None,
        lines: Sequence[tuple[str, str]] | None = None,
        kept: str | None = None,
        answer_mode: str | None = None,
    ) -> Turn:
        """Build the turn for `message` (see the module docstring). `summary`: the summary of older turns that
        are no longer in `history` (`summary.summarise`), at the end of the system part. `setting`: the chat's
        lorebooks, scenario override, author's note and timed lore state (`setting.ChatSetting`). `lines`: what
        the lorebook scan reads, (speaker name, text) oldest first with the new message last (default: the
        history and the message, named after the user and the character). `kept`: what the chat keeps of the
        message when `message` already went through the user-input regex scripts (a scene's transcript).
        `answer_mode`: knowledge-base turns only, overrides `rag.answer_mode` (auto, generate, extract).

        Raises ValueError for unknown personas or knowledge bases, ContextOverflow (a ValueError) when the
        parts that are never dropped do not fit the context; CardError for a lorebook that cannot be read."""
        persona, manifest, card = self._who(character)
        user, setting = user or UserPersona(), setting or ChatSetting()
        gen = self.runtime.params(params)
        scripts = self.scripts(card, user)
        if kept is None:
            kept = message = scripts.user_input(message)  # the prompt's copy may differ (prompt-only scripts)
        message = scripts.prompt(message, "user", 0)
        past = scripts.prompt_history(
            [{"role": m["role"], "content": m["content"]} for m in history if m.get("role") in ("user", "assistant")]
        )
        make = self.pieces()
        lines = list(lines) if lines is not None else self._lines(past, message, card, manifest, user)
        user_messages = sum(m["role"] == "user" for m in past) + 1
        placed, found = self._lore(card, persona, setting, lines, user, gen, make, scripts, user_messages)
        said = [*[m["content"] for m in past], message]
        memory = self.memory(persona, said[-2:], user)
        pieces = make.system(manifest, card, user, system, placed, memory, setting.scenario)
        if summary.strip() and not knowledge_base:
            text = f"此前对话的概要：{summary.strip()}"
            pieces.append(Piece(make.part("summary", "summary of earlier turns", text), "system"))
        if knowledge_base:
            got = self.knowledge.answer(
                message,
                name=knowledge_base,
                past=past,
                persona=persona,
                k=k,
                retrieval=mode,
                condense=condense,
                answer_mode=answer_mode,
            )
            turn = self._knowledge_turn(got, message, pieces, placed, make, card, user, gen, persona)
        else:
            pieces += self._conversation(make, card, user, placed, past, message)
            turn = self._fit([*pieces, *self._closing(placed, make, card, user)], make.builder(), gen, persona)
        return self._kept(turn, found.state, kept, scripts)

    def _knowledge_turn(self, got: Found, message: str, pieces, placed, make, card, user, gen, persona) -> Turn:
        """The turn of a knowledge-base question: the passages in the answer prompt, or a reply known without the
        model (nothing found, or the quoted sentences of an extractive answer, with the passages they came from)."""
        before = []
        if got.question != message:
            before.append(PromptPart("question", "standalone question", self.count_tokens(got.question), got.question))
        if got.reply is None:
            pieces = [*pieces, *make.knowledge(got.docs, got.sources, got.question)]
            pieces += self._closing(placed, make, card, user)
            turn = self._fit(pieces, make.builder(answer_prompt=make.answer_prompt(got.question)), gen, persona)
            turn.parts[:0] = before
        else:
            if got.docs:  # quoted: show the passages the sentences were taken from
                passages = make.knowledge(got.docs, got.sources, got.question)
                shown = [p.part for p in passages if p.part.kind == "knowledge"]
                parts = [*before, *shown, PromptPart("notice", "answer mode", 0, got.note)]
            else:
                parts = [*before, *(p.part for p in pieces + placed.shown)]
            turn = Turn(persona, [], gen, parts, fixed_reply=got.reply, budget=self.budget(gen))
        turn.sources, turn.question, turn.docs = got.sources, got.question, got.docs
        turn.answer_mode, turn.grounded, turn.confidence = got.mode, got.grounded, got.confidence
        return turn

    @staticmethod
    def _closing(placed, make: PieceMaker, card, user) -> list[Piece]:
        """What every turn ends with: lore at depth, the character's note, post-history instructions, the lore
        entries shown but not sent."""
        return [*placed.depth, *make.depth_note(card, user), *make.post_history(card, user), *placed.shown]

    @staticmethod
    def _conversation(make: PieceMaker, card, user, placed, past, message: str) -> list[Piece]:
        """A turn without a knowledge base: the example dialogues, the history, the new message."""
        pieces = [*make.examples(card, user, placed), *make.history(past)]
        said = [{"role": "user", "content": message}]
        return [*pieces, Piece(make.part("message", "user", message), "message", said)]

    @staticmethod
    def _kept(turn: Turn, state: dict[str, Any], kept: str, scripts: ScriptSet) -> Turn:
        """What the turn leaves for the chat: the timed lore state, the message as kept, the regex scripts (and
        a notice of those that changed something)."""
        turn.lore_state, turn.user_text, turn.scripts = state, kept, scripts
        if scripts.applied:
            text = "; ".join(dict.fromkeys(scripts.applied))
            turn.parts.append(PromptPart("notice", "regex scripts", 0, f"applied: {text}"))
        return turn

    def _who(self, character: Who) -> tuple[str | None, PersonaManifest | None, Character | None]:
        """(persona, manifest, card) of a persona name (None/"base": the base model) or a `Character`."""
        if character is None or isinstance(character, str):
            persona = None if character in (None, "", "base") else character
            manifest = self.runtime.manifest(persona)  # PersonaError (a ValueError) for an unknown persona
            return persona, manifest, self._card_of(manifest)
        return None, None, character  # a Character given as it is, on the base model

    @staticmethod
    def _lines(
        past: list[dict[str, str]],
        message: str,
        card: Character | None,
        manifest: PersonaManifest | None,
        user: UserPersona,
    ) -> list[tuple[str, str]]:
        """What the lorebook scan reads: each message with who said it (SillyTavern's `name: text`)."""
        char = card.display_name if card is not None else (manifest.display_name if manifest else "") or "assistant"
        return [*((user.name if m["role"] == "user" else char, m["content"]) for m in past), (user.name, message)]

    def _lore(self, card, persona, setting, lines, user, gen, make, scripts, user_messages: int):
        """The world-info scan of this turn and its pieces (lore.turn_lore), within the room the reply leaves."""
        import random

        from rolechat.conversation.lore import turn_lore

        macro = make.macro(card, user)
        return turn_lore(
            card,
            persona,
            setting,
            lines,
            self.count_tokens,
            self.chat_cfg,
            budget=self.budget(gen),
            user=user,
            macro=lambda text: scripts.lore(macro(text)),
            rng=random.Random(gen.seed),
            user_messages=user_messages,
        )

    def _fit(self, pieces: list[Piece], build: MessageBuilder, gen: GenerationParams, persona: str | None) -> Turn:
        """The turn of `pieces`: each kind within its budget, the whole within the context (see `assembly`)."""
        assembly = Assembly(pieces, build)
        cfg = self.chat_cfg
        assembly.apply_budgets(
            {
                "memory": cfg.memory_tokens,
                "knowledge": cfg.knowledge_tokens,
                "example": cfg.examples_tokens,
                "history": cfg.history_tokens,
            }
        )
        budget = self.budget(gen)

        def measure(messages: list[dict[str, str]]) -> int:
            return len(self.runtime.prompt_ids(messages, persona, persona_system=False))

        within_budgets = [p.part.included for p in pieces]
        try:
            total = assembly.fit(measure, budget)
        except ContextOverflow:
            # The parts never dropped need more than the room a long reply leaves (max_new_tokens takes up to half
            # the context): give the prompt that room and shorten the reply instead, while a useful one still fits.
            context = self.runtime.info.context_length
            if context - MIN_REPLY_TOKENS <= budget:
                raise
            for piece, included in zip(pieces, within_budgets):
                piece.part.included = included
            budget = context - MIN_REPLY_TOKENS
            total = assembly.fit(measure, budget)  # ContextOverflow again if even that is too little
            gen = replace(gen, max_new_tokens=min(gen.max_new_tokens, context - total))
        parts = [p.part for p in pieces]
        dropped = dropped_notice(parts)
        if dropped:
            parts.append(dropped)
        return Turn(persona, assembly.messages(), gen, parts, prompt_tokens=total, budget=budget)

    def ask(
        self,
        render: Callable[[list[str]], str],
        lines: Sequence[str],
        persona: str | None,
        params: Params = None,
    ) -> str:
        """A short request of the chat's own model, outside the chat (a follow-up rewritten into a standalone
        question, a summary of older turns): one user message `render(kept)` over `lines` (a transcript, oldest
        first), the oldest left out while it does not fit the context, by the fitter every turn uses; the reply
        with its whitespace folded. ContextOverflow when even no line at all does not fit."""
        gen = self.runtime.params(params)
        pieces = [
            Piece(PromptPart("history", "line", self.count_tokens(line), line), "history", rank=len(lines) - i)
            for i, line in enumerate(lines)
        ]

        def build(included: Sequence[Piece]) -> list[dict[str, str]]:
            return [{"role": "user", "content": render([p.part.text for p in included])}]

        assembly = Assembly(pieces, build)
        assembly.fit(lambda messages: len(self.runtime.prompt_ids(messages, persona)), self.budget(gen))
        return " ".join(self.runtime.chat(assembly.messages(), persona, gen).split())

    def rendered(self, turn: Turn) -> str:
        """The exact text the tokenizer receives for `turn` (chat template applied, the persona's system prompt
        included, generation prompt last); "" for a reply known without the model."""
        if turn.fixed_reply is not None or not turn.messages:
            return ""
        ids = self.runtime.prompt_ids(turn.messages, turn.persona, persona_system=False)
        return self.runtime.tokenizer.decode(ids, skip_special_tokens=False)

    @staticmethod
    def grounded(turn: Turn, reply: str) -> bool | None:
        """Whether `reply` to a knowledge-base turn answers from the knowledge base (`Knowledge.grounded`)."""
        return Knowledge.grounded(turn.answer_mode, turn.grounded, reply)

    # -- generation ---------------------------------------------------------------------------------------

    def stream(self, turn: Turn) -> ReplyStream:
        """The reply as a stream of text pieces (a GenerationStream, or a FixedReply for known answers); when
        regex scripts rewrite AI output, a RewrittenReply (the text the chat keeps)."""
        if turn.fixed_reply is not None:
            return FixedReply(turn.fixed_reply, self.count_tokens(turn.fixed_reply))
        stream = self.runtime.stream(turn.messages, persona=turn.persona, params=turn.params, persona_system=False)
        scripts = turn.scripts
        return (
            RewrittenReply(stream, scripts.ai_output)
            if scripts is not None and scripts.rewrites("assistant")
            else stream
        )

    def scripts(self, card: Character | None, user: UserPersona | None = None) -> ScriptSet:
        """The regex scripts a chat with `card` (a Character or None) runs: the global ones, then the card's own
        (unless chat.card_regex is off), with the card's macros (`regexscripts.ScriptSet`)."""
        from rolechat.conversation.patterns import ScanLimits
        from rolechat.conversation.regexscripts import ScriptSet, card_scripts, global_scripts

        own = card_scripts(card) if self.chat_cfg.card_regex else []
        return ScriptSet(
            [*global_scripts(), *own], self.pieces().macro(card, user or UserPersona()), ScanLimits.of(self.chat_cfg)
        )

    def display(
        self, character: Who, text: str, role: str, depth: int | None = None, user: UserPersona | None = None
    ) -> str:
        """`text` as the app and the CLI show it: the display-only regex scripts of `character` applied."""
        return self.scripts(self.character(character), user).display(text, role, depth)

    def reply(self, message: str, **kwargs: Any) -> tuple[Turn, ReplyStream]:
        """prepare() then stream()."""
        turn = self.prepare(message, **kwargs)
        return turn, self.stream(turn)

    # -- scenes (several characters, one adapter each; see `scene`) ----------------------------------------

    def display_name(self, persona: str) -> str:
        """The name a character goes by in a scene: its card's name, else its display name, else `persona`."""
        card = self.character(persona)
        if card is not None and card.name.strip():
            return card.name.strip()
        manifest = self.runtime.manifest(persona)
        return (manifest.display_name if manifest else "") or persona

    def scene_names(self, characters: Sequence[str]) -> dict[str, str]:
        """persona -> the name it goes by, for every character of a scene (PersonaError for an unknown one)."""
        return {p: self.display_name(p) for p in characters}

    def talkativeness(self, characters: Sequence[str]) -> dict[str, float]:
        """persona -> how readily it speaks up (its card's talkativeness; 0.5 without a card)."""
        found = {}
        for persona in characters:
            card = self.character(persona)
            found[persona] = card.talkativeness if card is not None else 0.5
        return found

    def speaking_order(
        self, characters: Sequence[str], history: Sequence[Mapping[str, Any]], order: str = "natural", **kwargs: Any
    ) -> list[str]:
        """Who speaks after `history`, in order (`scene.speaking_order`: natural, list, manual, round-robin;
        keyword arguments rng, allow_self, muted as there), with the characters' names and talkativeness."""
        from rolechat.conversation.scene import speaking_order

        names, talk = self.scene_names(characters), self.talkativeness(characters)
        return speaking_order(characters, history, order, names, talkativeness=talk, **kwargs)

    def next_speaker(
        self, characters: Sequence[str], history: Sequence[Mapping[str, Any]], order: str = "natural", **kwargs: Any
    ) -> str:
        """Who speaks next in the scene (the first of `speaking_order`); ValueError when nobody does (manual)."""
        found = self.speaking_order(characters, history, order, **kwargs)
        if not found:
            raise ValueError(f"speaker order {order!r} picks nobody: name the speaker")
        return found[0]

    def scene_greetings(self, characters: Sequence[str], user: UserPersona | None = None) -> list[dict[str, Any]]:
        """How a new scene opens: each character's first group greeting (`card.group_greetings`), in order."""
        from rolechat.conversation.card import group_greetings

        opening = []
        for persona in characters:
            card = self.character(persona)
            found = group_greetings(card, (user or UserPersona()).name) if card is not None else []
            if found:
                opening.append({"role": "assistant", "content": found[0], "name": persona})
        return opening

    def prepare_scene(
        self,
        message: str,
        *,
        characters: Sequence[str],
        speaker: str,
        history: Sequence[Mapping[str, Any]] = (),
        user: UserPersona | None = None,
        system: str = "",
        params: Params = None,
        **kwargs: Any,
    ) -> Turn:
        """The turn of `speaker` in a scene with `characters` (persona names): its own card and adapter, the
        others' lines as named user-side turns, stop strings at every other name (see `scene`).

        `history` holds the scene so far, each assistant line with the persona that said it in "name";
        `message` is the user's new line ("" when the characters go on among themselves). ValueError for a
        scene of fewer than two characters or a speaker outside it."""

        from rolechat.conversation.scene import check_scene, scene_note, scene_transcript, stop_strings

        characters = list(characters)
        check_scene(characters, speaker)
        user = user or UserPersona()
        names = self.scene_names(characters)
        kept = self.scripts(self.character(speaker), user).user_input(message) if message else ""
        past, last = scene_transcript(history, kept, speaker, names, user.name)
        said = [m for m in history if m.get("role") in ("user", "assistant") and m.get("content")]
        lines = [
            (
                user.name if m["role"] == "user" else names.get(m.get("name") or m.get("persona") or "", "?"),
                m["content"],
            )
            for m in said
        ]
        lines += [(user.name, kept)] if kept else []
        gen = self.runtime.params(params)
        stops = [s for s in stop_strings(speaker, names, user.name) if s not in gen.stop]
        gen = replace(gen, stop=[*gen.stop, *stops])
        note = scene_note(speaker, names, user.name)
        turn = self.prepare(
            last,
            character=speaker,
            history=past,
            user=user,
            system=f"{note}\n\n{system}" if system else note,
            params=gen,
            lines=lines,
            kept=kept,
            **kwargs,
        )
        turn.speaker = speaker
        return turn
