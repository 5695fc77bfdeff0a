"""finetune.speedups: the CPU training speed-ups give the unchanged model's losses and gradients."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from rolechat.finetune.batching import PackCollator, PadCollator  # noqa: E402
from rolechat.finetune.config import TrainConfig  # noqa: E402
from rolechat.finetune.model import TrainError, precision  # noqa: E402
from rolechat.finetune.speedups import (  # noqa: E402
    PER_EXAMPLE,
    Bf16Linear,
    CheapDropout,
    FusedLoraLinear,
    _segments,
    bf16_base,
    cheap_dropout,
    fused_lora,
    per_example_attention,
    speed_up,
)


def _lora_model(path, dropout: float = 0.0):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa")
    model.config.use_cache = False
    torch.manual_seed(0)
    model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear", task_type="CAUSAL_LM")
    )
    with torch.no_grad():  # B starts at zero: give it weights, or A's gradients are all zero
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    return model


def _rows(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for n in lengths:
        ids = torch.randint(5, 60, (n,), generator=g).tolist()
        rows.append({"input_ids": ids, "labels": [-100] * (n // 2) + ids[n // 2 :]})
    return rows


def _loss_and_grads(model, batch):
    batch = {k: v for k, v in batch.items() if k != "num_real_tokens"}
    model.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _same(a, b, tol=1e-4):
    assert a[0] == pytest.approx(b[0], rel=1e-5, abs=1e-6)
    assert a[1].keys() == b[1].keys()
    for name in a[1]:
        assert torch.allclose(a[1][name], b[1][name], rtol=tol, atol=1e-6), name


@pytest.mark.parametrize("arch", ["qwen2", "qwen3", "glm4"])
def test_the_speed_ups_train_packed_rows_as_the_model_does(tiny_models, arch):
    model = _lora_model(tiny_models[arch])
    model.train()
    fast = copy.deepcopy(model)
    applied = speed_up(fast, packed=True)
    assert applied["per_example_attention"] and applied["fused_lora"] > 0
    # three rows: two examples, three examples (one long), one example; short rows are filled with padding
    batch = PackCollator(sparse_logits=True, max_row=40, pad_id=0)(_rows([7, 12, 30, 5, 9, 18, 3]))
    assert batch["input_ids"].shape[0] > 1 and (batch["position_ids"] == 0).sum() > batch["input_ids"].shape[0]
    assert len(_segments(batch["position_ids"])[0]) == 2  # the short examples and the long one apart
    config = model.get_base_model().config
    assert config.num_key_value_heads < config.num_attention_heads  # grouped-query attention is covered
    _same(_loss_and_grads(fast, batch), _loss_and_grads(model, batch))
    # padded batches (an attention mask) and evaluation go through sdpa with the mask, as before
    padded = PadCollator(0)(_rows([7, 12, 30, 5], seed=1))
    _same(_loss_and_grads(fast, padded), _loss_and_grads(model, padded))
    model.eval(), fast.eval()
    with torch.no_grad():
        plain = {k: v for k, v in batch.items() if k != "num_real_tokens"}
        assert torch.allclose(fast(**plain).loss, model(**plain).loss, atol=1e-6)


def test_examples_in_one_packed_row_do_not_see_each_other(tiny_qwen2):
    """Changing one example of a row leaves the other's loss and logits alone (per-example attention is on)."""
    model = _lora_model(tiny_qwen2)
    per_example_attention(model)
    model.eval()
    first, second = _rows([11, 9], seed=2)  # packed longest first: the row is first, then second
    other = {**second, "input_ids": [i + 1 for i in second["input_ids"]]}
    collate = PackCollator(max_row=64, pad_id=0)
    with torch.no_grad():
        a = model(
            input_ids=collate([first, second])["input_ids"], position_ids=collate([first, second])["position_ids"]
        )
        b = model(input_ids=collate([first, other])["input_ids"], position_ids=collate([first, other])["position_ids"])
    assert torch.allclose(a.logits[0, :11], b.logits[0, :11], atol=1e-6)
    assert not torch.allclose(a.logits[0, 11:], b.logits[0, 11:], atol=1e-3)


