"""Batched in-process generation: one scheduler thread owns the model and decodes every running reply together.

Continuous batching at the decode-step level. A new request is prefilled alone (its own KV cache, exactly as a
solo generation; from a recent prompt's KV where it starts with the same tokens, llm/prefix_cache.py, and not at
all when it is that very prompt again) and its cache is copied into the running batch's slot buffers
(llm/kv_slots.py: every row's tokens end at the same column, shorter rows left-padded and masked, each step
written in place); each row keeps its own position ids, so padding never shifts a row's positions. Every step runs
ONE forward pass for all rows: rows of different personas share it (peft routes each row to its own LoRA adapter,
`adapter_names`, with "__base__" for the plain model), and when every row has the same persona the runtime's fast
adapter switch is used instead. A row leaves the batch when it emits a stop token, reaches its `max_new_tokens`,
or its stream is closed or cancelled; the last row moves into its slot.

Each row is sampled as `model.generate` would sample it alone: repetition penalty over prompt and reply,
then for sampling rows temperature, top-k, top-p and a draw from the row's own generator (seeded rows draw
from `torch.Generator().manual_seed(seed)`, the same numbers `torch.manual_seed(seed)` gives a solo
generation), greedy rows take the arg-max. So a greedy reply is its solo reply, whatever else runs beside it.

The model lock is held while any row runs; `exclusive()` (adapter reloads, diagnostics) stops admitting new
rows, waits for the running ones to finish and then has the model to itself.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rolechat.llm.config import GenerationParams
from rolechat.llm.generation import STREAM_END, GenerationStream
from rolechat.llm.kv_slots import SlotCache, swap_remove
from rolechat.llm.lora_batch import BASE_ADAPTER, per_row
from rolechat.llm.prefix_cache import PrefixCache

__all__ = ["BatchScheduler", "BatchedStream", "supports_batching"]

log = logging.getLogger(__name__)


def supports_batching(model: Any) -> bool:
    """Whether the model's KV cache can be left-padded and merged: a transformers model whose cache layers are
    all plain full-attention layers (no sliding window, no linear-attention state)."""
    try:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        config = getattr(model, "config", None)
        if config is None or not hasattr(model, "forward"):
            return False
        cache = DynamicCache(config=config)
        return bool(cache.layers) and all(type(layer) is DynamicLayer for layer in cache.layers)
    except Exception:  # an unusual model (remote code, no config): generate one at a time
        return False


class _Row:
    """One reply in the batch: what to generate and where its tokens go."""

    def __init__(
        self,
        ids: Sequence[int],
        params: GenerationParams,
        persona: str | None,
        adapter: str | None,
        stop_ids: Sequence[int],
        out: queue.Queue,
        errors: list,
        cancel: threading.Event,
    ) -> None:
        self.ids, self.params, self.persona, self.adapter = list(ids), params, persona, adapter
        self.stop_ids = set(stop_ids)
        self.out, self.errors, self.cancel = out, errors, cancel
        self.generated = 0
        self.done = False
        self.finished = threading.Event()  # set once the row is out of the batch (and the lock released if last)
        self.generator: Any = None
        self.wake: Callable[[], None] = lambda: None

    def emit(self, token: int) -> None:
        self.generated += 1
        self.out.put([token])
        if token in self.stop_ids or self.generated >= self.params.max_new_tokens:
            self.done = True

    def join(self, timeout: float | None = None) -> None:
        """Wait until the row is out of the batch (the stream's generator calls this when it ends or is closed)."""
        self.wake()
        self.finished.wait(timeout)


class _Batch:
    """The running rows, their KV cache in slot buffers (llm/kv_slots.py) and their per-row decoding state."""

    def __init__(self) -> None:
        self.rows: list[_Row] = []
        self.slots: SlotCache | None = None  # made when the first row joins, dropped when the last one leaves
        self.pos: Any = None  # [B] the next position of each row
        self.last: Any = None  # [B] the last token of each row (the next step's input)
        self.seen: Any = None  # [B, V] tokens in each row's prompt and reply (repetition penalty)

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, joining: list[tuple[_Row, Any, int, Any]], config: Any) -> None:
        """Add prefilled rows (row, its own cache, its first token, its seen tokens) to the batch."""
        import torch

        if not joining:
            return
        device = joining[0][3].device
        if self.slots is None:
            self.slots = SlotCache(config, joining[0][1])
        self.slots.add([c for _, c, _, _ in joining])
        pos = [torch.tensor([len(r.ids)], device=device) for r, _, _, _ in joining]
        last = [torch.tensor([t], device=device) for _, _, t, _ in joining]
        seen = [s for _, _, _, s in joining]
        if self.rows:
            pos, last, seen = [self.pos, *pos], [self.last, *last], [self.seen, *seen]
        self.pos, self.last, self.seen = torch.cat(pos), torch.cat(last), torch.cat(seen)
        self.rows = [*self.rows, *(r for r, _, _, _ in joining)]

    def drop(self, leaving: set[int]) -> None:
        """Take these rows out: the last rows move into the gaps (`swap_remove`)."""
        import torch

        order = swap_remove(len(self.rows), leaving)
        self.rows = [self.rows[i] for i in order]
        if not order:  # the buffers go with the last row (memory a long burst took is not held while idle)
            self.slots = None
            return
        self.slots.keep(order)
        index = torch.tensor(order, device=self.pos.device)
        self.pos, self.last, self.seen = (t.index_select(0, index) for t in (self.pos, self.last, self.seen))


