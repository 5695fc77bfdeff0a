"""Multi-character scenes: each reply comes from its speaker's own adapter, sees the others as named turns,
stops at another's name, and the speaker order follows the scene's rule."""

from __future__ import annotations

import random

import pytest
import torch

from rolechat.conversation import Engine, UserPersona
from rolechat.conversation.scene import (
    CONTINUE_CUE,
    clean_reply,
    next_speaker,
    scene_transcript,
    speaking_order,
    stop_strings,
)
from rolechat.llm import LLMConfig, Runtime
from tests.test_llm_runtime import install, make_adapter

USER = UserPersona("小明")
NAMES = {"alpha": "ALPHA", "beta": "BETA"}


@pytest.fixture(scope="module")
def adapters(tiny_qwen2, tmp_path_factory):
    root = tmp_path_factory.mktemp("scene-personas")
    return {
        "alpha": make_adapter(tiny_qwen2, root / "alpha", 1, system="你是阿尔法。"),
        "beta": make_adapter(tiny_qwen2, root / "beta", 2),
    }


@pytest.fixture
def runtime(tiny_qwen2, adapters):
    install(adapters["alpha"], adapters["beta"])
    return Runtime.load(LLMConfig(model=str(tiny_qwen2)))


def solo_logits(base, adapter, runtime: Runtime, messages) -> torch.Tensor:
    """Next-token logits of a freshly loaded model with `adapter` alone (no switching), for the exact prompt."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapter)
    ids = runtime.prompt_ids(messages, adapter.name, persona_system=False)
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0, -1]


SCENE = [
    {"role": "user", "content": "大家好"},
    {"role": "assistant", "content": "你好，我是阿尔法。", "name": "alpha"},
    {"role": "assistant", "content": "我是贝塔。", "name": "beta"},
]


def test_each_scene_reply_comes_from_its_speakers_own_adapter(runtime, tiny_qwen2, adapters):
    engine = Engine(runtime)
    logits = {}
    for speaker in ("alpha", "beta"):
        turn = engine.prepare_scene(
            "你们在做什么？", characters=["alpha", "beta"], speaker=speaker, history=SCENE, user=USER
        )
        assert turn.persona == speaker
        with runtime._model_lock, runtime._persona_context(speaker), torch.inference_mode():
            ids = runtime.prompt_ids(turn.messages, speaker, persona_system=False)
            got = runtime.model(input_ids=torch.tensor([ids])).logits[0, -1]
        mine = solo_logits(tiny_qwen2, adapters[speaker], runtime, turn.messages)
        other = solo_logits(tiny_qwen2, adapters["beta" if speaker == "alpha" else "alpha"], runtime, turn.messages)
        assert torch.allclose(got, mine, atol=1e-4)
        assert not torch.allclose(got, other, atol=1e-3)
        logits[speaker] = got
        # generating the turn is that persona's solo generation of the same prompt
        params = {"temperature": 0, "max_new_tokens": 6}
        turn = engine.prepare_scene(
            "你们在做什么？", characters=["alpha", "beta"], speaker=speaker, history=SCENE, user=USER, params=params
        )
        solo = runtime.stream(turn.messages, speaker, turn.params, persona_system=False).join()
        assert engine.stream(turn).join() == solo


def test_the_speaker_sees_its_own_lines_as_its_turns_and_the_others_by_name(runtime):
    turn = Engine(runtime).prepare_scene("你们在做什么？", characters=["alpha", "beta"], speaker="alpha", history=SCENE)
    roles = [(m["role"], m["content"]) for m in turn.messages]
    assert roles[0][0] == "system" and "你是阿尔法。" in roles[0][1] and "你只扮演ALPHA" in roles[0][1]
    assert roles[1:] == [
        ("user", "用户：大家好"),
        ("assistant", "你好，我是阿尔法。"),
        ("user", "BETA：我是贝塔。\n用户：你们在做什么？"),
    ]
    turn = Engine(runtime).prepare_scene("", characters=["alpha", "beta"], speaker="beta", history=SCENE)
    assert turn.messages[-3:] == [
        {"role": "user", "content": "用户：大家好\nALPHA：你好，我是阿尔法。"},
        {"role": "assistant", "content": "我是贝塔。"},
        {"role": "user", "content": CONTINUE_CUE},  # beta spoke last and nobody since: it goes on
    ]


def test_the_reply_stops_at_another_characters_name(runtime):
    turn = Engine(runtime).prepare_scene("hi", characters=["alpha", "beta"], speaker="alpha", user=USER)
    for stop in ("\nBETA：", "BETA：", "\n小明：", "BETA:"):
        assert stop in turn.params.stop
    assert not any(s.startswith(("ALPHA", "\nALPHA")) for s in turn.params.stop)
    # the generation cuts there: a reply that would write "BETA：" ends before it
    from rolechat.llm.generation import GenerationStream

    stream = GenerationStream.__new__(GenerationStream)
    stream.stop_strings = turn.params.stop
    assert stream._visible("好的。\nBETA：我来说") == ("好的。", True)


def test_stop_strings_and_clean_reply():
    stops = stop_strings("alpha", {"alpha": "阿尔法", "beta": "贝塔", "gamma": "伽马"}, "小明")
    assert "\n贝塔：" in stops and "伽马：" in stops and "\n小明：" in stops
    assert not any("阿尔法" in s for s in stops)
    assert clean_reply(" 阿尔法：你好 ", "阿尔法") == "你好"
    assert clean_reply("你好", "阿尔法") == "你好"


def test_natural_order_lets_the_named_characters_speak_first_then_the_talkative_ones():
    chars = ["alpha", "beta", "gamma"]
    names = {"alpha": "阿尔法", "beta": "贝塔", "gamma": "伽马"}
    quiet = {"alpha": 0.0, "beta": 0.0, "gamma": 0.0}
    hist = [{"role": "user", "content": "伽马，你怎么看？还有贝塔？"}]
    order = speaking_order(chars, hist, "natural", names, talkativeness=quiet, rng=random.Random(0))
    assert order == ["gamma", "beta"]  # named, in the order named; alpha never speaks up on its own
    chatty = {"alpha": 1.0, "beta": 1.0, "gamma": 1.0}
    order = speaking_order(chars, hist, "natural", names, talkativeness=chatty, rng=random.Random(0))
    assert order[:2] == ["gamma", "beta"] and sorted(order) == sorted(chars)
    # nobody named and nobody talkative: one of them, at random
    hist = [{"role": "user", "content": "然后呢"}]
    picks = {
        tuple(speaking_order(chars, hist, "natural", names, talkativeness=quiet, rng=random.Random(n)))
        for n in range(30)
    }
    assert picks == {("alpha",), ("beta",), ("gamma",)}
    # a character does not answer its own line, even when it names itself, unless the scene allows it
    hist = [{"role": "assistant", "content": "我阿尔法觉得伽马说得对", "name": "alpha"}]
    assert speaking_order(chars, hist, "natural", names, talkativeness=chatty, rng=random.Random(1))[0] == "gamma"
    assert "alpha" not in speaking_order(chars, hist, "natural", names, talkativeness=chatty, rng=random.Random(1))
    assert "alpha" in speaking_order(
        chars, hist, "natural", names, talkativeness=chatty, rng=random.Random(1), allow_self=True
    )


def test_list_manual_round_robin_and_muted_characters():
    chars = ["alpha", "beta", "gamma"]
    hist = [{"role": "assistant", "content": "好", "name": "alpha"}, {"role": "user", "content": "然后呢"}]
    assert speaking_order(chars, hist, "list") == chars
    assert speaking_order(chars, hist, "manual") == []
    assert speaking_order(chars, hist, "round-robin") == ["beta", "gamma", "alpha"]
    assert speaking_order(chars, hist, "list", muted=["beta"]) == ["alpha", "gamma"]
    with pytest.raises(ValueError, match="picks nobody"):
        next_speaker(chars, hist, "manual")


def test_a_name_of_ascii_words_is_named_as_a_word_and_a_chinese_one_as_text():
    # SillyTavern's extractAllWords finds ASCII words only; rolechat also finds a Chinese name inside Chinese text
    chars = ["a", "b"]
    names = {"a": "Alice", "b": "贝塔"}
    quiet = {"a": 0.0, "b": 0.0}
    say = lambda text: speaking_order(chars, [{"role": "user", "content": text}], "natural", names, talkativeness=quiet)
    assert say("alice, hi") == ["a"] and say("贝塔你好，Alice") == ["b", "a"]
    assert len(say("Malice is here")) == 1  # no one named: one at random


def test_bad_scenes_are_refused(runtime):
    engine = Engine(runtime)
    with pytest.raises(ValueError, match="at least two characters"):
        engine.prepare_scene("hi", characters=["alpha"], speaker="alpha")
    with pytest.raises(ValueError, match="speaker 'gamma' is not in the scene"):
        engine.prepare_scene("hi", characters=["alpha", "beta"], speaker="gamma")
    with pytest.raises(ValueError, match="unknown speaker order"):
        next_speaker(["alpha", "beta"], [], "random")
    with pytest.raises(ValueError, match="not available"):
        engine.prepare_scene("hi", characters=["alpha", "ghost"], speaker="alpha")


def test_transcript_joins_the_others_lines_into_one_user_turn():
    past, last = scene_transcript(SCENE, "继续", "beta", NAMES, "小明")
    assert past == [
        {"role": "user", "content": "小明：大家好\nALPHA：你好，我是阿尔法。"},
        {"role": "assistant", "content": "我是贝塔。"},
    ]
    assert last == "小明：继续"


def test_a_summary_of_older_turns_goes_in_the_system_part_and_shows_as_a_part(runtime):
    turn = Engine(runtime).prepare(
        "还记得吗？", character="beta", history=SCENE[:2], summary="小明和贝塔约好八点见面。"
    )
    assert "此前对话的概要：小明和贝塔约好八点见面。" in turn.messages[0]["content"]
    part = next(p for p in turn.parts if p.kind == "summary")
    assert part.included and part.tokens > 0
    assert not any(p.kind == "summary" for p in Engine(runtime).prepare("hi", character="beta").parts)


def test_a_saved_scene_round_trips_and_bad_ones_are_named():
    from rolechat.conversation.scene import Scene, delete_scene, list_scenes, load_scene, save_scene

    scene = Scene("茶会", ["alpha", "beta"], order="list", muted=["beta"], lorebooks=["天气"], scenario="雨夜")
    save_scene(scene)
    assert load_scene("茶会") == scene and [s.name for s in list_scenes()] == ["茶会"]
    with pytest.raises(FileExistsError):
        save_scene(scene)
    merged = scene.setting(["旅途", "天气"], "")
    assert merged.lorebooks == ["天气", "旅途"] and merged.scenario == "雨夜"
    assert scene.setting(scenario="晴天").scenario == "晴天"  # the chat's own scenario wins
    with pytest.raises(ValueError, match="muted gamma not in the scene"):
        Scene("x", ["alpha", "beta"], muted=["gamma"])
    with pytest.raises(ValueError, match="unknown speaker order"):
        Scene("x", ["alpha", "beta"], order="random")
    with pytest.raises(ValueError, match=r"茶会2\.json: unknown field 'members'"):
        from rolechat.conversation.scene import scenes_dir

        (scenes_dir() / "茶会2.json").write_text('{"name": "茶会2", "members": []}', encoding="utf-8")
        load_scene("茶会2")
    delete_scene("茶会")
    with pytest.raises(ValueError, match="no scene '茶会'"):
        load_scene("茶会")
