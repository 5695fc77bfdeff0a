"""One conversation, whichever door holds it: the app's chat page, `rolechat chat` and the OpenAI route each keep a
`Session` and run every turn through it, so a round of a scene, the cleanup of a reply and the summary of a long
chat happen in one place.

    session = Session(engine, persona="miaomiao", user=UserPersona("小明"))      # or characters=["a", "b"]
    session.start(greeting=0)                  # the character's greeting (a scene: each one's group greeting)
    session.say("你好")                         # the user's message, recorded at once
    for reply in session.replies():            # one per speaker: a solo chat has one, a scene's round several
        for piece in reply.stream: ...         # the reply as it streams, already cleaned
        reply.finish()                         # recorded in session.history (the cleaned text)
    job = session.summary_job(reply)           # when the prompt had to leave older turns out: summarise them
    if job: session.summary = job.run() or session.summary      # the app runs it in the background instead

`history` holds the chat's messages as dicts ({"role", "content"}, a scene line's speaker in "name"; a door may
keep more keys in them, such as the app's sources and stats). The turn itself is built by the engine
(`Engine.prepare`, `Engine.prepare_scene`); the session decides who speaks, what history and summary go in,
and keeps what the turn leaves: the reply, the user's message as regex scripts left it, the timed lore state.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rolechat.conversation.engine import WrappedReply
from rolechat.conversation.scene import SEPARATORS, clean_reply
from rolechat.conversation.setting import ChatSetting, UserPersona

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from langchain_core.runnables import Runnable

    from rolechat.conversation.card import Character
    from rolechat.conversation.engine import Engine, ReplyStream, Turn

__all__ = [
    "Session",
    "Reply",
    "CleanedReply",
    "Summary",
    "SummaryJob",
    "answer_chain",
    "SUMMARY_SLACK",
    "KEEP_RECENT",
]

log = logging.getLogger(__name__)

SUMMARY_SLACK = 4  # messages summarised beyond the ones dropped, so the next turns fit again for a while
KEEP_RECENT = 2  # the latest messages are never summarised away


@dataclass
class Summary:
    """The summary of a chat's oldest messages: `covers` is how many of them (content-bearing, oldest first) it
    stands for; those are no longer sent."""

    text: str = ""
    covers: int = 0

    @classmethod
    def of(cls, saved: Mapping[str, Any] | None, messages: int) -> Summary:
        """A saved summary ({"text", "covers"}) of a chat that has `messages` content-bearing messages before the
        new one; none when it is missing or covers more than there is (messages were deleted since)."""
        if not saved or not saved.get("text"):
            return cls()
        try:
            covers = int(saved.get("covers", 0))
        except (TypeError, ValueError):
            return cls()
        return cls(str(saved["text"]), covers).within(messages)

    def within(self, messages: int) -> Summary:
        """This summary when it stands for some of `messages` (content-bearing, oldest first), else none."""
        return self if 0 < self.covers <= messages else Summary()

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "covers": self.covers}


@dataclass
class SummaryJob:
    """Summarising the messages a turn had to leave out (and a few more), continuing the previous summary."""

    engine: Engine
    messages: list[dict[str, Any]]
    previous: str
    covers: int  # the new summary's `covers`
    user_name: str
    persona: str | None

    def run(self) -> Summary | None:
        """The new summary, written by the chat's own model; None when the model wrote nothing."""
        from rolechat.conversation.summary import summarise

        text = summarise(self.engine.ask, self.messages, self.previous, self.user_name, persona=self.persona)
        return Summary(text, self.covers) if text else None


class CleanedReply(WrappedReply):
    """A scene reply without the leading `自己的名字：` a model may write and without surrounding blanks
    (`scene.clean_reply`), while it streams: the first characters are held back only until they can no longer
    be the speaker's name, and trailing blanks until more text follows."""

    def __init__(self, stream: ReplyStream, speaker_name: str) -> None:
        super().__init__(stream)
        self._name = speaker_name
        self._prefixes = [f"{speaker_name}{sep}" for sep in SEPARATORS]

    @property
    def text(self) -> str:
        return clean_reply(self._stream.text, self._name)

    def _undecided(self, head: str) -> bool:
        """Whether `head` (the reply so far, leading blanks removed) may still grow into the speaker's name."""
        return any(len(head) < len(p) and p.startswith(head) for p in self._prefixes)

    def __iter__(self) -> Iterator[str]:
        pieces = iter(self._stream)
        try:
            yield from self._cleaned(pieces)
        finally:  # a door that stops reading stops the generation
            close = getattr(pieces, "close", None)
            if close is not None:
                close()

    def _cleaned(self, pieces: Iterator[str]) -> Iterator[str]:
        head, started, blanks = "", False, ""
        for piece in pieces:
            if not started:
                head = (head + piece).lstrip()
                if not head or self._undecided(head):
                    continue
                prefix = next((p for p in self._prefixes if head.startswith(p)), "")
                head = head[len(prefix) :].lstrip()
                if not head:
                    continue
                started, piece = True, head
            text = blanks + piece
            body = text.rstrip()
            blanks = text[len(body) :]
            if body:
                yield body
        if not started and head.strip():  # the whole reply was shorter than the name it might have been
            yield head.rstrip()


