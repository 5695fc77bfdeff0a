"""Training speed-ups on a CPU that keep the maths: attention per packed example, cheaper dropout masks, and the
LoRA update fused into its layer's output. `speed_up(model, packed=...)` applies what fits the model.
`bf16_base(model)` is `train.precision = bf16` on a CPU (not a speed-up that keeps the maths: the base layers'
matmuls round their inputs to bf16).

`per_example_attention(model)`: a packed row (finetune.batching.PackCollator) holds several examples, and
transformers' `sdpa` attends over the whole row through a block-diagonal mask: a row of 512 tokens made of
seven 70-token examples computes 512 x 512 scores to keep 7 x 70 x 70 of them. With this on, the row's examples
are gathered into a padded batch of their own, attended causally (no mask tensor at all) and scattered back:
the same scores, a fraction of the work. Examples of very different lengths go in two such batches (the shorter
ones padded to the longest of them) when that means fewer scores. Batches with an attention mask (padded
batches, `evaluate_loss`) and rows of one example each go through `sdpa` as before.

`cheap_dropout(model)`: on a CPU, `torch.nn.Dropout`'s `bernoulli_` draws one random number per element
through the CPU generator's scalar path; LoRA applies it to the input of every adapted layer, about a fifth of
a training step of a small model. `CheapDropout` draws 64 random bits at a time (one 16-bit draw per element,
so the drop probability is p rounded to 1/65,536) from the same seeded generator: the same distribution,
reproducible under `torch.manual_seed`, several times faster. CUDA keeps torch's fused dropout.

`fused_lora(model)`: peft computes a LoRA layer as `base(x) + B(A(dropout(x))) * scaling`, an output-sized
multiplication and addition after the small matmuls (and their twins in the backward pass). `FusedLoraLinear`
computes the same sum as one `addmm` whose alpha carries the scaling (and CheapDropout's 1/(1-p)). Anything
peft does besides plain LoRA (merged weights, several or disabled adapters, DoRA and other variants,
`adapter_names` batches) goes through peft's own forward.

Measured in docs/benchmarks.md ("Persona training"); tests/test_speedups.py checks that both give the
unchanged model's losses and gradients.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners.lora.layer import Linear as LoraLinear

__all__ = [
    "Bf16Linear",
    "bf16_base",
    "CheapDropout",
    "FusedLoraLinear",
    "per_example_attention",
    "cheap_dropout",
    "fused_lora",
    "speed_up",
    "PER_EXAMPLE",
]

PER_EXAMPLE = "rolechat_per_example"  # the attention implementation's registered name

_BITS = 16


class CheapDropout(torch.nn.Module):
    """Dropout with a 16-bit uniform draw per element: zero with probability `round(p * 65536) / 65536`, and
    the kept elements scaled so that the expectation is unchanged."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        drop = round(p * (1 << _BITS))
        self.threshold = drop - (1 << (_BITS - 1))  # int16 draws are uniform on [-32768, 32767]
        self.scale = (1 << _BITS) / ((1 << _BITS) - drop) if drop < (1 << _BITS) else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        kept, scale = self.unscaled(x)
        return kept * scale

    def unscaled(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(x with the dropped elements zeroed, the factor the kept ones still need); training only."""
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
        keep = bits.view(torch.int16)[:n].view(x.shape) >= self.threshold
        return x * keep.to(x.dtype), self.scale

    def extra_repr(self) -> str:
        return f"p={self.p}"


def cheap_dropout(model: Any) -> int:
    """Replace the LoRA dropout modules of `model` (on the CPU) by CheapDropout; returns how many."""
    swapped = 0
    for module in model.modules():
        drops = getattr(module, "lora_dropout", None)
        if not isinstance(drops, torch.nn.ModuleDict):
            continue
        for name, drop in list(drops.items()):
            weight = module.lora_A[name].weight if name in getattr(module, "lora_A", {}) else None
            if type(drop) is torch.nn.Dropout and drop.p > 0 and (weight is None or weight.device.type == "cpu"):
                drops[name] = CheapDropout(drop.p)
                swapped += 1
    return swapped


class FusedLoraLinear(LoraLinear):
    """peft's LoRA Linear with plain LoRA computed as one addmm: base(x) + (scaling * dropout(x) A^T) B^T."""

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        active = self.active_adapters
        name = active[0] if len(active) == 1 else None
        plain = (
            not (args or kwargs or self.disable_adapters or self.merged)
            and name in self.lora_A
            and name not in self.lora_variant
            and x.dtype == self.lora_A[name].weight.dtype
        )
        if not plain:
            return super().forward(x, *args, **kwargs)
        result = self.base_layer(x)
        drop, alpha = self.lora_dropout[name], self.scaling[name]
        if isinstance(drop, CheapDropout) and drop.training and drop.p > 0:
            x, scale = drop.unscaled(x)
            alpha *= scale
        else:
            x = drop(x)
        low = F.linear(x, self.lora_A[name].weight)
        flat = torch.addmm(
            result.reshape(-1, result.shape[-1]),
            low.reshape(-1, low.shape[-1]),
            self.lora_B[name].weight.t(),
            alpha=alpha,
        )
        return flat.view(result.shape)


class Bf16Linear(torch.nn.Linear):
    """A frozen Linear kept in bf16: its input is rounded to bf16 for the matmul (fp32 accumulation), its output
    comes back in the input's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(self.weight.dtype), self.weight, self.bias).to(x.dtype)


def bf16_base(model: Any) -> int:
    """`train.precision = bf16` on a CPU: the frozen base Linear layers under LoRA become Bf16Linear (half the
    memory, matmuls on the CPU's bf16 units); LoRA weights, optimizer, norms, embeddings and loss stay fp32.
    Returns how many layers changed."""
    changed = 0
    for module in model.modules():
        base = getattr(module, "base_layer", None)
        if isinstance(module, LoraLinear) and type(base) is torch.nn.Linear and not base.weight.requires_grad:
            base.to(torch.bfloat16)
            base.__class__ = Bf16Linear
            changed += 1
    return changed


def fused_lora(model: Any) -> int:
    """Make the plain peft LoRA Linear layers of `model` (on the CPU) FusedLoraLinear; returns how many."""
    fused = 0
    for module in model.modules():
        if type(module) is LoraLinear and not module.fan_in_fan_out and isinstance(module.base_layer, torch.nn.Linear):
            if module.base_layer.weight.device.type == "cpu":
                module.__class__ = FusedLoraLinear
                fused += 1
    return fused


def speed_up(model: Any, *, packed: bool) -> dict[str, Any]:
    """Apply the speed-ups that fit a CPU training run of `model`; says what was applied."""
    return {
        "per_example_attention": packed and per_example_attention(model),
        "cheap_dropout": cheap_dropout(model),
        "fused_lora": fused_lora(model),
    }


@dataclass
class _Bucket:
    """Examples attended together: `count` of them padded to `width`; `source` holds, for every slot of that
    (count x width) layout, the token it takes (the index one past the last token means padding)."""

    source: torch.Tensor
    count: int
    width: int


def _cost(lengths: list[int], split: int) -> int:
    """Attention work (padded length squared) of the sorted `lengths` attended in two buckets cut at `split`."""
    return split * lengths[split - 1] ** 2 + (len(lengths) - split) * lengths[-1] ** 2


def _segments(position_ids: torch.Tensor) -> tuple[list[_Bucket], torch.Tensor] | None:
    """How the examples of packed rows are attended: one or two buckets of examples (the shorter ones padded to
    the longest short one, the rest to the longest), and where each token's output is found in the buckets'
    outputs laid end to end. None when no row holds more than one example.

    An example starts at the start of a row or wherever the position does not follow the one before it."""
    rows, width = position_ids.shape
    flat = position_ids.reshape(-1)
    tokens = flat.numel()
    starts = torch.ones_like(flat, dtype=torch.bool)
    starts[1:] = flat[1:] != flat[:-1] + 1
    starts[::width] = True
    count = int(starts.sum())
    if count == rows:
        return None
    segment = torch.cumsum(starts, 0) - 1
    first = torch.nonzero(starts).flatten()
    offset = torch.arange(tokens, device=flat.device) - first[segment]
    lengths = torch.bincount(segment, minlength=count)
    order = torch.argsort(lengths, stable=True)
    ordered = lengths[order].tolist()
    split = min(range(1, count + 1), key=lambda i: _cost(ordered, i))
    cuts = [(0, split), (split, count)] if split < count else [(0, count)]
    bucket_of = torch.empty(count, dtype=torch.long, device=flat.device)
    rank = torch.empty(count, dtype=torch.long, device=flat.device)
    widths, bases, base = [], [], 0
    for b, (lo, hi) in enumerate(cuts):
        bucket_of[order[lo:hi]] = b
        rank[order[lo:hi]] = torch.arange(hi - lo, device=flat.device)
        widths.append(ordered[hi - 1])
        bases.append(base)
        base += (hi - lo) * ordered[hi - 1]
    token_bucket = bucket_of[segment]
    slot = rank[segment] * torch.tensor(widths, device=flat.device)[token_bucket] + offset
    back = torch.tensor(bases, device=flat.device)[token_bucket] + slot
    buckets = []
    for b, (lo, hi) in enumerate(cuts):
        source = torch.full(((hi - lo) * widths[b],), tokens, dtype=torch.long, device=flat.device)
        mine = token_bucket == b
        source[slot[mine]] = torch.nonzero(mine).flatten()
        buckets.append(_Bucket(source, hi - lo, widths[b]))
    return buckets, back


# The packed layout of the batch this thread runs: set by a pre-hook on the decoder before every forward pass and
# kept until the next one (gradient checkpointing recomputes the layers during the backward pass).
_layout = threading.local()


def _attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """transformers' attention-function signature: [b, heads, t, d] in, ([b, t, heads, d], None) out."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    layout = getattr(_layout, "current", None)
    if attention_mask is not None or layout is None or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    buckets, back = layout
    rows, heads, width, dim = query.shape

    def tokens(t: torch.Tensor) -> torch.Tensor:  # [rows * width + 1 (a zero row for padding), heads, dim]
        flat = t.transpose(1, 2).reshape(rows * width, t.shape[1], dim)
        return torch.cat([flat, flat.new_zeros(1, t.shape[1], dim)])

    q, k, v = tokens(query), tokens(key), tokens(value)
    outs = []
    for bucket in buckets:
        laid = [
            t.index_select(0, bucket.source).view(bucket.count, bucket.width, -1, dim).transpose(1, 2)
            for t in (q, k, v)
        ]
        out = F.scaled_dot_product_attention(
            *laid, dropout_p=dropout, is_causal=True, scale=scaling, enable_gqa=heads != key.shape[1]
        )
        outs.append(out.transpose(1, 2).reshape(bucket.count * bucket.width, heads, dim))
    out = (torch.cat(outs) if len(outs) > 1 else outs[0]).index_select(0, back)
    return out.view(rows, width, heads, dim), None


def _mask(*args, attention_mask=None, **kwargs):
    """No mask tensor for packed rows (the attention above keeps examples apart); sdpa's mask otherwise."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None:
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def _supported(config: Any) -> bool:
    """Full causal attention in every layer, as sdpa computes it (no sliding window, soft-capping or ALiBi)."""
    types = getattr(config, "layer_types", None) or ["full_attention"]
    return (
        getattr(config, "_attn_implementation", None) == "sdpa"
        and set(types) == {"full_attention"}
        and not getattr(config, "use_sliding_window", False)
        and getattr(config, "attn_logit_softcapping", None) is None
        and getattr(config, "is_causal", True)
    )


def per_example_attention(model: Any) -> bool:
    """Switch `model` (a transformers model, or a peft model around one) to per-example attention for packed
    rows; returns False, changing nothing, where its attention is not plain causal sdpa."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not _supported(base.config) or not hasattr(base, "get_decoder"):
        return False
    AttentionInterface.register(PER_EXAMPLE, _attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(PER_EXAMPLE, _mask)
    base.set_attn_implementation(PER_EXAMPLE)

    def remember(_module, args, kwargs):
        positions = kwargs.get("position_ids")
        has_mask = kwargs.get("attention_mask") is not None
        _layout.current = None if positions is None or has_mask or positions.dim() != 2 else _segments(positions)

    base.get_decoder().register_forward_pre_hook(remember, with_kwargs=True)
    return True
