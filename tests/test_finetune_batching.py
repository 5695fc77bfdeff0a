"""The length-grouped sampler: every example once, little padding, batches in random order."""

from __future__ import annotations

import random

from rolechat.finetune.batching import LengthGroupedSampler, padding_fraction


def _lengths(n: int = 450, seed: int = 3) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(20, 500) for _ in range(n)]


def test_each_example_once_in_batches_of_similar_length():
    lengths = _lengths()
    sampler = LengthGroupedSampler(lengths, batch_size=8, seed=1)
    order = list(sampler)
    assert sorted(order) == list(range(len(lengths)))
    batches = [order[i : i + 8] for i in range(0, len(order), 8)]
    assert batches == sampler.batches()  # the Trainer's cut every 8 indices gives the sampler's batches
    shuffled = random.Random(0).sample(range(len(lengths)), len(lengths))
    random_padding = padding_fraction(lengths, [shuffled[i : i + 8] for i in range(0, len(shuffled), 8)])
    assert padding_fraction(lengths, batches) < 0.05 < random_padding


def test_no_length_curriculum_and_longest_batch_first():
    lengths = _lengths()  # 450 examples: a single mega-batch (8 x 64 = 512) holds the whole epoch
    batches = LengthGroupedSampler(lengths, batch_size=8, seed=1).batches()
    assert max(lengths) in [lengths[i] for i in batches[0]]
    assert len(batches[-1]) == len(lengths) % 8  # the short batch stays last
    widths = [max(lengths[i] for i in b) for b in batches[1:-1]]
    half = len(widths) // 2
    first, second = sum(widths[:half]) / half, sum(widths[half:]) / (len(widths) - half)
    assert abs(first - second) < 0.25 * (first + second) / 2  # sorted long-to-short would differ ~2x
    assert widths != sorted(widths, reverse=True)


def test_order_depends_on_seed_and_epoch_only():
    lengths = _lengths()
    a, b = LengthGroupedSampler(lengths, 8, seed=7), LengthGroupedSampler(lengths, 8, seed=7)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b) and sorted(a) == sorted(b)
    assert list(LengthGroupedSampler(lengths, 8, seed=8)) != list(a)