class Reply:
    """One speaker's reply: its turn and stream, prepared when first asked for (so a door can show a failure
    where the reply would be), and `finish` to record it."""

    def __init__(self, session: Session, speaker: str | None) -> None:
        self.session = session
        self.speaker = speaker  # a scene's speaker (persona); None in a solo chat
        self.before = 0  # content-bearing messages of the history before this turn's user message
        self.entry: dict[str, Any] | None = None  # the history entry, once recorded
        self._name: str | None = None
        self._turn: Turn | None = None
        self._stream: ReplyStream | None = None

    def start(self) -> None:
        """Prepare the turn (once); its stream opens when first asked for, so a door may still adjust the turn."""
        if self._turn is None:
            self._turn, self.before = self.session.prepare(self.speaker)

    @property
    def name(self) -> str | None:
        """The name a scene's speaker goes by (asked once); None in a solo chat."""
        if self.speaker and self._name is None:
            self._name = self.session.names()[self.speaker]
        return self._name

    @property
    def started(self) -> bool:
        return self._turn is not None

    @property
    def turn(self) -> Turn:
        """The prepared turn (prepared now if it was not: ValueError when it cannot be)."""
        self.start()
        return self._turn

    @property
    def stream(self) -> ReplyStream:
        """The reply's text pieces (a scene line cleaned as it streams; see `CleanedReply`)."""
        if self._stream is None:
            stream = self.session.engine.stream(self.turn)
            if self.speaker:
                stream = CleanedReply(stream, self.name)
            self._stream = stream
        return self._stream

    def finish(self, text: str | None = None, entry: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record the reply (`text`: what the door kept of the stream, default all of it) in the session's
        history as `entry` (a door's own dict, updated) or a new one; returns the entry. A reply that never
        started is recorded with `text` (default empty) as it is."""
        if self.entry is not None:
            return self.entry
        if text is None:
            text = self._stream.text if self._stream is not None else ""
        kept = clean_reply(text, self.name) if self.name and self.started else text
        entry = entry if entry is not None else {"role": "assistant"}
        entry.update(role="assistant", content=kept)
        if self.speaker:
            entry["name"] = self.speaker
        self.session.history.append(entry)
        self.entry = entry
        return entry


def _said(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The messages that count in a prompt: user and assistant ones with text."""
    return [dict(m) for m in history if m.get("role") in ("user", "assistant") and m.get("content")]


@dataclass
class Session:
    """A conversation with one character (`persona`) or a scene (`characters`, two or more), and everything a
    turn of it needs; see the module docstring."""

    engine: Engine
    persona: str | Character | None = None  # a persona name (None/"base": the base model) or a Character
    characters: list[str] = field(default_factory=list)  # a scene's personas (two or more)
    order: str = "natural"  # a scene's speaking order: natural, list, manual, round-robin
    allow_self: bool = False  # a scene: may a character answer itself
    muted: list[str] = field(default_factory=list)  # a scene: characters who do not speak up on their own
    user: UserPersona = field(default_factory=UserPersona)
    setting: ChatSetting = field(default_factory=ChatSetting)
    knowledge_base: str | None = None  # answer from this knowledge base (solo chats)
    k: int | None = None
    retrieval: str | None = None  # dense, bm25 or hybrid (default rag.mode)
    condense: bool = True  # rewrite a follow-up into a standalone question before retrieving
    answer_mode: str | None = None  # auto, generate or extract (default rag.answer_mode)
    system: str = ""  # the caller's own system text
    params: Mapping[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)

    @property
    def is_scene(self) -> bool:
        return len(self.characters) >= 2

    def names(self) -> dict[str, str]:
        """A scene's persona -> the name it goes by (PersonaError for an unknown one)."""
        return self.engine.scene_names(self.characters)

    # -- opening and the user's messages ----------------------------------------------------------------------

    def opening(self, greeting: int = 0) -> list[dict[str, Any]]:
        """How the chat opens: the character's greeting number `greeting` (IndexError past the last), or in a scene
        each character's group greeting; [] without one."""
        if self.is_scene:
            return self.engine.scene_greetings(self.characters, self.user)
        text = self.engine.greeting(self.persona, self.user, greeting)
        return [{"role": "assistant", "content": text}] if text else []

    def start(self, greeting: int = 0) -> list[dict[str, Any]]:
        """Open an empty chat with `opening(greeting)`; the history as it now is."""
        if not self.history:
            self.history.extend(self.opening(greeting))
        return self.history

    def say(self, message: str) -> dict[str, Any]:
        """Record the user's message (the next `replies` answer it); the entry, kept up to date."""
        entry = {"role": "user", "content": message}
        self.history.append(entry)
        return entry

    # -- a round ------------------------------------------------------------------------------------------------

    def speakers(self, pick: str | None = None, rng: random.Random | None = None) -> list[str | None]:
        """Who answers now: in a solo chat the character (None); in a scene `pick`, or the speakers the scene's
        order picks after the history ([] when nobody does, as in manual order)."""
        if not self.is_scene:
            return [None]
        if pick is not None:
            if pick not in self.characters:
                raise ValueError(f"speaker {pick!r} is not in the scene ({', '.join(self.characters)})")
            return [pick]
        return self.engine.speaking_order(
            self.characters,
            _said(self.history),
            self.order,
            rng=rng or random.Random(),
            allow_self=self.allow_self,
            muted=self.muted,
        )

    def replies(self, pick: str | None = None, rng: random.Random | None = None) -> Iterator[Reply]:
        """The answer to the chat so far, one `Reply` per speaker, each prepared after the one before it was
        recorded (a reply the door did not `finish` is recorded whole when the next one is asked for)."""
        for speaker in self.speakers(pick, rng):
            reply = Reply(self, speaker)
            yield reply
            if reply.entry is None:
                reply.finish(reply.stream.join())

    def reply(self, speaker: str | None = None) -> Reply:
        """The reply of `speaker` (a scene's persona; None in a solo chat), its turn prepared now, not yet
        recorded."""
        reply = Reply(self, speaker)
        reply.start()
        return reply

    def prepare(self, speaker: str | None = None) -> tuple[Turn, int]:
        """(the turn of `speaker`, how many content-bearing messages came before the user's message). The message
        answered is the history's last one when it is the user's (the first speaker of a round), else none."""
        said = _said(self.history)
        pending = self.history[-1] if self.history and self.history[-1].get("role") == "user" else None
        message = pending["content"] if pending is not None and pending.get("content") else ""
        before = said[:-1] if message else said
        if self.is_scene:
            if speaker is None:
                raise ValueError("a scene turn needs its speaker")
            turn = self.engine.prepare_scene(
                message, characters=self.characters, speaker=speaker, history=before, **self._around()
            )
        else:
            if not message:
                raise ValueError("the conversation must end with a user message")
            turn = self._solo_turn(message, before)
        self.setting.lore_state = turn.lore_state
        if pending is not None and turn.user_text and turn.user_text != message:
            pending["content"] = turn.user_text  # as the regex scripts on user input left it
        return turn, len(before)

    def _solo_turn(self, message: str, before: list[dict[str, Any]]) -> Turn:
        summary = self.summary.within(len(before))
        return self.engine.prepare(
            message,
            character=self.persona,
            history=before[summary.covers :],
            summary=summary.text,
            knowledge_base=self.knowledge_base,
            k=self.k,
            mode=self.retrieval,
            condense=self.condense,
            answer_mode=self.answer_mode if self.knowledge_base else None,
            **self._around(),
        )

    def _around(self) -> dict[str, Any]:
        """What every turn of this chat is prepared with: who the user is, the caller's system text, the sampling
        settings, the chat's setting."""
        return {"user": self.user, "system": self.system, "params": self.params, "setting": self.setting}

    # -- long chats -----------------------------------------------------------------------------------------------

    def summary_job(self, reply: Reply) -> SummaryJob | None:
        """When `reply`'s prompt had to leave out older turns of a solo chat without a knowledge base: the job that
        summarises them (and `SUMMARY_SLACK` more, never the `KEEP_RECENT` latest), continuing the summary the
        turn was sent with; None when nothing was left out."""
        from rolechat.conversation.summary import dropped_history

        if not reply.started:
            return None
        turn = reply.turn
        dropped = dropped_history(turn.parts)
        if self.is_scene or turn.sources is not None or not dropped:
            return None
        said = _said(self.history)[: reply.before]
        summary = self.summary.within(len(said))
        upto = min(summary.covers + dropped + SUMMARY_SLACK, len(said) - KEEP_RECENT)
        if upto <= summary.covers:
            return None
        return SummaryJob(
            self.engine,
            said[summary.covers : upto],
            summary.text,
            upto,
            self.user.name or "用户",
            turn.persona,
        )


def answer_chain(engine: Engine, knowledge_base: str, **session: Any) -> Runnable:
    """A knowledge-base session as a LangChain Runnable (`rag.chain.build_chain`): input {"question",
    "chat_history"?}, output {"question", "standalone_question", "sources", "answer"}; streaming gives the sources
    first, then the answer's pieces. `session`: more `Session` fields (persona, user, k, retrieval, answer_mode,
    params...). The prompt is the engine's, exactly as every door sends it."""
    from rolechat.rag.chain import build_chain

    def run(question: str, history: list[dict[str, str]]) -> tuple[str, list[Document], Iterator[str]]:
        said = [*history, {"role": "user", "content": question}]
        reply = Session(engine, knowledge_base=knowledge_base, history=said, **session).reply()
        return reply.turn.question, list(reply.turn.docs), iter(reply.stream)

    return build_chain(run)