def test_fused_lora_with_dropout_matches_peft_with_the_same_masks(tiny_qwen2):
    model = _lora_model(tiny_qwen2, dropout=0.3)
    assert cheap_dropout(model) > 0
    model.train()
    fused = copy.deepcopy(model)
    assert fused_lora(fused) > 0 and any(isinstance(m, FusedLoraLinear) for m in fused.modules())
    batch = PackCollator(max_row=64, pad_id=0)(_rows([10, 14, 6]))
    torch.manual_seed(5)
    peft_run = _loss_and_grads(model, batch)
    torch.manual_seed(5)
    fused_run = _loss_and_grads(fused, batch)
    _same(fused_run, peft_run)
    torch.manual_seed(6)  # other masks: another loss (dropout is on)
    assert _loss_and_grads(fused, batch)[0] != pytest.approx(peft_run[0], abs=1e-6)


def test_fused_lora_leaves_merged_and_disabled_adapters_to_peft(tiny_qwen2):
    model = _lora_model(tiny_qwen2)
    fused = copy.deepcopy(model)
    fused_lora(fused)
    model.eval(), fused.eval()
    ids = torch.tensor([_rows([12])[0]["input_ids"]])
    with torch.no_grad():
        with model.disable_adapter(), fused.disable_adapter():
            assert torch.allclose(fused(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-6)
        adapted = model(input_ids=ids).logits
        assert torch.allclose(fused(input_ids=ids).logits, adapted, atol=1e-5)
        fused.merge_adapter()
        assert torch.allclose(fused(input_ids=ids).logits, adapted, atol=1e-4)


def test_cheap_dropout_drops_p_of_the_elements_and_keeps_the_mean():
    drop = CheapDropout(0.1)
    x = torch.ones(1000, 1000)
    torch.manual_seed(0)
    y = drop(x)
    assert (y == 0).float().mean().item() == pytest.approx(0.1, abs=0.002)
    assert y.mean().item() == pytest.approx(1.0, abs=0.003)
    assert torch.unique(y).tolist() == [0.0, pytest.approx(1 / 0.9, rel=1e-4)]
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)  # the seeded generator decides
    assert not torch.equal(drop(x), y)
    drop.eval()
    assert drop(x) is x
    odd = torch.ones(3, 7, 5)  # element counts that are not a multiple of 4
    drop.train()
    assert drop(odd).shape == odd.shape


def test_attention_is_left_alone_where_it_is_not_plain_causal(tiny_qwen2):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2, attn_implementation="eager")
    assert not per_example_attention(model)
    assert model.config._attn_implementation == "eager"
    sdpa = AutoModelForCausalLM.from_pretrained(tiny_qwen2, attn_implementation="sdpa")
    assert per_example_attention(sdpa) and sdpa.config._attn_implementation == PER_EXAMPLE


def test_bf16_base_layers_leave_what_trains_in_fp32_and_the_loss_close(tiny_qwen2):
    model = _lora_model(tiny_qwen2)
    model.train()
    reference = copy.deepcopy(model)
    assert bf16_base(model) > 0
    bases = [m.base_layer for m in model.modules() if hasattr(m, "base_layer") and hasattr(m, "lora_A")]
    assert bases and all(type(b) is Bf16Linear and b.weight.dtype == torch.bfloat16 for b in bases)
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    batch = PackCollator(max_row=64, pad_id=0)(_rows([10, 14, 6]))
    loss, grads = _loss_and_grads(model, batch)
    loss32, grads32 = _loss_and_grads(reference, batch)
    assert loss == pytest.approx(loss32, rel=1e-2) and loss != loss32  # rounded, not the same numbers
    for name, grad in grads.items():
        assert torch.nn.functional.cosine_similarity(grad.flatten(), grads32[name].flatten(), dim=0) > 0.98, name


def test_auto_precision_on_a_cpu_follows_its_bf16_units(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert precision(TrainConfig(), "cpu") == "bf16"
    monkeypatch.setenv("WORLD_SIZE", "2")  # one of several processes: fp32 was faster there
    assert precision(TrainConfig(), "cpu") == "fp32"
    assert precision(TrainConfig(precision="bf16"), "cpu") == "bf16"
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert precision(TrainConfig(), "cpu") == "fp32"  # auto takes bf16 only with AMX
    assert precision(TrainConfig(precision="bf16"), "cpu") == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    with pytest.raises(TrainError, match="no native bf16"):
        precision(TrainConfig(precision="bf16"), "cpu")
    with pytest.raises(TrainError, match="fp16"):
        precision(TrainConfig(precision="fp16"), "cpu")
    assert precision(TrainConfig(precision="fp32"), "cpu") == "fp32"
