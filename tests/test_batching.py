"""llm.batching: concurrent replies decoded together, personas mixed in one forward pass, each reply its solo reply."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pytest

from rolechat.llm import LLMConfig, Runtime
from tests.api_support import slowed
from tests.test_llm_runtime import install, make_adapter

SHORT = [{"role": "user", "content": "你好"}]
LONG = [
    {"role": "system", "content": "你是一个乐于助人的助手，请用中文回答问题，语气要友好。"},
    {"role": "user", "content": "今天天气很好，我们去公园散步吧。请告诉我你的想法和计划，好吗？"},
    {"role": "assistant", "content": "好的，我们先去湖边看看。"},
    {"role": "user", "content": "然后呢？"},
]
MIDDLE = [{"role": "user", "content": "臣妾做不到啊！皇上万福金安。"}]
PROMPTS = {"short": SHORT, "middle": MIDDLE, "long": LONG}
GREEDY = {"temperature": 0, "max_new_tokens": 20}


@pytest.fixture(scope="module")
def personas(tiny_qwen2, tmp_path_factory):
    root = tmp_path_factory.mktemp("batch-personas")
    return {
        "alpha": make_adapter(tiny_qwen2, root / "alpha", 11, system="你是阿尔法。"),
        "beta": make_adapter(tiny_qwen2, root / "beta", 12, targets=["q_proj", "v_proj"]),
    }


@pytest.fixture
def runtime(tiny_qwen2, personas):
    install(personas["alpha"], personas["beta"])
    return Runtime.load(LLMConfig(model=str(tiny_qwen2)))


def solo(rt: Runtime, messages, persona, params=GREEDY) -> str:
    return rt.stream(messages, persona, params).join()


def generate_path(rt: Runtime, messages, persona, params) -> str:
    """The reply from transformers' own `generate` (the pre-batching path), for reference."""
    ids, p = rt.request(messages, persona, params)
    return rt._generate_stream(ids, p, persona).join()


@contextmanager
def held(rt: Runtime, expect: int):
    """Keep new replies waiting until `expect` of them are queued, so they all start in the same step."""
    scheduler = rt._scheduler
    with scheduler.exclusive():
        yield
        deadline = time.time() + 30
        while len(scheduler._pending) < expect and time.time() < deadline:
            time.sleep(0.005)
        assert len(scheduler._pending) == expect


def run_all(streams) -> list[str]:
    threads = [threading.Thread(target=s.join) for s in streams]
    for t in threads:
        t.start()
    return threads


def test_the_local_runtime_batches_and_max_concurrent_auto_follows_it(runtime, tiny_qwen2):
    assert runtime._scheduler is not None and runtime.parallel_generations == 64
    assert Runtime.load(LLMConfig(model=str(tiny_qwen2), max_batch=5)).parallel_generations == 5
    with pytest.raises(ValueError, match="llm.max_batch must be >= 1"):
        LLMConfig(max_batch=0)


def test_a_lone_reply_is_what_transformers_generate_gives(runtime):
    for persona in (None, "alpha", "beta"):
        for messages in (SHORT, LONG):
            assert solo(runtime, messages, persona) == generate_path(runtime, messages, persona, GREEDY)
    assert not runtime._model_lock.locked()


def test_mixed_personas_and_prompt_lengths_in_one_batch_give_each_its_solo_reply(runtime, monkeypatch):
    from rolechat.llm import batching

    per_row, used = batching.per_row, []
    monkeypatch.setattr(batching, "per_row", lambda *a: used.append(per_row(*a)) or used[-1])
    jobs = [(name, persona) for name in PROMPTS for persona in (None, "alpha", "beta")]
    expected = {job: solo(runtime, PROMPTS[job[0]], job[1]) for job in jobs}
    assert len(set(expected.values())) > 3  # the personas really answer differently
    scheduler = runtime._scheduler
    with held(runtime, len(jobs)):
        streams = {job: runtime.stream(PROMPTS[job[0]], job[1], GREEDY) for job in jobs}
        threads = run_all(streams.values())
    for t in threads:
        t.join(60)
    assert scheduler.widest == len(jobs)  # all nine in one forward pass
    assert used and all(c is not None for c in used)  # llm/lora_batch.py applied each row's LoRA
    assert {job: s.text for job, s in streams.items()} == expected
    assert all(s.stats.completion_tokens >= 1 for s in streams.values())
    assert not runtime._model_lock.locked()


