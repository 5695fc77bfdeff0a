"""Training on the tiny models: only adapter weights move, the runtime serves the result, resume, packing, merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rolechat.finetune import TrainConfig, TrainError, read_progress, train
from rolechat.finetune.trainer import progress_path, run_dir

SYSTEM = "你是甄嬛。"
PAIRS = [
    ("皇上万福金安。", "臣妾做不到啊！"),
    ("今天天气很好", "我们去公园散步吧。"),
    ("北京是中国的首都。", "上海是一座国际化大都市。"),
    ("请用中文回答问题。", "模型训练需要数据、算力和耐心。"),
    ("你好", "你好，我是一个测试模型。"),
]


def dataset(tmp_path: Path, n: int = 40) -> Path:
    records = [{"instruction": f"{PAIRS[i % 5][0]}{i}", "input": "", "output": PAIRS[i % 5][1]} for i in range(n)]
    path = tmp_path / "persona.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def llm_cfg(model: Path):
    from rolechat.llm.config import LLMConfig

    return LLMConfig(model=str(model))


def fast(**kw) -> TrainConfig:
    base = {
        "max_steps": 4,
        "batch_size": 8,
        "learning_rate": 5e-3,
        "logging_steps": 1,
        "eval_ratio": 0.1,
        "warmup_ratio": 0.0,
    }
    return TrainConfig(**{**base, **kw})


def test_training_moves_only_adapter_weights(tiny_qwen2, tmp_path):
    from transformers import TrainerCallback

    class Snapshot(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            self.before = {k: v.detach().clone() for k, v in model.named_parameters()}

        def on_train_end(self, args, state, control, model=None, **kw):
            self.after = {k: v.detach().clone() for k, v in model.named_parameters()}

    snap = Snapshot()
    train(dataset(tmp_path), "snap", fast(), llm_cfg(tiny_qwen2), system=SYSTEM, callbacks=[snap], show_progress=False)
    changed = {k for k in snap.before if not snap.before[k].equal(snap.after[k])}
    assert changed and all("lora_" in k for k in changed)
    assert any("lora_B" in k for k in changed)  # B starts at zero: it moving proves the adapter learnt something


def test_trained_persona_is_served_by_the_runtime_with_the_training_prompt(tiny_qwen2, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from rolechat.finetune.encode import encode_conversations
    from rolechat.finetune.trainer import prepare
    from rolechat.llm import PersonaManifest, load_runtime
    from rolechat.settings import personas_dir

    data = dataset(tmp_path)
    result = train(
        data,
        "zhenhuan",
        fast(max_steps=6),
        llm_cfg(tiny_qwen2),
        system=SYSTEM,
        display_name="甄嬛",
        show_progress=False,
    )
    folder = personas_dir() / "zhenhuan"
    assert result.output == folder
    m = PersonaManifest.load(folder)
    assert (m.system_prompt, m.display_name, m.stop[0], m.enable_thinking) == (SYSTEM, "甄嬛", "<|im_end|>", False)
    assert m.base_model == str(tiny_qwen2.resolve()) and m.base_fingerprint
    assert m.hyperparameters["rank"] == 8 and m.data["conversations"] == 40
    assert m.metrics["steps"] == 6 and m.metrics["eval_loss_after"] < m.metrics["eval_loss_before"]
    assert (folder / "loss.png").stat().st_size > 1000 and json.loads((folder / "metrics.json").read_text())
    assert not list(run_dir("zhenhuan").glob("checkpoint-*"))  # cleaned up after success

    records = read_progress(progress_path("zhenhuan"))
    events = [r["event"] for r in records]
    assert events[0] == "start" and events[-1] == "done" and events.count("step") == 6
    steps = [r for r in records if r["event"] == "step"]
    assert all(r["tokens_per_s"] > 0 and 0 <= r["padding_fraction"] < 1 for r in steps)
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]

    rt = load_runtime(model=str(tiny_qwen2), max_new_tokens=32)
    assert "zhenhuan" in rt.persona_names()
    question = [{"role": "user", "content": "皇上万福金安。0"}]
    assert not torch.allclose(rt.logits(question, persona="zhenhuan"), rt.logits(question, persona="base"))

    # the runtime's prompt ids are the training example's ids up to the reply
    prepared = prepare(data, fast(eval_ratio=0.0), llm_cfg(tiny_qwen2), system=SYSTEM)
    conv = next(c for c in prepared.data.conversations if c.messages[0]["content"] == "皇上万福金安。0")
    (ex,), _ = encode_conversations(prepared.tokenizer, prepared.fmt, [conv], SYSTEM, max_length=512)
    first = next(i for i, lab in enumerate(ex.labels) if lab != -100)
    assert rt.encode(question, persona="zhenhuan") == ex.input_ids[:first]

    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32)
    plain = PeftModel.from_pretrained(base, str(folder))
    ids = torch.tensor([ex.input_ids[:first]])
    assert torch.allclose(plain(input_ids=ids).logits[0, -1], rt.logits(question, persona="zhenhuan"), atol=1e-4)


def test_resume_continues_from_the_last_checkpoint_after_a_crash(tiny_qwen2, tmp_path):
    from transformers import TrainerCallback

    from rolechat.settings import personas_dir

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise RuntimeError("simulated power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        train(
            dataset(tmp_path),
            "resumed",
            fast(max_steps=6, save_steps=2),
            llm_cfg(tiny_qwen2),
            system=SYSTEM,
            callbacks=[Crash()],
            show_progress=False,
        )
    assert not (personas_dir() / "resumed").exists()  # no half persona
    last = read_progress(progress_path("resumed"))[-1]
    assert (last["event"], last["status"], last["step"]) == ("error", "failed", 3)
    assert "power cut" in last["error"]
    assert (run_dir("resumed") / "checkpoint-2").is_dir()

    with pytest.raises(TrainError, match="--resume"):  # a fresh start must not silently discard the checkpoints
        train(dataset(tmp_path), "resumed", fast(max_steps=6), llm_cfg(tiny_qwen2), system=SYSTEM, show_progress=False)

    result = train(None, "resumed", resume=True, show_progress=False)  # data and settings come from the run record
    assert result.metrics["resumed_from"] == "checkpoint-2" and result.metrics["steps"] == 6
    steps = [r["step"] for r in read_progress(progress_path("resumed")) if r["event"] == "step"]
    assert steps == [3, 4, 5, 6]
    assert result.manifest.system_prompt == SYSTEM and (personas_dir() / "resumed" / "adapter_config.json").is_file()


def test_packing_gives_the_same_loss_as_padding(tiny_qwen2):
    import torch
    from transformers import AutoModelForCausalLM

    from rolechat.finetune.batching import PackCollator, PadCollator

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32)
    rows = [
        {"input_ids": [5, 6, 7, 8, 9, 10], "labels": [-100, -100, -100, 8, 9, 10]},
        {"input_ids": [11, 12, 13], "labels": [-100, 12, 13]},
        {"input_ids": [14, 15, 16, 17], "labels": [-100, -100, 16, 17]},
    ]

    def summed(batch):
        logits = model(
            **{k: v for k, v in batch.items() if k not in ("labels", "num_real_tokens")}, use_cache=False
        ).logits[:, :-1]
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), batch["labels"][:, 1:].reshape(-1), ignore_index=-100, reduction="sum"
        )

    packed = PackCollator()(rows)
    assert packed["input_ids"].shape == (1, 13)
    assert torch.allclose(summed(packed), summed(PadCollator(0)(rows)), atol=1e-4)
    bounded = PackCollator(max_row=8)(rows)  # rows of <= 8 tokens: [6 + 1 pad], [4 + 3]
    assert bounded["input_ids"].shape == (2, 7) and bounded.pop("num_real_tokens") == 13
    assert torch.allclose(summed(bounded), summed(PadCollator(0)(rows)), atol=1e-4)


def test_packed_training_runs(tiny_qwen2, tmp_path):
    result = train(
        dataset(tmp_path), "packed", fast(packing=True), llm_cfg(tiny_qwen2), system=SYSTEM, show_progress=False
    )
    assert result.metrics["padding_fraction"] == 0.0 and result.metrics["steps"] == 4


@pytest.mark.parametrize("arch", ["qwen3", "glm4"])
def test_other_architectures_and_explicit_target_modules(tiny_models, tmp_path, arch):
    import torch

    from rolechat.llm import load_runtime

    result = train(
        dataset(tmp_path),
        f"p-{arch}",
        fast(target_modules=["q_proj", "v_proj"]),
        llm_cfg(tiny_models[arch]),
        system=SYSTEM,
        show_progress=False,
    )
    cfg = json.loads((result.output / "adapter_config.json").read_text())
    assert sorted(cfg["target_modules"]) == ["q_proj", "v_proj"]
    rt = load_runtime(model=str(tiny_models[arch]), max_new_tokens=32)
    q = [{"role": "user", "content": "你好"}]
    assert not torch.allclose(rt.logits(q, persona=f"p-{arch}"), rt.logits(q, persona="base"))


def test_unknown_target_module_lists_the_real_ones(tiny_qwen2, tmp_path):
    with pytest.raises(TrainError, match=r"query_key_value.*Linear modules of this model: .*q_proj"):
        train(
            dataset(tmp_path), "bad", fast(target_modules=["query_key_value"]), llm_cfg(tiny_qwen2), show_progress=False
        )
    assert read_progress(progress_path("bad"))[-1]["status"] == "failed"


def test_qlora_is_refused_without_cuda(tiny_qwen2, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(TrainError, match="--qlora needs a CUDA GPU"):
        train(dataset(tmp_path), "q", fast(qlora=True), llm_cfg(tiny_qwen2), show_progress=False)


def test_existing_persona_is_kept_unless_overwrite(tiny_qwen2, tmp_path):
    from rolechat.settings import personas_dir

    train(dataset(tmp_path), "twice", fast(max_steps=1), llm_cfg(tiny_qwen2), show_progress=False)
    stamp = (personas_dir() / "twice" / "persona.json").read_text()
    with pytest.raises(TrainError, match="--overwrite"):
        train(dataset(tmp_path), "twice", fast(max_steps=1), llm_cfg(tiny_qwen2), show_progress=False)
    assert (personas_dir() / "twice" / "persona.json").read_text() == stamp
    train(
        dataset(tmp_path),
        "twice",
        fast(max_steps=1),
        llm_cfg(tiny_qwen2),
        system="新的",
        overwrite=True,
        show_progress=False,
    )
    assert json.loads((personas_dir() / "twice" / "persona.json").read_text())["system_prompt"] == "新的"


def test_merge_matches_the_runtime_and_carries_the_system_prompt(tiny_qwen2, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rolechat.finetune import merge_persona
    from rolechat.llm import load_runtime

    train(dataset(tmp_path), "merged", fast(), llm_cfg(tiny_qwen2), system=SYSTEM, show_progress=False)
    out = merge_persona("merged", tmp_path / "export", llm_cfg(tiny_qwen2))
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    q = [{"role": "user", "content": "你好"}]
    text = tok.apply_chat_template(q, tokenize=False, add_generation_prompt=True)
    assert text.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>")
    other = tok.apply_chat_template([{"role": "system", "content": "别的"}, *q], tokenize=False)
    assert SYSTEM not in other  # an explicit system message still wins
    rt = load_runtime(model=str(tiny_qwen2), max_new_tokens=32)
    ids = rt.encode(q, persona="merged")
    assert tok(text, add_special_tokens=False)["input_ids"] == ids
    logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
    assert torch.allclose(logits, rt.logits(q, persona="merged"), atol=1e-4)
    assert not torch.allclose(logits, rt.logits(q, persona="base"), atol=1e-4)


def test_merge_refuses_a_quantized_base(tiny_qwen2, tmp_path):
    from rolechat.finetune import MergeError, merge_persona
    from rolechat.llm.config import LLMConfig

    with pytest.raises(MergeError, match="full-precision"):
        merge_persona("anything", tmp_path / "x", LLMConfig(model=str(tiny_qwen2), quantization="4bit"))


@pytest.mark.parametrize("arch", ["qwen2", "glm4"])
def test_sparse_logits_give_the_same_loss_with_padding_and_packing(tiny_models, arch):
    import torch
    from transformers import AutoModelForCausalLM

    from rolechat.finetune.batching import PackCollator, PadCollator

    model = AutoModelForCausalLM.from_pretrained(tiny_models[arch], dtype=torch.float32)
    model.config.use_cache = False
    rows = [
        {"input_ids": [5, 6, 7, 8, 9, 10], "labels": [-100, -100, -100, 8, 9, 10]},
        {"input_ids": [11, 12, 13], "labels": [-100, -100, 13]},
        {"input_ids": [14, 15, 16, 17, 18], "labels": [-100, -100, 16, -100, 18]},
    ]
    n = torch.tensor(sum(lab != -100 for r in rows for lab in r["labels"][1:]))
    full = model(**PadCollator(0)(rows), num_items_in_batch=n).loss
    sparse_batch = PadCollator(0, sparse_logits=True)(rows)
    assert sparse_batch["logits_to_keep"].tolist() == [1, 2, 3, 4]  # never the prompt-only positions 0 and 5
    out = model(**sparse_batch, num_items_in_batch=n)
    assert out.logits.shape[1] == 4 and torch.allclose(out.loss, full, atol=1e-5)
    packed = model(**PackCollator(sparse_logits=True)(rows), num_items_in_batch=n).loss
    assert torch.allclose(packed, full, atol=1e-5)


@pytest.mark.parametrize("grouped", [True, False])
def test_grouped_batches_divide_by_the_epoch_average_token_count(tiny_qwen2, tmp_path, monkeypatch, grouped):
    from transformers import Trainer

    from rolechat.finetune.batching import ExampleDataset
    from rolechat.finetune.trainer import prepare, supervised_tokens

    records = [{"instruction": f"问题{i}", "input": "", "output": "好的。" * (1 + (i * 7) % 23)} for i in range(48)]
    data = tmp_path / "mixed.json"
    data.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    divisors, counts = [], []
    compute_loss = Trainer.compute_loss

    def spy(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        divisors.append(float(num_items_in_batch))
        labels = inputs.get("shift_labels", inputs["labels"][:, 1:])
        counts.append(int((labels != -100).sum()))
        return compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    monkeypatch.setattr(Trainer, "compute_loss", spy)
    cfg = fast(max_steps=0, epochs=1, eval_ratio=0.0, group_by_length=grouped, packing=False)
    train(data, "norm", cfg, llm_cfg(tiny_qwen2), system=SYSTEM, show_progress=False)
    assert len(counts) == 6 and len(set(counts)) > 1  # batches really differ in supervised tokens
    if grouped:
        rows = ExampleDataset(prepare(data, cfg, llm_cfg(tiny_qwen2), system=SYSTEM).train).rows
        assert divisors == pytest.approx([supervised_tokens(rows) / 6] * 6)
    else:
        assert divisors == counts  # random batches: transformers' own per-step count


def test_packing_is_the_default_except_for_remote_code_models():
    from rolechat.finetune.trainer import effective
    from rolechat.llm.config import LLMConfig

    assert TrainConfig().packing and effective(TrainConfig(), LLMConfig()).packing
    assert not effective(TrainConfig(), LLMConfig(trust_remote_code=True)).packing
