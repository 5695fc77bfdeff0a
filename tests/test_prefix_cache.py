"""llm.prefix_cache: a prompt seen again is not prefilled again, a prompt that starts like a stored one is prefilled
from where they part, and a reused cache never changes a reply or outlives the adapter that computed it."""

from __future__ import annotations

import pytest
import torch

from rolechat.llm import LLMConfig, Runtime
from rolechat.llm.prefix_cache import PrefixCache
from tests.test_llm_runtime import install, make_adapter

GREEDY = {"temperature": 0, "max_new_tokens": 16}
TURN_1 = [
    {
        "role": "system",
        "content": "你是一个乐于助人的助手，请用中文回答问题，语气要友好。今天我们聊聊公园和湖边的风景。",
    },
    {"role": "user", "content": "今天天气很好，我们去公园散步吧。"},
]


@pytest.fixture(scope="module")
def personas(tiny_qwen2, tmp_path_factory):
    root = tmp_path_factory.mktemp("prefix-personas")
    return {"alpha": make_adapter(tiny_qwen2, root / "alpha", 21, system="你是阿尔法。")}


def runtime(tiny_qwen2, **cfg) -> Runtime:
    return Runtime.load(LLMConfig(model=str(tiny_qwen2), **cfg))


def prefills(rt: Runtime, monkeypatch) -> list[int]:
    """The number of prompt tokens of each prefill forward pass the scheduler runs from now on."""
    scheduler, seen = rt._scheduler, []
    forward = scheduler._forward

    def counting(rows, **inputs):
        if "logits_to_keep" in inputs:  # a prefill (decode steps keep every position)
            seen.append(inputs["input_ids"].shape[1])
        return forward(rows, **inputs)

    monkeypatch.setattr(scheduler, "_forward", counting)
    return seen


def reply(rt: Runtime, messages, persona=None, params=GREEDY) -> str:
    return rt.stream(messages, persona, params).join()


def test_the_same_prompt_again_runs_no_prefill_and_gives_the_same_reply(tiny_qwen2, personas, monkeypatch):
    install(personas["alpha"])
    rt = runtime(tiny_qwen2)
    counted = prefills(rt, monkeypatch)
    for persona in (None, "alpha"):
        first = reply(rt, TURN_1, persona)
        again = reply(rt, TURN_1, persona)
        assert again == first
    cache = rt._scheduler.prefixes
    assert len(counted) == 2  # one prefill per persona: the second request of each reused the first's KV
    assert (cache.hits, cache.misses, len(cache)) == (2, 2, 2)  # keyed by adapter: alpha never reused base's KV
    seeded = {"temperature": 0.9, "max_new_tokens": 16, "seed": 7}
    assert reply(rt, TURN_1, "alpha", seeded) == reply(runtime(tiny_qwen2, prefix_cache_mb=0), TURN_1, "alpha", seeded)


def test_the_next_turn_is_prefilled_from_where_it_parts_and_replies_as_a_full_prefill(
    tiny_qwen2, personas, monkeypatch
):
    install(personas["alpha"])
    rt, plain = runtime(tiny_qwen2), runtime(tiny_qwen2, prefix_cache_mb=0)
    counted = prefills(rt, monkeypatch)
    for persona in (None, "alpha"):
        first = reply(rt, TURN_1, persona)
        turn_2 = [*TURN_1, {"role": "assistant", "content": first}, {"role": "user", "content": "然后呢？"}]
        prompt_1, prompt_2 = rt.request(TURN_1, persona, GREEDY)[0], rt.request(turn_2, persona, GREEDY)[0]
        assert list(prompt_2[: len(prompt_1)]) == list(prompt_1)  # what makes the reuse possible
        assert reply(rt, turn_2, persona) == reply(plain, turn_2, persona)
        assert counted[-1] == len(prompt_2) - len(prompt_1)  # only the new turn was prefilled
    assert rt._scheduler.prefixes.partial == 2 and plain._scheduler.prefixes is not None
    assert len(plain._scheduler.prefixes) == 0  # 0 MB: nothing kept


def test_an_adapter_loaded_again_with_new_weights_does_not_reuse_its_old_prompts(tiny_qwen2, tmp_path, monkeypatch):
    from rolechat import settings

    folder = make_adapter(tiny_qwen2, tmp_path / "gamma", 31)
    install(folder)
    rt = runtime(tiny_qwen2)
    before = reply(rt, TURN_1, "gamma")
    make_adapter(tiny_qwen2, settings.personas_dir() / "gamma", 32)  # retrained in place
    rt.reload_personas()
    counted = prefills(rt, monkeypatch)
    after = reply(rt, TURN_1, "gamma")
    assert counted == [len(rt.request(TURN_1, "gamma", GREEDY)[0])]  # prefilled in full with the new weights
    assert after == reply(runtime(tiny_qwen2, prefix_cache_mb=0), TURN_1, "gamma") != before


def fake_cache(tokens: int, width: int = 8):
    from types import SimpleNamespace

    layer = SimpleNamespace(keys=torch.zeros(1, 1, tokens, width), values=torch.zeros(1, 1, tokens, width))
    return SimpleNamespace(layers=[layer])


def test_entries_past_the_memory_budget_go_least_recently_used_first():
    per_entry = 2 * 40 * 8 * 4 + 10 * 4  # keys and values of 40 tokens, and 10 logits, in float32
    cache = PrefixCache(max_bytes=2 * per_entry, min_tokens=4)
    prompts = [tuple(range(i, i + 40)) for i in (0, 100, 200)]
    cache.store(None, prompts[0], fake_cache(40), torch.zeros(1, 10))
    cache.store(None, prompts[1], fake_cache(40), torch.zeros(1, 10))
    assert cache.lookup(None, prompts[0]).logits is not None  # used: now the most recent
    cache.store(None, prompts[2], fake_cache(40), torch.zeros(1, 10))
    assert (len(cache), cache.nbytes) == (2, 2 * per_entry)
    assert cache.lookup(None, prompts[1]) is None  # the least recently used went
    hit = cache.lookup(None, (*prompts[0][:10], 999, 998))
    assert hit.length == 10 and hit.logits is None and hit.keys[0].shape[2] == 10
    assert cache.lookup("other", prompts[0]) is None  # another adapter's KV is never reused
    assert cache.lookup(None, (*prompts[2][:3], 5, 6)) is None  # shares fewer than min_tokens
    cache.forget(None)
    assert (len(cache), cache.nbytes) == (0, 0)
    with pytest.raises(ValueError, match="llm.prefix_cache_mb must be >= 0"):
        LLMConfig(prefix_cache_mb=-1)