def test_replies_joining_mid_flight_get_their_solo_reply(runtime):
    long_params = {"temperature": 0, "max_new_tokens": 40}
    first_expected = solo(runtime, SHORT, "alpha", long_params)
    later = [(LONG, None), (MIDDLE, "beta"), (SHORT, "alpha"), (LONG, "alpha")]  # longer and shorter prompts
    later_expected = [solo(runtime, m, p) for m, p in later]
    with slowed(runtime, 0.01):  # about 0.4 s for the first reply: the others join while it runs
        first = runtime.stream(SHORT, "alpha", long_params)
        pieces = iter(first)
        got = [next(pieces)]
        streams, threads = [], []
        for messages, persona in later:
            streams.append(runtime.stream(messages, persona, GREEDY))
            threads += run_all(streams[-1:])
            time.sleep(0.03)  # a few steps later the next one arrives
        got.extend(pieces)
        for t in threads:
            t.join(60)
    assert "".join(got) == first.text == first_expected
    assert [s.text for s in streams] == later_expected
    assert runtime._scheduler.widest >= 3


def test_rows_ending_at_different_times_by_length_and_stop_string(runtime):
    full = solo(runtime, LONG, "beta", {"temperature": 0, "max_new_tokens": 30})
    assert len(full) > 6
    stop = full[4:6]
    cut = full[: full.index(stop)]
    cases = [
        (SHORT, None, {"temperature": 0, "max_new_tokens": 3}),
        (LONG, "beta", {"temperature": 0, "max_new_tokens": 30, "stop": [stop]}),
        (MIDDLE, "alpha", {"temperature": 0, "max_new_tokens": 25}),
        (LONG, "alpha", {"temperature": 0, "max_new_tokens": 1}),
    ]
    expected = [solo(runtime, m, p, params) for m, p, params in cases]
    assert expected[1] == cut
    with held(runtime, len(cases)):
        streams = [runtime.stream(m, p, params) for m, p, params in cases]
        threads = run_all(streams)
    for t in threads:
        t.join(60)
    assert [s.text for s in streams] == expected
    assert streams[0].stats.completion_tokens <= 3 and streams[3].stats.completion_tokens == 1
    assert streams[1].stats.finish_reason == "stop"
    assert not runtime._model_lock.locked()


def test_cancelling_one_row_leaves_the_others_untouched(runtime):
    params = {"temperature": 0, "max_new_tokens": 30}
    jobs = [(LONG, "alpha"), (MIDDLE, None), (SHORT, "beta")]
    expected = [solo(runtime, m, p, params) for m, p in jobs]
    with slowed(runtime, 0.005):
        with held(runtime, 4):
            doomed = runtime.stream(LONG, "beta", {"temperature": 0, "max_new_tokens": 200})
            streams = [runtime.stream(m, p, params) for m, p in jobs]
            threads = run_all(streams)
            doomed_pieces = iter(doomed)
            reader = threading.Thread(target=next, args=(doomed_pieces,))
            reader.start()
        reader.join(60)
        doomed.close()  # a client hanging up: returns once its row has left the batch
        assert doomed.stats.finish_reason == "cancelled" and doomed.stats.completion_tokens < 200
        for t in threads:
            t.join(60)
    assert [s.text for s in streams] == expected
    assert not runtime._model_lock.locked()


def test_a_stream_closed_before_it_started_never_reaches_the_model(runtime):
    scheduler = runtime._scheduler
    with scheduler.exclusive():
        stream = runtime.stream(SHORT, "alpha", GREEDY)
        pieces = iter(stream)
        reader = threading.Thread(target=lambda: list(pieces))
        reader.start()
        deadline = time.time() + 10
        while not scheduler._pending and time.time() < deadline:
            time.sleep(0.005)
        stream.cancel()  # cancelled while waiting for a row: it ends without a token
        reader.join(30)
        assert not reader.is_alive()
    assert stream.text == "" and stream.stats.completion_tokens == 0
    assert stream.stats.finish_reason == "cancelled"


