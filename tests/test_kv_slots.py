"""llm.kv_slots: the batch's KV cache in slot buffers holds, for every row, exactly its own tokens' keys and values,
its mask covers them and nothing else, through joins of longer rows, leaves, and buffers that fill up."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch

from rolechat.llm.kv_slots import SlotCache, swap_remove

HEADS, DIM, LAYERS = 2, 4, 3


def one_row(length: int, seed: int):
    """A prefilled one-row cache whose every value names its row and column (so a misplaced one shows)."""
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(
        layers=[
            SimpleNamespace(
                keys=torch.rand(1, HEADS, length, DIM, generator=g),
                values=torch.rand(1, HEADS, length, DIM, generator=g),
            )
            for _ in range(LAYERS)
        ]
    )


@pytest.fixture
def config(tiny_qwen2):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(tiny_qwen2)


def check(slots: SlotCache, rows: list[list]) -> None:
    """Every row's view: left padding masked, then its own columns, in order, in every layer."""
    assert slots.n == len(rows)
    width = slots.hi - slots.lo
    mask = slots.mask[: slots.n, slots.lo : slots.hi]
    for i, columns in enumerate(rows):
        pad = width - len(columns)
        assert pad >= 0 and mask[i].tolist() == [0] * pad + [1] * len(columns)
        for layer in range(LAYERS):
            keys = slots.cache.layers[layer].keys[i, :, pad:]
            values = slots.cache.layers[layer].values[i, :, pad:]
            assert torch.equal(keys, torch.stack([c[layer][0] for c in columns], dim=1))
            assert torch.equal(values, torch.stack([c[layer][1] for c in columns], dim=1))


def step(slots: SlotCache, rows: list[list], g: torch.Generator) -> None:
    mask = slots.step_mask()
    assert mask.shape == (slots.n, slots.hi - slots.lo + 1) and bool(mask[:, -1].all())
    new = [
        [(torch.rand(HEADS, DIM, generator=g), torch.rand(HEADS, DIM, generator=g)) for _ in rows]
        for _ in range(LAYERS)
    ]
    for layer in range(LAYERS):
        k = torch.stack([new[layer][i][0] for i in range(len(rows))])[:, :, None]
        v = torch.stack([new[layer][i][1] for i in range(len(rows))])[:, :, None]
        keys, values = slots.cache.layers[layer].update(k, v)
        assert keys.shape[2] == mask.shape[1]  # what attention sees matches the mask
    slots.advance()
    for i, columns in enumerate(rows):
        columns.append([new[layer][i] for layer in range(LAYERS)])


def columns_of(cache) -> list:
    length = cache.layers[0].keys.shape[2]
    return [
        [(cache.layers[la].keys[0, :, t], cache.layers[la].values[0, :, t]) for la in range(LAYERS)]
        for t in range(length)
    ]


def test_rows_join_step_and_leave_and_each_keeps_exactly_its_own_tokens(config):
    rnd, g = random.Random(5), torch.Generator().manual_seed(5)
    first = one_row(6, 0)
    slots = SlotCache(config, first)
    rows: list[list] = []
    slots.add([first])
    rows.append(columns_of(first))
    check(slots, rows)
    grown = full = 0
    for n in range(300):
        before = slots.capacity
        if rnd.random() < 0.3 and len(rows) < 12:  # joins, sometimes longer than every row there (window moves)
            joining = [one_row(rnd.choice([1, 3, 9, 40, 130]), 1000 + n * 3 + j) for j in range(rnd.randint(1, 3))]
            slots.add(joining)
            rows.extend(columns_of(c) for c in joining)
        if rnd.random() < 0.25 and rows:  # leaves: the last rows fill the gaps
            leaving = set(rnd.sample(range(len(rows)), rnd.randint(1, min(3, len(rows)))))
            order = swap_remove(len(rows), leaving)
            slots.keep(order)
            rows = [rows[i] for i in order]
        if rows:
            full += slots.hi + 1 > slots.capacity[1]  # this step must move the window back or grow the buffers
            step(slots, rows, g)
        grown += slots.capacity != before
        check(slots, rows)
    assert grown >= 3 and full >= 2  # the buffers grew, and steps found them full (the window moved back)


def test_a_row_longer_than_the_others_moves_their_window_right_within_the_buffers(config):
    g = torch.Generator().manual_seed(9)
    a, b, x = one_row(5, 1), one_row(8, 2), one_row(3, 3)
    slots = SlotCache(config, a)
    slots.add([a, b, x])
    rows = [columns_of(a), columns_of(b), columns_of(x)]
    slots.keep(swap_remove(3, {2}))  # a free slot: the next row needs no new buffers
    rows = rows[:2]
    step(slots, rows, g)
    capacity, hi = slots.capacity, slots.hi
    long = one_row(hi + 11, 4)
    slots.add([long])
    rows.append(columns_of(long))
    assert slots.capacity == capacity and slots.hi == hi + 11  # moved in place, not reallocated
    check(slots, rows)
    step(slots, rows, g)
    check(slots, rows)


def test_a_batch_emptied_starts_again_at_the_new_rows_length(config):
    slots = SlotCache(config, one_row(5, 1))
    slots.add([one_row(50, 1), one_row(5, 2)])
    slots.keep(swap_remove(2, {0, 1}))
    assert slots.n == 0
    again = one_row(3, 3)
    slots.add([again])
    assert (slots.lo, slots.hi) == (0, 3)
    check(slots, [columns_of(again)])


def test_swap_remove_fills_gaps_from_the_end_only():
    assert swap_remove(5, {1, 4}) == [0, 3, 2]
    assert swap_remove(4, {0, 3}) == [2, 1]
    assert swap_remove(3, {0, 1, 2}) == []
    for n in range(1, 9):
        for leaving in ({0}, {n - 1}, set(range(0, n, 2))):
            order = swap_remove(n, leaving)
            assert sorted(order) == sorted(set(range(n)) - leaving)
            assert all(src >= len(order) for j, src in enumerate(order) if src != j)  # sources never overwritten
