"""Batches without wasted compute: packing (the default) or dynamic padding of length-grouped batches.

With `sparse_logits`, a batch also says which positions carry loss (`logits_to_keep`, a 1-D tensor of
positions whose next token is supervised in some row) and gives the matching next-token labels as
`shift_labels`: the model then computes the vocabulary projection and softmax only there, not on the
prompt. Same loss, less compute and far less memory for large vocabularies (Qwen: 151k).

Packing concatenates a batch's examples into rows (of at most `max_row` tokens, balanced so that padding
the rows to the longest wastes little) and restarts `position_ids` at each example; the
model's attention mask builder (transformers `find_packed_sequence_indices`) turns that into a
block-diagonal causal mask, so no example attends to another (the model must run with use_cache=False,
which training does). The first token of every packed example is unsupervised, so nothing is learnt
across the seam.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["PadCollator", "PackCollator", "ExampleDataset", "LengthGroupedSampler", "padding_fraction", "pack_rows"]


class ExampleDataset:
    """A list of examples as the Trainer wants it: `ds[i] -> {"input_ids", "labels"}` (lengths for grouping)."""

    def __init__(self, examples: Sequence[Any]) -> None:
        self.rows = [{"input_ids": list(e.input_ids), "labels": list(e.labels)} for e in examples]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.rows[i]

    @property
    def lengths(self) -> list[int]:
        return [len(r["input_ids"]) for r in self.rows]


def _sparsify(batch: dict[str, Any]) -> dict[str, Any]:
    """Keep logits only where a next token is supervised; labels become the matching shifted labels."""
    import torch

    shifted = batch["labels"][:, 1:]
    keep = torch.nonzero((shifted != -100).any(dim=0)).flatten()
    if keep.numel() == 0:
        return batch
    selected = shifted[:, keep]
    return {**batch, "labels": selected, "shift_labels": selected, "logits_to_keep": keep}


@dataclass
class PadCollator:
    """Right-pad a batch to its longest row: pad id in inputs, -100 in labels, 0 in the attention mask."""

    pad_id: int
    multiple_of: int = 1
    sparse_logits: bool = False

    def __call__(self, rows: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        if self.multiple_of > 1:
            width = -(-width // self.multiple_of) * self.multiple_of
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            mask[i, :n] = 1
        batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        return _sparsify(batch) if self.sparse_logits else batch


def pack_rows(lengths: Sequence[int], max_row: int) -> list[list[int]]:
    """Group example indices into as few rows of at most `max_row` tokens as the total needs, balanced
    (longest first, each to the emptiest row it fits), so rows come out about equally long and padding
    them to the longest wastes little. `max_row` 0: one row."""
    if not lengths:
        return []
    if max_row <= 0:
        return [list(range(len(lengths)))]
    bins: list[list[int]] = [[] for _ in range(max(1, -(-sum(lengths) // max_row)))]
    used = [0] * len(bins)
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        fits = [b for b in range(len(bins)) if used[b] + lengths[i] <= max_row]
        if not fits:
            bins.append([])
            used.append(0)
            fits = [len(bins) - 1]
        b = min(fits, key=lambda b: used[b])
        bins[b].append(i)
        used[b] += lengths[i]
    return [b for b in bins if b]


@dataclass
class PackCollator:
    """Pack a batch into rows of at most `max_row` tokens, position ids restarting at each example (no
    cross-attention). Rows are bounded because attention over a packed row costs its length squared: one
    row of 8 examples costs several times a padded batch of them. A short row is filled with pad tokens
    that form a segment of their own and carry no loss. `num_real_tokens` (popped by the trainer before
    the forward pass) says how many tokens are not padding."""

    sparse_logits: bool = False
    max_row: int = 0
    pad_id: int = 0

    def __call__(self, rows: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        packed = []
        for group in pack_rows([len(r["input_ids"]) for r in rows], self.max_row):
            ids: list[int] = []
            labels: list[int] = []
            positions: list[int] = []
            for i in group:
                r = rows[i]
                ids += r["input_ids"]
                labels += [-100] + list(r["labels"][1:])
                positions += range(len(r["input_ids"]))
            packed.append((ids, labels, positions))
        width = max(len(ids) for ids, _, _ in packed)
        real = sum(len(ids) for ids, _, _ in packed)
        for ids, labels, positions in packed:
            fill = width - len(ids)
            ids += [self.pad_id] * fill
            labels += [-100] * fill
            positions += range(fill)
        as_rows = lambda k: torch.tensor([row[k] for row in packed], dtype=torch.long)
        batch = {"input_ids": as_rows(0), "labels": as_rows(1), "position_ids": as_rows(2), "num_real_tokens": real}
        return _sparsify(batch) if self.sparse_logits else batch


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of pad positions when `batches` (lists of indices) are each padded to their longest row."""
    real = padded = 0
    for batch in batches:
        if not batch:
            continue
        width = max(lengths[i] for i in batch)
        real += sum(lengths[i] for i in batch)
        padded += width * len(batch)
    return 1 - real / padded if padded else 0.0


class LengthGroupedSampler:
    """Random batches of similar length: little padding, no length curriculum.

    Shuffle, cut into mega-batches of `group` examples (at least 64 batches' worth, so small datasets
    also group well), sort each by length and cut it into batches; then shuffle the batches, so the run
    does not go from long examples to short ones (on a small dataset one mega-batch is the whole epoch,
    and a sorted epoch trains measurably worse). The batch holding the longest example goes first, so a
    run that will not fit in memory fails at step 1. A short last batch stays last, keeping the batch
    boundaries that the Trainer cuts every `batch_size` indices. The order is a function of (seed, epoch),
    so a resumed run skips exactly the batches it already trained on.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, group_batches: int = 64) -> None:
        self.lengths = list(lengths)
        self.batch_size = max(batch_size, 1)
        self.group = self.batch_size * max(group_batches, 1)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def batches(self) -> list[list[int]]:
        import torch

        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g).tolist()
        full: list[list[int]] = []
        short: list[list[int]] = []
        for start in range(0, len(order), self.group):
            group = sorted(order[start : start + self.group], key=lambda i: -self.lengths[i])
            for b in range(0, len(group), self.batch_size):
                batch = group[b : b + self.batch_size]
                (full if len(batch) == self.batch_size else short).append(batch)
        full = [full[i] for i in torch.randperm(len(full), generator=g).tolist()]
        if full:
            longest = max(range(len(full)), key=lambda i: max(self.lengths[j] for j in full[i]))
            full.insert(0, full.pop(longest))
        return full + short

    def __iter__(self):
        for batch in self.batches():
            yield from batch