def _penalize(scores: Any, seen: Any, penalty: Any) -> Any:
    """transformers' repetition penalty, per row: a seen token's logit is divided by the penalty (multiplied when
    negative). A penalty of 1 leaves the row exactly as it was."""
    import torch

    penalized = torch.where(scores < 0, scores * penalty, scores / penalty)
    return torch.where(seen, penalized, scores)


def _choose(scores: Any, rows: Sequence[_Row]) -> list[int]:
    """The next token of each row from its (penalized) logits [B, V]: greedy rows the arg-max, sampling rows a
    draw after temperature, top-k and top-p, computed for all sampling rows at once exactly as transformers'
    warpers compute them for one row (a warper a row does not use leaves it unchanged)."""
    import torch

    out = [0] * len(rows)
    greedy = [i for i, r in enumerate(rows) if r.params.greedy]
    if greedy:
        picked = (scores if len(greedy) == len(rows) else scores[greedy]).argmax(-1).tolist()
        for i, token in zip(greedy, picked, strict=True):
            out[i] = token
    sampling = [i for i, r in enumerate(rows) if not r.params.greedy]
    if not sampling:
        return out
    params = [rows[i].params for i in sampling]
    device, width = scores.device, scores.shape[-1]
    s = scores[sampling] / torch.tensor([[p.temperature] for p in params], device=device, dtype=scores.dtype)
    if any(p.top_k for p in params):
        k = torch.tensor([[min(p.top_k, width) if p.top_k else width] for p in params], device=device)
        kth = torch.sort(s, descending=True).values.gather(1, k - 1)  # the k-th largest, as topk()[..., -1]
        s = s.masked_fill(s < kth, -float("inf"))
    if any(p.top_p < 1.0 for p in params):
        top_p = torch.tensor([[p.top_p] for p in params], device=device, dtype=s.dtype)
        sorted_logits, sorted_indices = torch.sort(s, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = (cumulative <= (1 - top_p)) & (top_p < 1.0)
        remove[..., -1:] = False
        s = s.masked_fill(remove.scatter(1, sorted_indices, remove), -float("inf"))
    probs = torch.nn.functional.softmax(s, dim=-1)
    free = [j for j, i in enumerate(sampling) if rows[i].generator is None]
    if free:
        drawn = torch.multinomial(probs[free], num_samples=1).squeeze(1).tolist()
        for j, token in zip(free, drawn, strict=True):
            out[sampling[j]] = token
    for j, i in enumerate(sampling):
        if rows[i].generator is not None:  # a seeded row draws from its own generator, as a solo reply would
            out[i] = int(torch.multinomial(probs[j : j + 1], num_samples=1, generator=rows[i].generator))
    return out


class BatchScheduler:
    """Runs every generation of one runtime on a single thread, rows of up to `max_batch` replies decoded together.

    `model()` returns the current model (the runtime swaps in a PeftModel when the first adapter loads);
    `persona_context(persona)` selects one persona for a forward pass whose rows all share it; `can_mix()`
    says whether rows of different adapters may share a forward pass (peft cannot mix adapters that replace
    whole modules, `modules_to_save`: then a batch holds one adapter's rows, and the others wait their turn);
    `lora_layers()` gives the model's LoRA layers, with which llm/lora_batch.py applies each row's own adapter in
    a mixed forward pass (None: peft's `adapter_names` path). `prefixes` keeps prefilled prompts' KV for reuse
    (None: none kept, every prompt is prefilled in full).
    """

    def __init__(
        self,
        model: Callable[[], Any],
        lock: threading.Lock,
        persona_context: Callable[[str | None], contextlib.AbstractContextManager],
        max_batch: int,
        can_mix: Callable[[], bool] = lambda: True,
        lora_layers: Callable[[], list | None] = lambda: None,
        prefixes: PrefixCache | None = None,
    ) -> None:
        self._model, self._lock, self._persona_context, self._can_mix = model, lock, persona_context, can_mix
        self._lora_layers = lora_layers
        self.prefixes = prefixes if prefixes is not None else PrefixCache(0)  # 0 bytes: every prompt in full
        self.max_batch = max(1, int(max_batch))
        self._pending: deque[_Row] = deque()
        self._cv = threading.Condition()
        self._paused = 0
        self._thread: threading.Thread | None = None
        self._holding = False
        self._leaving: list[_Row] = []  # rows out of the batch whose streams have not been told yet
        self.idle_exit = 10.0  # seconds without work after which the thread ends (the next submit starts one)
        self.steps = 0  # decode steps run (for tests and diagnostics)
        self.widest = 0  # the most rows one decode step has carried

    # -- the callers' side -----------------------------------------------------------------------------

    def submit(self, row: _Row) -> _Row:
        row.wake = self.wake
        with self._cv:
            self._pending.append(row)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="rolechat-batch", daemon=True)
                self._thread.start()
            self._cv.notify_all()
        return row

    def wake(self) -> None:
        """A row was cancelled: let the loop notice even if it is waiting."""
        with self._cv:
            self._cv.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """The model to oneself: no new row starts, the running ones finish, then the model lock is held."""
        with self._cv:
            self._paused += 1
            self._cv.notify_all()
        try:
            with self._lock:
                yield
        finally:
            with self._cv:
                self._paused -= 1
                self._cv.notify_all()

    # -- the scheduler thread ----------------------------------------------------------------------------

    def _loop(self) -> None:
        batch = _Batch()
        while True:
            with self._cv:
                while True:
                    for row in [r for r in self._pending if r.cancel.is_set()]:  # closed before it started
                        self._pending.remove(row)
                        self._leaving.append(row)
                    if self._leaving or batch.rows or (self._pending and not self._paused):
                        break
                    if not self._cv.wait(self.idle_exit) and not self._pending:
                        # idle: end the thread, so a runtime nobody uses any more can be freed; submit() starts
                        # a new one
                        self._thread = None
                        return
                admit: list[_Row] = []
                mix = self._can_mix()
                while self._pending and not self._paused and len(batch) + len(admit) < self.max_batch:
                    if not mix:  # one adapter per batch; the first waiting row of another waits for the batch to drain
                        running = (batch.rows or admit or self._pending)[0].adapter
                        if self._pending[0].adapter != running:
                            break
                    admit.append(self._pending.popleft())
            if admit and not self._holding:
                self._lock.acquire()
                self._holding = True
            try:
                self._step(batch, admit)
            except Exception as exc:  # every row of the failed step gets the error
                log.exception("batched generation failed")
                told = {id(r) for r in self._leaving}
                for row in [*batch.rows, *admit]:
                    if id(row) not in told:
                        told.add(id(row))
                        row.errors.append(exc)
                        self._leaving.append(row)
                batch.drop(set(range(len(batch))))
            self._settle(batch)

    def _step(self, batch: _Batch, admit: list[_Row]) -> None:
        import torch

        joining: list[tuple[_Row, Any, int, Any]] = []
        with torch.inference_mode():
            for row in admit:
                if row.cancel.is_set():
                    self._leaving.append(row)
                    continue
                try:
                    cache, token, seen = self._prefill(row)
                except Exception as exc:  # a bad request (e.g. an adapter removed meanwhile) fails alone
                    row.errors.append(exc)
                    self._leaving.append(row)
                    continue
                row.emit(token)
                if row.done or row.cancel.is_set():
                    self._leaving.append(row)
                else:
                    joining.append((row, cache, token, seen))
            batch.add(joining, self._model().config)
            self._retire(batch, [r for r in batch.rows if r.cancel.is_set()])
            if batch.rows:
                self._decode(batch)
                self._retire(batch, [r for r in batch.rows if r.done or r.cancel.is_set()])

    def _forward(self, rows: Sequence[_Row], **inputs: Any) -> Any:
        model = self._model()
        adapters = {r.adapter for r in rows}
        if len(adapters) == 1:
            with self._persona_context(rows[0].persona):
                return model(**inputs)
        names = [r.adapter or BASE_ADAPTER for r in rows]
        each_row = per_row(self._lora_layers(), names)  # every row's own LoRA in two plain matmuls per layer
        if each_row is not None:
            with each_row:
                return model(**inputs)
        return model(**inputs, adapter_names=names)

    def _prefill(self, row: _Row) -> tuple[Any, int, Any]:
        import torch

        model = self._model()
        if row.adapter and row.adapter not in (getattr(model, "peft_config", None) or {}):
            raise RuntimeError(f"persona {row.persona!r} was unloaded before its reply started")
        device = next(model.parameters()).device
        if row.params.seed is not None and not row.params.greedy:
            row.generator = torch.Generator(device=device).manual_seed(row.params.seed)
        ids = torch.tensor([row.ids], device=device)
        cache, scores = self._prompt_cache(model, row, ids)
        seen = torch.zeros_like(scores, dtype=torch.bool)
        seen[0, ids[0]] = True
        penalty = torch.tensor([[row.params.repetition_penalty]], device=device, dtype=scores.dtype)
        token = _choose(_penalize(scores, seen, penalty), [row])[0]
        seen[0, token] = True
        return cache, token, seen

    def _prompt_cache(self, model: Any, row: _Row, ids: Any) -> tuple[Any, Any]:
        """The row's prompt KV cache and the float32 logits [1, V] of its last position: prefilled, from where it
        parts from a stored prompt, or (the same prompt again) taken as stored."""
        import torch
        from transformers import DynamicCache

        key = tuple(row.ids)
        hit = self.prefixes.lookup(row.adapter, key)
        cache = DynamicCache(config=model.config)
        start = 0
        if hit is not None:
            for layer, k, v in zip(cache.layers, hit.keys, hit.values, strict=True):
                layer.lazy_initialization(k, v)
                layer.keys, layer.values = k, v
            if hit.logits is not None:
                return cache, hit.logits
            start = hit.length
        out = self._forward(
            [row],
            input_ids=ids[:, start:],
            attention_mask=torch.ones_like(ids),
            position_ids=torch.arange(start, ids.shape[1], device=ids.device)[None],
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        scores = out.logits[:, -1, :].to(dtype=torch.float32)
        self.prefixes.store(row.adapter, key, out.past_key_values, scores)
        return out.past_key_values, scores

    def _decode(self, batch: _Batch) -> None:
        import torch

        rows = batch.rows
        self.steps += 1
        self.widest = max(self.widest, len(rows))
        device = batch.last.device
        out = self._forward(
            rows,
            input_ids=batch.last[:, None],
            attention_mask=batch.slots.step_mask(),
            position_ids=batch.pos[:, None],
            past_key_values=batch.slots.cache,
            use_cache=True,
        )
        batch.slots.advance()
        batch.pos = batch.pos + 1
        scores = out.logits[:, -1, :].to(dtype=torch.float32)
        penalty = torch.tensor([[r.params.repetition_penalty] for r in rows], device=device, dtype=scores.dtype)
        tokens = _choose(_penalize(scores, batch.seen, penalty), rows)
        batch.last = torch.tensor(tokens, device=device)
        batch.seen[torch.arange(len(rows), device=device), batch.last] = True
        for row, token in zip(rows, tokens, strict=True):
            row.emit(token)

    def _retire(self, batch: _Batch, leaving: list[_Row]) -> None:
        """Drop rows from the batch (their streams are told in `_settle`)."""
        if leaving:
            gone = {id(r) for r in leaving}
            batch.drop({i for i, r in enumerate(batch.rows) if id(r) in gone})
            self._leaving.extend(leaving)

    def _settle(self, batch: _Batch) -> None:
        """After a step: release the model when nothing is left to run, then tell the streams that left."""
        if not batch.rows and self._holding:
            with self._cv:
                idle = not self._pending or self._paused
            if idle:
                self._holding = False
                self._lock.release()
        leaving, self._leaving = self._leaving, []
        for row in leaving:
            row.finished.set()
            row.out.put(STREAM_END)


class BatchedStream(GenerationStream):
    """A GenerationStream whose tokens come from the runtime's batch scheduler instead of its own `generate`.

    Same surface: iterate for text pieces, `.text`, `.stats`, `cancel()`, `close()` (returns once the row has
    left the batch), stop strings cut off, whole characters only.
    """

    def __init__(
        self,
        scheduler: BatchScheduler,
        tokenizer: Any,
        input_ids: Sequence[int],
        params: GenerationParams,
        *,
        persona: str | None,
        adapter: str | None,
        stop_ids: Sequence[int] = (),
        stop_strings: Sequence[str] = (),
    ) -> None:
        super().__init__(None, tokenizer, input_ids, params, stop_ids=stop_ids, stop_strings=stop_strings)
        self.scheduler, self.persona, self.adapter = scheduler, persona, adapter

    def cancel(self) -> None:
        super().cancel()
        self.scheduler.wake()

    def _start(self, streamer: Any, errors: list) -> _Row:
        row = _Row(
            self.input_ids,
            self.params,
            self.persona,
            self.adapter,
            self.stop_ids,
            streamer.q,
            errors,
            self._cancel,
        )
        return self.scheduler.submit(row)
