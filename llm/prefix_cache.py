"""Prompt KV caches kept for reuse: a new prompt that starts with the tokens of a recent one is prefilled from
where they part (vLLM's automatic prefix caching, at token rather than block granularity).

What repeats in role-play serving: a persona's system prompt, card and example dialogue open every chat with
it; turn n+1 of a chat starts with the whole prompt of turn n; a regenerated reply ("重新生成") or a retried
request sends the very same prompt again. The batch scheduler (llm/batching.py) asks `lookup` before it
prefills a row and `store`s every prompt it prefilled, keyed by the row's adapter (the KV of a prompt depends
on the LoRA that computed it; None is the plain base model).

- The same prompt again (same adapter): no forward pass at all; the stored KV and the logits of its last token
  are used as they are, so the reply is exactly the first one's (for sampling rows: the same distribution).
- A prompt that shares its first `min_tokens` or more tokens with a stored one: the shared part's KV is reused
  and only the rest is prefilled on top of it. Those tokens' keys and values are computed with the same
  weights from the same positions, but in a forward pass of another length, so a greedy reply may differ from
  a full prefill's by float rounding, as with vLLM's prefix caching.
- Entries are evicted least recently used first once their tensors pass `max_bytes`; `forget(adapter)` drops
  one adapter's entries (the runtime calls it when that adapter is loaded again or unloaded).

A stored entry's tensors are never written to: a reused cache is a view that the model extends by
concatenation (transformers' DynamicLayer.update), which makes new tensors.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

__all__ = ["PrefixCache", "PrefixHit"]


@dataclass
class _Entry:
    ids: tuple[int, ...]
    keys: list[Any]  # per layer [1, H, T, D]
    values: list[Any]
    logits: Any  # [1, V] float32: the prompt's last position, before any penalty
    nbytes: int


@dataclass
class PrefixHit:
    """What `lookup` found: the KV of the first `length` tokens of the prompt, per layer (views of a stored entry),
    and, when the whole prompt was stored, its last logits (nothing left to prefill)."""

    length: int
    keys: list[Any]
    values: list[Any]
    logits: Any = None


class PrefixCache:
    """Recently prefilled prompts' KV caches, per adapter, least recently used evicted past `max_bytes`."""

    def __init__(self, max_bytes: int, min_tokens: int = 16) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self.min_tokens = max(1, int(min_tokens))
        self._entries: OrderedDict[tuple[str | None, tuple[int, ...]], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.hits = 0  # prompts served whole from the cache
        self.partial = 0  # prompts prefilled from a shared prefix
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, adapter: str | None, ids: tuple[int, ...]) -> PrefixHit | None:
        """The longest reusable start of `ids` among this adapter's entries, or None (prefill it all)."""
        if not self.max_bytes:
            return None
        with self._lock:
            exact = self._entries.get((adapter, ids))
            if exact is not None:
                self._entries.move_to_end((adapter, ids))
                self.hits += 1
                return PrefixHit(len(ids), exact.keys, exact.values, exact.logits)
            best, length = None, 0
            for (owner, _), entry in self._entries.items():
                if owner == adapter:
                    shared = _shared(entry.ids, ids)
                    if shared > length:
                        best, length = entry, shared
            length = min(length, len(ids) - 1)  # the last token is prefilled: its logits start the reply
            if best is None or length < self.min_tokens:
                self.misses += 1
                return None
            self._entries.move_to_end((adapter, best.ids))
            self.partial += 1
            return PrefixHit(length, [k[:, :, :length] for k in best.keys], [v[:, :, :length] for v in best.values])

    def store(self, adapter: str | None, ids: tuple[int, ...], cache: Any, logits: Any) -> None:
        """Keep the KV of a freshly prefilled prompt (`cache`: its transformers cache, `logits`: [1, V] of its last
        position)."""
        if not self.max_bytes:
            return
        keys = [layer.keys for layer in cache.layers]
        values = [layer.values for layer in cache.layers]
        logits = logits.clone()  # the caller's tensor may be a view of the whole forward's output
        nbytes = sum(t.numel() * t.element_size() for t in (*keys, *values, logits))
        if nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop((adapter, ids), None)
            if old is not None:
                self.nbytes -= old.nbytes
            self._entries[(adapter, ids)] = _Entry(ids, keys, values, logits, nbytes)
            self.nbytes += nbytes
            while self.nbytes > self.max_bytes:
                _, gone = self._entries.popitem(last=False)
                self.nbytes -= gone.nbytes

    def forget(self, adapter: str | None) -> None:
        """Drop one adapter's entries (None: the base model's)."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == adapter]:
                self.nbytes -= self._entries.pop(key).nbytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0


def _shared(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """How many leading tokens two prompts share."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]: bisect on slice equality (C-speed compares)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo
