"""The running batch's KV cache in preallocated buffers, written in place: no copy of the whole batch per step.

transformers' DynamicCache grows by concatenation: every decode step copies every row's keys and values of every
layer into new tensors, and the scheduler's own merge (a row joins) and trim (a row leaves) copied the whole batch
again. On the demo model at 64 rows those copies were about half of the scheduler's time (py-spy, docs/
benchmarks.md). Here each layer keeps two buffers [rows, kv heads, columns, head dim]:

- row i of the batch is slot i; the slots in use are 0..n-1;
- every row's tokens end at column `hi` (the next step writes there, for all rows at once), so a row of length L
  holds columns [hi - L, hi), left-padded with masked columns as before; `lo` is where the longest row starts;
- a step writes its one new column in place and gives attention a view of columns [lo, hi + 1);
- a row joins by copying its prefilled cache into its slot (the window first moves right if the row is longer
  than the others); a row leaves by the last slot's row moving into its place (one row copied, not the batch);
- when the buffers are full the window moves back to column 0, or they grow by half.

Columns outside a row's tokens are masked (the attention mask is kept in the same layout) and hold zeros or an
earlier row's finite values, never uninitialised memory (0 weight times NaN would still be NaN).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

__all__ = ["SlotCache", "swap_remove"]


def swap_remove(n: int, leaving: set[int]) -> list[int]:
    """The order of the rows left when `leaving` go and each gap is filled by the last row: new row j is old row
    order[j]. A row that moves always comes from a slot no row uses afterwards."""
    order = list(range(n))
    for i in sorted(leaving, reverse=True):
        last = order.pop()
        if i < len(order):
            order[i] = last
    return order


@functools.cache
def _slot_layer() -> type:
    """The cache-layer class (made on first use: transformers is imported lazily)."""
    from transformers.cache_utils import CacheLayerMixin

    class SlotLayer(CacheLayerMixin):
        """One layer's view of the slot buffers, with the surface transformers' attention uses on a cache layer."""

        is_sliding = False
        is_initialized = True

        def __init__(self, owner: SlotCache, index: int) -> None:  # no super().__init__: keys/values are views
            self.owner, self.index = owner, index

        @property
        def keys(self) -> Any:
            o = self.owner
            return o.k[self.index][: o.n, :, o.lo : o.hi]

        @property
        def values(self) -> Any:
            o = self.owner
            return o.v[self.index][: o.n, :, o.lo : o.hi]

        def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
            pass

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            o = self.owner
            end = o.hi + key_states.shape[-2]
            k, v = o.k[self.index], o.v[self.index]
            k[: o.n, :, o.hi : end] = key_states
            v[: o.n, :, o.hi : end] = value_states
            return k[: o.n, :, o.lo : end], v[: o.n, :, o.lo : end]

        def get_seq_length(self) -> int:
            return self.owner.hi - self.owner.lo

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            return self.get_seq_length() + query_length, 0

        def get_max_length(self) -> int:
            return -1

    return SlotLayer


class SlotCache:
    """Keys, values and attention mask of up to `rows` rows in preallocated buffers; see the module docstring.

    `cache` is the transformers cache object handed to the model for a decode step (its layers write here).
    """

    def __init__(self, config: Any, like: Any) -> None:
        """`like`: a prefilled transformers cache of one row (shapes, dtype and device of the buffers)."""
        from transformers import DynamicCache

        self.cache = DynamicCache(config=config)
        self.cache.layers = [_slot_layer()(self, i) for i in range(len(like.layers))]
        first = like.layers[0].keys
        self._dtype, self._device = first.dtype, first.device
        self._shapes = [(layer.keys.shape[1], layer.keys.shape[3], layer.values.shape[3]) for layer in like.layers]
        self.k: list[Any] = []
        self.v: list[Any] = []
        self.mask: Any = None
        self.n = self.lo = self.hi = 0
        self.starts: list[int] = []  # the first column of each row
        self._allocate(0, 0)

    # -- capacity --------------------------------------------------------------------------------------

    @property
    def capacity(self) -> tuple[int, int]:
        return self.mask.shape[0], self.mask.shape[1]

    def _allocate(self, rows: int, columns: int, shift: int = 0) -> None:
        """New zeroed buffers of `rows` x `columns`, keeping the rows in use (their window moved by `shift`)."""
        import torch

        k = [torch.zeros((rows, h, columns, dk), dtype=self._dtype, device=self._device) for h, dk, _ in self._shapes]
        v = [torch.zeros((rows, h, columns, dv), dtype=self._dtype, device=self._device) for h, _, dv in self._shapes]
        mask = torch.zeros((rows, columns), dtype=torch.long, device=self._device)
        if self.n:
            a, b = self.lo + shift, self.hi + shift
            for new, old in ((k, self.k), (v, self.v)):
                for n_, o_ in zip(new, old, strict=True):
                    n_[: self.n, :, a:b] = o_[: self.n, :, self.lo : self.hi]
            mask[: self.n, a:b] = self.mask[: self.n, self.lo : self.hi]
        self.k, self.v, self.mask = k, v, mask
        self._moved(shift)

    def _moved(self, shift: int) -> None:
        self.lo, self.hi = self.lo + shift, self.hi + shift
        self.starts = [s + shift for s in self.starts]

    def _shift(self, shift: int) -> None:
        """Move the rows' window by `shift` columns within the buffers (which must hold it)."""
        if not shift or not self.n:
            self._moved(shift)
            return
        a, b = self.lo + shift, self.hi + shift
        for buffers in (self.k, self.v):
            for t in buffers:
                t[: self.n, :, a:b] = t[: self.n, :, self.lo : self.hi].clone()
        self.mask[: self.n, a:b] = self.mask[: self.n, self.lo : self.hi].clone()
        self._moved(shift)

    def _fit(self, rows: int, hi: int) -> None:
        """Room for `rows` rows whose tokens end at column `hi` (after moving the window there) plus one column."""
        have_rows, have_columns = self.capacity
        if rows > have_rows or hi + 1 > have_columns:
            need = hi + 1
            columns = have_columns if need <= have_columns else max(need + 64, need + need // 2)
            self._allocate(max(rows, have_rows + have_rows // 2, 1), columns, hi - self.hi)
        else:
            self._shift(hi - self.hi)

    # -- rows ------------------------------------------------------------------------------------------

    def add(self, caches: Sequence[Any]) -> None:
        """Append rows from their own prefilled one-row caches (transformers caches with .layers[i].keys/.values)."""
        lengths = [c.layers[0].keys.shape[-2] for c in caches]
        if self.n == 0:  # an emptied batch starts again at column 0
            self.lo = self.hi = 0
            self.starts = []
        hi = max(self.hi, *lengths)
        before = self.n
        self._fit(self.n + len(caches), hi)
        lo = self.lo
        for cache, length in zip(caches, lengths, strict=True):
            row, start = self.n, self.hi - length
            for i, layer in enumerate(cache.layers):
                self.k[i][row, :, start : self.hi] = layer.keys[0]
                self.v[i][row, :, start : self.hi] = layer.values[0]
            self.mask[row, :] = 0
            self.mask[row, start : self.hi] = 1
            self.starts.append(start)
            self.n += 1
        self.lo = min(self.starts)
        if before and self.lo < lo:  # left of the rows already there (stale once the window moved right): masked
            self.mask[:before, self.lo : lo] = 0

    def keep(self, order: list[int]) -> None:
        """Keep the rows `order` names, in that order (from `swap_remove`: moved rows come from unused slots)."""
        import torch

        moves = [(j, src) for j, src in enumerate(order) if src != j]
        if moves:
            dst = torch.tensor([j for j, _ in moves], device=self._device)
            src = torch.tensor([s for _, s in moves], device=self._device)
            for buffers in (self.k, self.v):
                for t in buffers:
                    t[dst, :, self.lo : self.hi] = t[src, :, self.lo : self.hi]
            self.mask[dst, self.lo : self.hi] = self.mask[src, self.lo : self.hi]
        self.starts = [self.starts[i] for i in order]
        self.n = len(order)
        self.lo = min(self.starts) if self.starts else self.hi

    def step_mask(self) -> Any:
        """Open the next column for every row and return the attention mask [n, hi + 1 - lo] of the step."""
        if self.hi + 1 > self.capacity[1]:
            if self.lo > 0:
                self._shift(-self.lo)
            if self.hi + 1 > self.capacity[1]:
                self._fit(self.n, self.hi)
        self.mask[: self.n, self.hi] = 1
        return self.mask[: self.n, self.lo : self.hi + 1]

    def advance(self) -> None:
        """The step's column is written (every layer's update ran): the rows now end one column further."""
        self.hi += 1
