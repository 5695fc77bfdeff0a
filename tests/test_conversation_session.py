"""A conversation Session: the round of a scene, the reply cleaned while it streams, what a turn leaves the chat,
and the summary job of a long chat."""

from __future__ import annotations

import pytest

from rolechat.conversation import Engine, UserPersona
from rolechat.conversation.card import Character
from rolechat.conversation.characters import save_character
from rolechat.conversation.scene import clean_reply
from rolechat.conversation.session import KEEP_RECENT, SUMMARY_SLACK, CleanedReply, Session, Summary
from rolechat.llm import LLMConfig, Runtime

GREEDY = {"temperature": 0.0, "max_new_tokens": 6}


class Pieces:
    """A stream of fixed pieces, shaped like a GenerationStream; records whether it was closed."""

    def __init__(self, *pieces: str) -> None:
        self.pieces, self.closed = pieces, False
        self.text = "".join(pieces)
        self.stats = None

    def __iter__(self):
        try:
            yield from self.pieces
        finally:
            self.closed = True


@pytest.mark.parametrize(
    "pieces",
    [
        ("林", "夕：", " 你好", "，客官。 ", " \n"),
        (" 林夕", ":", "好的"),
        ("林", "子里有风。"),
        ("林",),
        ("  ", "林夕：", "  "),
        ("夕阳", "西下"),
        ("你好林夕：", "再见"),
    ],
)
def test_a_scene_reply_streams_as_the_chat_keeps_it(pieces):
    stream = CleanedReply(Pieces(*pieces), "林夕")
    streamed = "".join(stream)
    assert streamed == stream.text == clean_reply("".join(pieces), "林夕")


def test_a_cleaned_reply_closed_early_stops_the_generation():
    source = Pieces("林夕：", "一", "二", "三")
    pieces = iter(CleanedReply(source, "林夕"))
    assert next(pieces) == "一"
    pieces.close()
    assert source.closed


def test_a_saved_summary_counts_only_while_its_messages_are_there():
    assert Summary.of({"text": "约好八点", "covers": 4}, 6) == Summary("约好八点", 4)
    assert Summary.of({"text": "约好八点", "covers": 7}, 6) == Summary()  # messages were deleted since
    assert Summary.of({"text": "", "covers": 2}, 6) == Summary()
    assert Summary.of({"text": "x", "covers": "two"}, 6) == Summary()
    assert Summary.of(None, 6) == Summary()


@pytest.fixture(scope="module")
def runtime(tiny_qwen2) -> Runtime:
    return Runtime.load(LLMConfig(model=str(tiny_qwen2)))


@pytest.fixture
def scene_cast(runtime):
    save_character(Character(name="林夕", description="说书人", first_mes="{{user}}，请坐。"), "linxi")
    save_character(Character(name="苏婉", description="老板娘", first_mes="哟，{{user}}来了。"), "suwan")
    runtime.reload_personas()


def test_a_scene_round_records_the_message_once_and_each_speaker_by_name(runtime, scene_cast):
    engine = Engine(runtime)
    session = Session(engine, characters=["linxi", "suwan"], order="list", user=UserPersona("小明"), params=GREEDY)
    assert session.start() == [
        {"role": "assistant", "content": "小明，请坐。", "name": "linxi"},
        {"role": "assistant", "content": "哟，小明来了。", "name": "suwan"},
    ]
    session.say("两位好")
    replies = []
    for reply in session.replies():
        replies.append(reply)
        reply.finish("".join(reply.stream))
    assert [r.speaker for r in replies] == ["linxi", "suwan"]
    assert [m["role"] for m in session.history] == ["assistant", "assistant", "user", "assistant", "assistant"]
    assert [m.get("name") for m in session.history[3:]] == ["linxi", "suwan"]
    # the first speaker answered the user's line; the second heard it, and the first speaker's reply, as history
    assert replies[0].turn.user_text == "两位好" and replies[1].turn.user_text == ""
    assert replies[1].turn.messages[-1]["content"].startswith("小明：两位好")
    assert session.speakers(pick="suwan") == ["suwan"]
    with pytest.raises(ValueError, match="not in the scene"):
        session.speakers(pick="nobody")


def test_a_reply_not_finished_by_the_door_is_recorded_whole(runtime):
    session = Session(Engine(runtime), params=GREEDY)
    session.say("你好")
    replies = list(session.replies())  # the door read nothing: the reply is generated and recorded anyway
    assert len(replies) == 1 and session.history[-1] == {"role": "assistant", "content": replies[0].stream.text}


def test_a_turn_that_cannot_be_prepared_fails_where_the_door_shows_it(runtime):
    session = Session(Engine(runtime), persona="nobody", params=GREEDY)
    session.say("你好")
    reply = next(session.replies())
    with pytest.raises(ValueError, match="nobody"):
        _ = reply.turn
    assert reply.finish(entry={"role": "assistant", "error": "x"})["content"] == ""  # recorded as it is


def test_a_long_chat_summarises_what_its_prompt_left_out(tiny_qwen2):
    small = Runtime.load(LLMConfig(model=str(tiny_qwen2), context_length=256))
    session = Session(Engine(small), params={"temperature": 0.0, "max_new_tokens": 4})
    for n in range(8):
        session.history += [
            {"role": "user", "content": f"第{n}件事：明天早上八点在东门茶馆见面，带上旧书。"},
            {"role": "assistant", "content": f"好的，第{n}件事记下了。"},
        ]
    session.say("我们约在哪里？")
    reply = session.reply()
    reply.finish()
    dropped = sum(1 for p in reply.turn.parts if p.kind == "history" and not p.included)
    assert dropped > 0
    job = session.summary_job(reply)
    assert job is not None and job.previous == ""
    assert job.covers == min(dropped + SUMMARY_SLACK, 16 - KEEP_RECENT)
    assert job.messages == session.history[: job.covers]
    session.summary = Summary("他们约好在东门茶馆见面。", job.covers)
    session.say("带什么？")
    later = session.reply()
    assert "此前对话的概要：他们约好在东门茶馆见面。" in later.turn.messages[0]["content"]
    sent = " ".join(p.text for p in later.turn.parts if p.kind == "history")
    assert "第0件事" not in sent  # the summarised turns are no longer sent


def test_a_summary_of_more_than_the_context_holds_keeps_the_newest_lines(tiny_qwen2, monkeypatch):
    """Short requests outside the chat (summaries, standalone questions) are fitted by the engine's one fitter: the
    oldest transcript lines go, the newest stay; the runtime itself never trims."""
    from rolechat.conversation.summary import summarise

    small = Runtime.load(LLMConfig(model=str(tiny_qwen2), context_length=1024))
    sent = []
    original = Runtime.chat

    def chat(self, messages, persona=None, params=None):
        sent.append(messages[-1]["content"])
        return original(self, messages, persona, params)

    monkeypatch.setattr(Runtime, "chat", chat)
    messages = [{"role": "user", "content": f"第{n}件事：明天早上八点在东门茶馆见面，带上旧书。"} for n in range(60)]
    summarise(Engine(small).ask, messages, user_name="小明")
    assert len(sent) == 1 and "第59件事" in sent[0] and "第0件事：" not in sent[0]
    assert len(small.prompt_ids([{"role": "user", "content": sent[0]}])) <= 1024 - 200  # the summary's room
