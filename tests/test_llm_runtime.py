"""llm.runtime: one base model, many persona adapters, streaming, concurrency, history budget."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from rolechat import settings
from rolechat.llm import LLMConfig, PersonaManifest, Runtime, fingerprint
from rolechat.llm import loader as llm_loader
from rolechat.llm import local as llm_local
from rolechat.llm.personas import PersonaError

GREEDY = {"temperature": 0, "max_new_tokens": 12}
HELLO = [{"role": "user", "content": "你好"}]


def make_adapter(
    base: Path,
    out: Path,
    seed: int,
    *,
    system: str = "",
    base_model: str | None = None,
    base_fp: str | None = None,
    targets: str | list[str] = "all-linear",
) -> Path:
    """A LoRA adapter with random (non-zero) weights, saved with its persona manifest."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=16, target_modules=targets, init_lora_weights=False))
    peft_model.save_pretrained(out)
    PersonaManifest(
        name=out.name,
        display_name=out.name.upper(),
        system_prompt=system,
        base_model=str(base.resolve()) if base_model is None else base_model,
        base_fingerprint=fingerprint(model.config) if base_fp is None else base_fp,
    ).save(out)
    return out


@pytest.fixture(scope="module")
def adapters(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("personas")
    q2 = tiny_models["qwen2"]
    return {
        "alpha": make_adapter(q2, root / "alpha", 1, system="你是阿尔法。"),
        "beta": make_adapter(q2, root / "beta", 2),
        "other": make_adapter(tiny_models["qwen3"], root / "other", 3),
    }


def install(*folders: Path) -> None:
    import shutil

    for folder in folders:
        shutil.copytree(folder, settings.personas_dir() / folder.name)


def reference_logits(base: Path, adapter: Path | None, runtime: Runtime, messages) -> torch.Tensor:
    """Logits from a freshly loaded model (+ adapter), independent of the runtime's switching."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    ids = runtime.encode(messages, adapter.name if adapter else None)
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0, -1]


@pytest.fixture
def runtime(tiny_qwen2, adapters):
    install(adapters["alpha"], adapters["beta"])
    return Runtime.load(LLMConfig(model=str(tiny_qwen2)))


def test_greedy_generation_is_deterministic_and_stream_joins_to_the_blocking_reply(runtime):
    stream = runtime.stream(HELLO, params=GREEDY)
    pieces = list(stream)
    assert pieces and all(isinstance(p, str) for p in pieces)
    assert "".join(pieces) == stream.text == runtime.chat(HELLO, params=GREEDY)
    assert stream.stats.completion_tokens > 0 and stream.stats.finish_reason in ("stop", "length")
    assert runtime.chat(HELLO, persona="alpha", params=GREEDY) == runtime.chat(HELLO, persona="alpha", params=GREEDY)


def test_reply_loss_is_the_models_own_next_token_loss_on_the_reply(runtime, tiny_qwen2):
    import math

    reply = runtime.chat(HELLO, params=GREEDY)
    nll, n = runtime.reply_loss(HELLO, reply)
    ids = runtime.prompt_ids(HELLO)
    target = runtime.tokenizer.encode(reply, add_special_tokens=False) + [runtime._stop_ids[0]]
    assert n == len(target)
    with runtime._persona_context(None), torch.inference_mode():  # the same sum, token by token, by hand
        logp = runtime.model(input_ids=torch.tensor([ids + target])).logits[0].log_softmax(-1)
    manual = -sum(float(logp[len(ids) - 1 + i, t]) for i, t in enumerate(target))
    assert math.isclose(nll, manual, rel_tol=1e-4)
    shuffled = "".join(reversed(reply)) or "xyz"  # a reordered reply is less likely than the greedy one
    nll2, n2 = runtime.reply_loss(HELLO, shuffled)
    assert nll / n <= nll2 / n2
    assert runtime.reply_loss(HELLO, reply, "alpha") != (nll, n)  # the persona's adapter scores it differently


def test_switching_personas_gives_each_its_own_logits_without_reloading(runtime, tiny_qwen2, adapters, monkeypatch):

    loads = []
    monkeypatch.setattr(llm_local, "load_model_and_tokenizer", lambda *a, **k: loads.append(a))
    monkeypatch.setattr(llm_loader, "load_model_and_tokenizer", lambda *a, **k: loads.append(a))
    base_model = runtime.base_model
    expected = {
        "alpha": reference_logits(tiny_qwen2, adapters["alpha"], runtime, HELLO),
        "beta": reference_logits(tiny_qwen2, adapters["beta"], runtime, HELLO),
        "base": reference_logits(tiny_qwen2, None, runtime, HELLO),
    }
    assert not torch.allclose(expected["alpha"], expected["base"], atol=1e-3)
    assert not torch.allclose(expected["alpha"], expected["beta"], atol=1e-3)
    for name in ("alpha", "beta", "base", "alpha", "base", "beta"):
        got = runtime.logits(HELLO, persona=name)
        torch.testing.assert_close(got, expected[name], atol=1e-4, rtol=1e-4)
    assert loads == [] and runtime.base_model is base_model


def test_persona_system_prompt_is_applied_automatically(runtime):
    msgs = runtime.prepare_messages([{"role": "system", "content": "资料：[1] 北京"}, *HELLO], "alpha")
    assert msgs[0] == {"role": "system", "content": "你是阿尔法。\n\n资料：[1] 北京"}
    assert runtime.prepare_messages(HELLO, "beta") == HELLO  # no system prompt in beta's manifest
    assert runtime.prepare_messages(HELLO, None) == HELLO


def test_persona_listing_shows_base_first_and_unknown_persona_is_a_clear_error(runtime):
    assert runtime.persona_names() == ["base", "alpha", "beta"]
    with pytest.raises(PersonaError, match="not available.*base, alpha, beta"):
        runtime.stream(HELLO, persona="gamma")


def test_adapter_trained_on_another_base_is_refused(tiny_qwen2, adapters):
    install(adapters["alpha"], adapters["other"])
    rt = Runtime.load(LLMConfig(model=str(tiny_qwen2)))
    entries = {e.name: e for e in rt.personas()}
    assert entries["alpha"].ok
    assert not entries["other"].ok and "trained on" in entries["other"].error
    assert "other" not in rt.persona_names()


def test_same_shape_but_differently_named_base_is_refused_or_warned(tiny_qwen2, adapters, tmp_path):
    renamed = make_adapter(tiny_qwen2, tmp_path / "renamed", 4, base_model="Qwen/Some-Other-Model")
    install(renamed)
    assert "renamed" not in Runtime.load(LLMConfig(model=str(tiny_qwen2))).persona_names()
    warned = Runtime.load(LLMConfig(model=str(tiny_qwen2), on_base_mismatch="warn"))
    assert "renamed" in warned.persona_names()


def test_broken_persona_folders_are_listed_as_broken_and_the_rest_works(tiny_qwen2, adapters):
    install(adapters["alpha"])
    bad_json = settings.personas_dir() / "badjson"
    bad_json.mkdir()
    (bad_json / "persona.json").write_text("{not json", encoding="utf-8")
    (bad_json / "adapter_config.json").write_text("{}", encoding="utf-8")
    no_weights = settings.personas_dir() / "noweights"
    no_weights.mkdir()
    PersonaManifest(name="noweights").save(no_weights)
    (no_weights / "adapter_config.json").write_text("{}", encoding="utf-8")
    corrupt = settings.personas_dir() / "corrupt"
    corrupt.mkdir()
    PersonaManifest(name="corrupt").save(corrupt)
    (corrupt / "adapter_config.json").write_text('{"peft_type": "LORA"}', encoding="utf-8")
    (corrupt / "adapter_model.safetensors").write_bytes(b"garbage")

    rt = Runtime.load(LLMConfig(model=str(tiny_qwen2)))
    status = {e.name: e.error for e in rt.personas()}
    assert status["alpha"] is None
    assert "invalid JSON" in status["badjson"]
    assert "weights missing" in status["noweights"]
    assert "could not be loaded" in status["corrupt"]
    assert rt.persona_names() == ["base", "alpha"]
    assert rt.chat(HELLO, persona="alpha", params=GREEDY) == rt.chat(HELLO, persona="alpha", params=GREEDY)


def test_new_persona_appears_on_reload_without_reloading_the_base(runtime, tiny_qwen2, tmp_path):
    base_model = runtime.base_model
    install(make_adapter(tiny_qwen2, tmp_path / "gamma", 5))
    assert "gamma" not in runtime.persona_names()
    runtime.reload_personas()
    assert "gamma" in runtime.persona_names() and runtime.base_model is base_model
    import shutil

    shutil.rmtree(settings.personas_dir() / "gamma")
    runtime.reload_personas()
    assert "gamma" not in runtime.persona_names()


def test_concurrent_requests_each_get_their_own_persona(runtime):
    prompts = {
        name: [{"role": "user", "content": f"请介绍一下{i}号"}] for i, name in enumerate(("alpha", "beta", "base"))
    }
    expected = {name: runtime.chat(msgs, persona=name, params=GREEDY) for name, msgs in prompts.items()}
    assert len(set(expected.values())) > 1
    results: dict[str, list[str]] = {name: [] for name in prompts}
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            for _ in range(3):
                results[name].append(runtime.chat(prompts[name], persona=name, params=GREEDY))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in prompts for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    for name, replies in results.items():
        assert replies == [expected[name]] * 6


def test_abandoning_a_stream_cancels_it_and_frees_the_runtime(runtime):
    stream = runtime.stream(HELLO, params={"temperature": 0, "max_new_tokens": 200})
    it = iter(stream)
    next(it)
    it.close()
    assert stream.stats.finish_reason == "cancelled"
    assert stream.stats.completion_tokens < 200
    assert runtime.chat(HELLO, params=GREEDY)  # the lock was released


def test_stop_strings_end_the_reply_before_they_are_shown(runtime):
    full = runtime.chat(HELLO, params={"temperature": 0, "max_new_tokens": 12})
    assert len(full) >= 2
    stop = full[1:3] if len(full) >= 3 else full[1:]
    cut = runtime.chat(HELLO, params={"temperature": 0, "max_new_tokens": 12, "stop": [stop]})
    assert cut == full[: full.index(stop)]


def test_seeded_sampling_is_reproducible(runtime):
    params = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "max_new_tokens": 12, "seed": 7}
    assert runtime.chat(HELLO, params=params) == runtime.chat(HELLO, params=params)


def test_a_prompt_that_does_not_fit_is_refused_not_trimmed(tiny_qwen2):
    """The runtime drops nothing: fitting a chat to the context is the conversation layer's (one fitter)."""
    from rolechat.llm import PromptTooLong

    rt = Runtime.load(LLMConfig(model=str(tiny_qwen2), context_length=160, max_new_tokens=32))
    history = [{"role": "system", "content": "你是测试助手。"}]
    for i in range(20):
        history += [
            {"role": "user", "content": f"第{i}个问题：今天天气很好吗？"},
            {"role": "assistant", "content": f"第{i}个回答：是的，天气很好。"},
        ]
    history.append({"role": "user", "content": "最后的问题"})
    with pytest.raises(PromptTooLong, match=r"llm\.context_length \(160\) leaves 128") as caught:
        rt.encode(history)
    assert caught.value.tokens == len(rt.prompt_ids(history)) > 128
    with pytest.raises(PromptTooLong):
        rt.chat(history)
    fits = history[:1] + history[-3:]
    assert rt.encode(fits) == rt.prompt_ids(fits)  # what fits is sent exactly as rendered


def test_langchain_chat_model_streams_with_the_persona(runtime):
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | runtime.chat_model(
        "alpha", temperature=0, max_new_tokens=12
    )
    pieces = list((chain | StrOutputParser()).stream({"q": "你好"}))
    assert "".join(pieces) == runtime.chat(HELLO, persona="alpha", params=GREEDY)
    message = chain.invoke({"q": "你好"})
    assert message.usage_metadata["output_tokens"] > 0
    assert message.response_metadata["persona"] == "alpha"


@pytest.mark.parametrize("arch", ["qwen3", "glm4"])
def test_other_architectures_chat_through_the_same_runtime(tiny_models, arch):
    rt = Runtime.load(LLMConfig(model=str(tiny_models[arch])))
    assert rt.chat(HELLO, params=GREEDY) == "".join(rt.stream(HELLO, params=GREEDY))


def test_quantization_without_cuda_is_refused_clearly(tiny_qwen2):
    from rolechat.llm import LoadError

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(LoadError, match="needs a CUDA GPU"):
        Runtime.load(LLMConfig(model=str(tiny_qwen2), quantization="4bit"))


def test_missing_model_folder_and_uncached_hub_id_give_clear_errors():
    from rolechat.llm import LoadError

    with pytest.raises(LoadError, match="model folder not found"):
        Runtime.load(LLMConfig(model="/nonexistent/model"))
    with pytest.raises(LoadError, match="not in the local Hugging Face cache"):
        Runtime.load(LLMConfig(model="nobody/not-a-cached-model"))


def test_a_long_reply_limit_never_starves_the_prompt(tiny_qwen2):
    rt = Runtime.load(LLMConfig(model=str(tiny_qwen2), context_length=128, max_new_tokens=512))
    ids = rt.encode([{"role": "user", "content": "请回答这个问题"}])
    assert "请回答这个问题" in rt.tokenizer.decode(ids)
    stream = rt.stream([{"role": "user", "content": "请回答这个问题"}], params={"temperature": 0})
    stream.join()
    assert len(ids) + stream.params.max_new_tokens <= 128


def test_switching_to_an_adapter_with_fewer_target_modules_leaves_no_trace_of_the_previous(
    tiny_qwen2, adapters, tmp_path
):
    narrow = make_adapter(tiny_qwen2, tmp_path / "narrow", 6, targets=["q_proj", "v_proj"])
    install(adapters["alpha"], narrow)
    rt = Runtime.load(LLMConfig(model=str(tiny_qwen2)))
    expected = reference_logits(tiny_qwen2, narrow, rt, HELLO)
    rt.logits(HELLO, persona="alpha")
    torch.testing.assert_close(rt.logits(HELLO, persona="narrow"), expected, atol=1e-4, rtol=1e-4)


def test_a_stream_closed_on_another_thread_frees_the_runtime(runtime):
    """Streamlit's stop closes the reply generator from a different thread than the one that started it."""
    stream = runtime.stream(HELLO, params={"temperature": 0, "max_new_tokens": 200})
    it = iter(stream)
    next(it)
    errors: list[BaseException] = []

    def close() -> None:
        try:
            it.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    closer = threading.Thread(target=close)
    closer.start()
    closer.join(timeout=60)
    assert errors == [] and stream.stats.finish_reason == "cancelled"
    assert runtime.chat(HELLO, params=GREEDY)  # the lock was released


def test_stream_close_cancels_now_and_releases_the_lock(runtime):
    stream = runtime.stream(HELLO, params={"temperature": 0, "max_new_tokens": 200})
    it = iter(stream)
    next(it)
    stream.close()
    assert stream.stats.finish_reason == "cancelled" and stream.stats.completion_tokens < 200
    assert not runtime._model_lock.locked()  # released before close() returned, not by the garbage collector
    unstarted = runtime.stream(HELLO, params=GREEDY)
    unstarted.close()  # never took the lock
    assert unstarted.stats.finish_reason == "cancelled" and not runtime._model_lock.locked()