def test_seeded_sampling_in_a_batch_equals_seeded_solo_and_generate(runtime):
    sampled = {"temperature": 0.9, "top_p": 0.8, "top_k": 20, "max_new_tokens": 20, "seed": 1234}
    hot = {"temperature": 1.5, "top_p": 1.0, "top_k": 0, "max_new_tokens": 20, "seed": 5}
    jobs = [(LONG, "alpha", sampled), (SHORT, None, hot), (MIDDLE, "beta", GREEDY), (SHORT, "beta", sampled)]
    expected = [solo(runtime, m, p, params) for m, p, params in jobs]
    assert expected[0] == generate_path(runtime, LONG, "alpha", sampled)  # the seed means what it meant
    assert solo(runtime, LONG, "alpha", {**sampled, "seed": 99}) != expected[0]
    with held(runtime, len(jobs)):
        streams = [runtime.stream(m, p, params) for m, p, params in jobs]
        threads = run_all(streams)
    for t in threads:
        t.join(60)
    assert [s.text for s in streams] == expected


def test_unseeded_sampling_rows_run_beside_greedy_ones(runtime):
    params = {"temperature": 1.0, "top_p": 0.95, "max_new_tokens": 12}
    expected = solo(runtime, MIDDLE, "alpha")
    with held(runtime, 4):
        streams = [runtime.stream(SHORT, p, params) for p in (None, "alpha", "beta")]
        streams.append(runtime.stream(MIDDLE, "alpha", GREEDY))
        threads = run_all(streams)
    for t in threads:
        t.join(60)
    assert all(s.stats.completion_tokens >= 1 for s in streams[:3])
    assert streams[3].text == expected


def test_more_replies_than_rows_wait_for_a_free_row(tiny_qwen2, personas):
    install(personas["alpha"])
    rt = Runtime.load(LLMConfig(model=str(tiny_qwen2), max_batch=2))
    jobs = [(SHORT, None), (LONG, "alpha"), (MIDDLE, "alpha"), (SHORT, "alpha"), (MIDDLE, None)]
    expected = [solo(rt, m, p) for m, p in jobs]
    streams = [rt.stream(m, p, GREEDY) for m, p in jobs]
    threads = run_all(streams)
    for t in threads:
        t.join(60)
    assert [s.text for s in streams] == expected
    assert rt._scheduler.widest == 2


def test_reloading_personas_waits_for_running_rows(runtime, personas, tiny_qwen2, tmp_path):
    from rolechat import settings

    stream = runtime.stream(LONG, "alpha", {"temperature": 0, "max_new_tokens": 30})
    expected = solo(runtime, LONG, "alpha", {"temperature": 0, "max_new_tokens": 30})
    pieces = iter(stream)
    got = [next(pieces)]
    make_adapter(tiny_qwen2, settings.personas_dir() / "gamma", 13)
    reloaded = threading.Thread(target=runtime.reload_personas)
    reloaded.start()
    got.extend(pieces)  # the running reply finishes undisturbed while the reload waits
    reloaded.join(60)
    assert "".join(got) == expected
    assert "gamma" in runtime.persona_names()
    assert solo(runtime, SHORT, "gamma") == generate_path(runtime, SHORT, "gamma", GREEDY)


@pytest.mark.parametrize("arch", ["qwen3", "glm4"])
def test_other_architectures_batch_too(tiny_models, arch):
    rt = Runtime.load(LLMConfig(model=str(tiny_models[arch])))
    assert rt._scheduler is not None
    jobs = [SHORT, LONG, MIDDLE]
    expected = [generate_path(rt, m, None, GREEDY) for m in jobs]
    with held(rt, len(jobs)):
        streams = [rt.stream(m, None, GREEDY) for m in jobs]
        threads = run_all(streams)
    for t in threads:
        t.join(60)
    assert [s.text for s in streams] == expected


def test_concurrent_api_requests_are_batched_and_get_their_solo_replies(runtime):
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from rolechat.api import create_app
    from tests.api_support import running

    jobs = [("base", "你好"), ("alpha", "你好"), ("beta", "今天天气很好"), ("alpha", "臣妾做不到啊！"), ("base", "Hi")]

    def ask(url: str, model: str, text: str) -> str:
        body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16, "temperature": 0}
        resp = httpx.post(url + "/v1/chat/completions", json=body, timeout=60)
        assert resp.status_code == 200, resp.text
        return resp.json()["choices"][0]["message"]["content"]

    with running(create_app(runtime)) as url:
        alone = [ask(url, *job) for job in jobs]
        assert runtime._scheduler.widest == 1
        with slowed(runtime, 0.01), ThreadPoolExecutor(len(jobs)) as pool:
            together = list(pool.map(lambda job: ask(url, *job), jobs))
        assert httpx.get(url + "/health").json()["in_flight"] == 0
    assert together == alone
    assert runtime._scheduler.widest >= 3  # admitted at once (max_concurrent auto) and decoded together


