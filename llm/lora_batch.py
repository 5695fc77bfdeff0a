"""Rows of different LoRA adapters in one forward pass, each row's LoRA applied by two plain matmuls per layer.

peft's own mixed batch (`adapter_names=`) splits every LoRA layer's input by adapter and writes each part's result
back, per layer and per adapter: on the demo model a decode step of 32 rows mixing the base with two adapters took
2.3x a base step (bench/bench_decode_step.py). Here every LoRA layer returns its base layer's output (peft's
`_disable_adapters` flag) and a forward hook on each adds every row's own LoRA: x through the A of every adapter
the layer holds (concatenated along the rank), each row's columns of other adapters zeroed, then through the
concatenated B, times the row's adapter's scaling. The order of operations is peft's (lora_B(lora_A(x)) *
scaling) and the zeroed columns add exact zeros, so a row's result is its solo result within float rounding.

Plain LoRA on linear layers only: `per_row(layers, names)` gives None (the caller falls back to peft's path) for
DoRA, LoRA biases, dropout in training mode, or any other LoRA layer type among the rows' adapters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["BASE_ADAPTER", "lora_layers", "per_row"]

BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed batch
_STACKS = "_rolechat_lora_stacks"  # on each LoRA layer: (key, A, B, each column's slot, scaling per slot)


def lora_layers(model: Any) -> list[Any]:
    """Every adapter (peft tuner) layer of `model`, a walk over its modules (the runtime caches the list and renews
    it when an adapter is loaded or unloaded); none when an adapter also replaces whole modules (`modules_to_save`,
    which neither a per-row hook nor a flag flip can switch: `per_row` then leaves the batch to peft)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    if any(getattr(c, "modules_to_save", None) for c in (getattr(model, "peft_config", None) or {}).values()):
        return []
    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def _plain(layer: Any, adapters: Sequence[str]) -> bool:
    """Whether `layer` applies each of `adapters` it holds as plain LoRA: base(x) + B(A(dropout(x))) x scaling."""
    from peft.tuners.lora import Linear

    held = [a for a in adapters if a in getattr(layer, "lora_A", {})]
    if not held:
        return True
    if type(layer) is not Linear or getattr(layer, "merged", False):
        return False
    for name in held:
        if layer.use_dora.get(name) or getattr(layer, "lora_bias", {}).get(name):
            return False
        if layer.lora_A[name].bias is not None or layer.lora_B[name].bias is not None:
            return False
        dropout = layer.lora_dropout[name]
        if dropout.training and getattr(dropout, "p", 0.0) > 0:
            return False
    return True


def _stacks(layer: Any, adapters: tuple[str, ...]) -> tuple[Any, Any, Any, Any]:
    """(A: R x in, B: out x R, owner: R, scaling: slots) of `layer`: the A and B of every adapter of `adapters` it
    holds, concatenated along the rank (R columns in all), each column's adapter slot (1 + its index in
    `adapters`; slot 0 is the base model) and each slot's scaling; built once per set of adapters and weights, kept
    on the layer."""
    import torch

    held = [(name, layer.lora_A[name].weight, layer.lora_B[name].weight) for name in adapters if name in layer.lora_A]
    key = (adapters, tuple((name, a.data_ptr(), b.data_ptr(), a._version, b._version) for name, a, b in held))
    cached = getattr(layer, _STACKS, None)
    if cached is not None and cached[0] == key:
        return cached[1:]
    weight = layer.base_layer.weight
    stack_a = torch.cat([a.detach() for _, a, _ in held]).to(weight.dtype)
    stack_b = torch.cat([b.detach() for _, _, b in held], dim=1).to(weight.dtype)
    owner = torch.cat(
        [torch.full((a.shape[0],), adapters.index(name) + 1, device=weight.device) for name, a, _ in held]
    )
    scaling = torch.zeros(len(adapters) + 1, dtype=weight.dtype, device=weight.device)
    for name, _, _ in held:
        scaling[adapters.index(name) + 1] = float(layer.scaling[name])
    setattr(layer, _STACKS, (key, stack_a, stack_b, owner, scaling))
    return stack_a, stack_b, owner, scaling


@contextlib.contextmanager
def _applied(every: list[Any], layers: list[Any], adapters: tuple[str, ...], slots: Any) -> Iterator[None]:
    """Within: each of `every` (all the model's LoRA layers) returns its base layer's output, and each of `layers`
    (those holding one of `adapters`) adds each row's own LoRA, row i that of slot `slots[i]`."""

    def hook(layer, args, kwargs, output):
        stack_a, stack_b, owner, scaling = _stacks(layer, adapters)
        x = args[0] if args else kwargs["x"]
        x = x.to(stack_a.dtype)
        rows = x.shape[0]
        # every adapter's low-rank projection at once, then each row keeps only its own adapter's columns (0/1:
        # exact), so one matmul through the concatenated B gives each row its own B(A x); scaled as peft scales
        low = (x @ stack_a.T) * (owner[None, :] == slots[:, None]).to(x.dtype).view(rows, *[1] * (x.dim() - 2), -1)
        delta = (low @ stack_b.T) * scaling[slots].view(rows, *[1] * (x.dim() - 1))
        return output + delta.to(output.dtype)

    # every LoRA layer returns its base layer's output: the flag peft's disable_adapter sets, flipped directly (as
    # the runtime's persona switch does) and put back as it was, without peft's walk over every adapter weight
    before = [layer._disable_adapters for layer in every]
    handles = [layer.register_forward_hook(hook, with_kwargs=True) for layer in layers]
    try:
        for layer in every:
            layer._disable_adapters = True
        yield
    finally:
        for layer, was in zip(every, before):
            layer._disable_adapters = was
        for handle in handles:
            handle.remove()


def per_row(layers: list[Any] | None, names: Sequence[str | None]) -> contextlib.AbstractContextManager | None:
    """A context in which one forward pass of the model whose LoRA layers are `layers` (`lora_layers(model)`, or
    the runtime's cached list) applies to row i the adapter `names[i]` (None or BASE_ADAPTER: the base model
    alone), or None when an adapter is not plain LoRA on linear layers (then use peft's `adapter_names`)."""
    import torch

    rows = [None if n in (None, BASE_ADAPTER) else n for n in names]
    adapters = tuple(dict.fromkeys(n for n in rows if n is not None))
    if not adapters or not layers:
        return None
    holding = [layer for layer in layers if any(a in getattr(layer, "lora_A", {}) for a in adapters)]
    if not all(_plain(layer, adapters) for layer in holding):
        return None
    device = holding[0].base_layer.weight.device if holding else torch.device("cpu")
    slots = torch.tensor([0 if n is None else adapters.index(n) + 1 for n in rows], device=device)
    return _applied(layers, holding, adapters, slots)
