"""llm.lora_batch: each row's LoRA by two plain matmuls per layer gives what the row gets alone and what peft's mixed
batch gives; adapters it cannot apply fall back to peft."""

from __future__ import annotations

import pytest
import torch

from rolechat.llm import lora_batch


@pytest.fixture(scope="module")
def mixed(tiny_qwen2):
    """The tiny Qwen2 with two random adapters of different ranks and targets."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(3)
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32).eval()
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=16, target_modules="all-linear", init_lora_weights=False))
    model.add_adapter(
        "beta", LoraConfig(r=2, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    assert isinstance(model, PeftModel)
    return model.eval()


def logits(model, ids, **extra):
    with torch.inference_mode():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra).logits


def test_every_row_gets_its_own_adapter_as_alone_and_as_peft_mixes_them(mixed):
    names = ["default", "__base__", "beta", "default", None, "beta"]
    ids = torch.randint(10, 200, (len(names), 7), generator=torch.Generator().manual_seed(0))
    alone = []
    for row, name in zip(ids, names):
        if name in (None, "__base__"):
            with mixed.disable_adapter():
                alone.append(logits(mixed, row[None]))
        else:
            mixed.set_adapter(name)
            alone.append(logits(mixed, row[None]))
    context = lora_batch.per_row(lora_batch.lora_layers(mixed), names)
    assert context is not None
    with context:
        got = logits(mixed, ids)
    peft = logits(mixed, ids, adapter_names=[n or "__base__" for n in names])
    for i in range(len(names)):
        assert torch.allclose(got[i], alone[i][0], atol=1e-5), names[i]
    assert torch.allclose(got, peft, atol=1e-5)
    assert not torch.allclose(alone[0], alone[1], atol=1e-3)  # the adapters really change the rows
    assert not torch.allclose(alone[0], alone[2], atol=1e-3)
    assert all(layer._disable_adapters is False for layer in lora_batch.lora_layers(mixed))  # switched back on
    mixed.set_adapter("default")


def test_adapters_it_cannot_apply_fall_back_to_peft(tiny_qwen2):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32).eval()
    dora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj"], use_dora=True)).eval()
    assert lora_batch.per_row(lora_batch.lora_layers(dora), ["default", "__base__"]) is None
    assert (
        lora_batch.per_row(lora_batch.lora_layers(dora), ["__base__", None]) is None
    )  # no adapter among the rows: nothing to add


def test_an_adapter_reloaded_with_other_targets_is_applied_as_reloaded(mixed):
    from peft import LoraConfig

    ids = torch.randint(10, 200, (2, 5), generator=torch.Generator().manual_seed(1))
    names = ["beta", "__base__"]
    with lora_batch.per_row(lora_batch.lora_layers(mixed), names):
        logits(mixed, ids)  # the stacks of the first "beta" are built and kept on its layers
    mixed.delete_adapter("beta")
    torch.manual_seed(5)
    mixed.add_adapter(
        "beta", LoraConfig(r=3, lora_alpha=6, target_modules=["o_proj", "up_proj"], init_lora_weights=False)
    )
    mixed.eval()
    mixed.set_adapter("beta")
    alone = logits(mixed, ids[:1])
    with lora_batch.per_row(lora_batch.lora_layers(mixed), names):
        got = logits(mixed, ids)
    assert torch.allclose(got[0], alone[0], atol=1e-5)
    with mixed.disable_adapter():
        assert torch.allclose(got[1], logits(mixed, ids[1:])[0], atol=1e-5)
    mixed.set_adapter("default")