def test_an_adapter_with_modules_to_save_batches_with_its_own_rows_only(tiny_qwen2, personas):
    """peft cannot mix adapters that replace whole modules in one batch: such a runtime batches one adapter at
    a time, the others waiting their turn, and every reply is still its solo reply (no batch-wide error)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from rolechat import settings
    from rolechat.llm import PersonaManifest, fingerprint

    install(personas["alpha"])
    torch.manual_seed(21)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], modules_to_save=["norm"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "modules_to_save" in name:
                param.add_(torch.randn_like(param) * 0.5)
    folder = settings.personas_dir() / "saver"
    peft_model.save_pretrained(folder)
    PersonaManifest(
        name="saver", display_name="S", base_model=str(tiny_qwen2.resolve()), base_fingerprint=fingerprint(model.config)
    ).save(folder)
    rt = Runtime.load(LLMConfig(model=str(tiny_qwen2)))
    assert "saver" in rt.persona_names() and not rt._can_mix()
    jobs = [(SHORT, "saver"), (LONG, "saver"), (SHORT, None), (MIDDLE, None), (LONG, "alpha"), (SHORT, "saver")]
    expected = [solo(rt, m, p) for m, p in jobs]
    assert expected[0] != solo(rt, SHORT, None)  # the module it saves changes the reply
    with held(rt, len(jobs)):
        streams, threads = [], []
        for messages, persona in jobs:  # queued in this order
            streams.append(rt.stream(messages, persona, GREEDY))
            threads += run_all(streams[-1:])
            deadline = time.time() + 30
            while len(rt._scheduler._pending) < len(streams) and time.time() < deadline:
                time.sleep(0.005)
    for t in threads:
        t.join(60)
    assert [s.text for s in streams] == expected
    assert rt._scheduler.widest == 2  # the two saver rows, then the two base rows: never mixed


def idle(rt: Runtime) -> None:
    """Wait until the scheduler thread has ended."""
    deadline = time.time() + 10
    while rt._scheduler._thread is not None and time.time() < deadline:
        time.sleep(0.01)
    assert rt._scheduler._thread is None


def test_an_idle_scheduler_ends_its_thread_and_lets_the_runtime_go(tiny_qwen2):
    """The app loads a new runtime when the model changes: the old one (a whole model) must not stay alive."""
    import gc
    import weakref

    rt = Runtime.load(LLMConfig(model=str(tiny_qwen2)))
    rt._scheduler.idle_exit = 0.05
    first = solo(rt, SHORT, None)
    idle(rt)
    assert solo(rt, SHORT, None) == first  # a new thread starts on demand
    idle(rt)
    gone = weakref.ref(rt)
    del rt
    gc.collect()
    assert gone() is None


def test_the_batch_buffers_go_with_its_last_row(tiny_qwen2):
    """A burst's KV buffers are not held while the batch is empty."""
    import torch
    from transformers import AutoConfig, DynamicCache

    from rolechat.llm.batching import _Batch, _Row

    config = AutoConfig.from_pretrained(tiny_qwen2)
    batch = _Batch()

    def joining(length: int):
        cache = DynamicCache(config=config)
        heads, dim = config.num_key_value_heads, config.hidden_size // config.num_attention_heads
        for i in range(config.num_hidden_layers):
            cache.update(torch.ones(1, heads, length, dim), torch.ones(1, heads, length, dim), i)
        row = _Row([1] * length, None, None, None, (), None, [], threading.Event())
        return row, cache, 5, torch.zeros(1, config.vocab_size, dtype=torch.bool)

    batch.add([joining(7), joining(3)], config)
    assert batch.slots is not None and batch.slots.n == 2
    batch.drop({0})
    assert batch.slots.n == 1 and batch.pos.tolist() == [3]  # the second row moved into the first slot
    batch.drop({0})
    assert batch.slots is None and not batch.rows
