"""The one generation primitive: stream text pieces of a reply whose token ids come from a producer: here
`model.generate` in a worker thread; in the runtime, the batch scheduler (`llm.batching.BatchedStream`, which
only replaces `_start`), so both share everything below.

Everything else consumes it: the blocking chat joins the pieces, the LangChain model wraps them in chunks,
Streamlit writes them as they come. Text is decoded from the running token sequence and only whole
characters are shown: an incomplete multi-byte (CJK) character at the end is held back until its last byte
comes, and byte tokens that never form a character (U+FFFD after decoding) are dropped, so a reply never
shows `�`. Stop strings are cut off before they reach the caller. Abandoning the
iterator (a stop button, a closed connection) cancels the generation.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any

from rolechat.llm.config import GenerationParams

__all__ = ["STREAM_END", "GenerationStats", "GenerationStream", "TextStream"]

log = logging.getLogger(__name__)

# A producer (generate's streamer here, the batch scheduler in llm.batching) puts lists of new token ids on the
# stream's queue, then this: the reply is complete (or was cancelled).
STREAM_END = object()


@dataclass
class GenerationStats:
    """Filled in while streaming; complete once the stream is exhausted."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    time_to_first_token: float | None = None
    elapsed: float = 0.0
    finish_reason: str = ""  # "stop", "length" or "cancelled"

    @property
    def tokens_per_second(self) -> float:
        gen_time = self.elapsed - (self.time_to_first_token or 0.0)
        return (self.completion_tokens - 1) / gen_time if self.completion_tokens > 1 and gen_time > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Every figure, tokens per second included (the app keeps this with each reply)."""
        return {**asdict(self), "tokens_per_second": self.tokens_per_second}


class _TokenQueue:
    """A transformers streamer that hands new token ids to the consuming thread."""

    def __init__(self) -> None:
        self.q: queue.Queue = queue.Queue()
        self._skip_prompt = True

    def put(self, value: Any) -> None:
        if self._skip_prompt:  # generate() first passes the prompt itself
            self._skip_prompt = False
            return
        self.q.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self.q.put(STREAM_END)


class TextStream:
    """A reply as text pieces, whoever produces them: iterate for the pieces; `.text` and `.stats` describe the
    reply once iteration ends; `join()` is the blocking reply. Subclasses produce the pieces in `_run`
    (in-process generation here, a server's event stream in `llm.remote`)."""

    def __init__(self, prompt_tokens: int) -> None:
        self.text = ""
        self.stats = GenerationStats(prompt_tokens=prompt_tokens)
        self._cancel = threading.Event()
        self._iter: Iterator[str] | None = None

    def __iter__(self) -> Iterator[str]:
        if self._iter is None:
            self._iter = self._run()
        return self._iter

    def cancel(self) -> None:
        """Stop generating as soon as possible (the next token boundary)."""
        self._cancel.set()

    def close(self) -> None:
        """Cancel and finish now: the producer stops at its next token and anything it holds (a lock, a
        connection) is released before this returns (call it from the consuming thread, not while another
        thread is iterating)."""
        self._cancel.set()
        if self._iter is not None:
            self._iter.close()
        if not self.stats.finish_reason:
            self.stats.finish_reason = "cancelled"

    def join(self) -> str:
        """Consume everything and return the whole reply."""
        for _ in self:
            pass
        return self.text

    def _run(self) -> Iterator[str]:
        raise NotImplementedError


class GenerationStream(TextStream):
    """Iterate for text pieces; `.text` and `.stats` describe the reply once iteration ends.

    The `lock` (if given) is held from the first piece until generation has fully stopped, and
    `context()` is entered inside the worker thread around `generate` (e.g. to select a persona adapter).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        input_ids: Sequence[int],
        params: GenerationParams,
        *,
        stop_ids: Sequence[int] = (),
        stop_strings: Sequence[str] = (),
        lock: threading.Lock | None = None,
        context: Callable[[], AbstractContextManager] = nullcontext,
    ) -> None:
        super().__init__(prompt_tokens=len(input_ids))
        self.model, self.tokenizer, self.params = model, tokenizer, params
        self.input_ids = list(input_ids)
        self.stop_ids = list(stop_ids)
        self.stop_strings = [s for s in (*stop_strings, *params.stop) if s]
        self.lock, self.context = lock, context

    def _generate_kwargs(self, streamer: _TokenQueue) -> dict[str, Any]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        cancel = self._cancel

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

        device = next(self.model.parameters()).device
        ids = torch.tensor([self.input_ids], device=device)
        p = self.params
        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "max_new_tokens": p.max_new_tokens,
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([_Cancelled()]),
            "eos_token_id": self.stop_ids or None,
            "pad_token_id": self.tokenizer.pad_token_id,
            "repetition_penalty": p.repetition_penalty,
        }
        if p.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=p.temperature, top_p=p.top_p, top_k=p.top_k or None)
        return kwargs

    def _start(self, streamer: _TokenQueue, errors: list) -> Any:
        """Start producing token ids into `streamer.q` (ending with `STREAM_END`); returns a handle whose `join()`
        returns once the model has stopped working on this reply."""
        worker = threading.Thread(target=self._worker, args=(streamer, errors), daemon=True)
        worker.start()
        return worker

    def _worker(self, streamer: _TokenQueue, errors: list) -> None:
        import torch

        try:
            if self.params.seed is not None:
                torch.manual_seed(self.params.seed)
            with self.context(), torch.inference_mode():
                self.model.generate(**self._generate_kwargs(streamer))
        except BaseException as exc:  # surfaced in the consuming thread
            errors.append(exc)
        finally:
            streamer.end()

    def _decode(self, ids: Sequence[int]) -> str:
        """The reply so far in whole characters: U+FFFD (an incomplete or invalid byte sequence) is left out.

        A tail that is still incomplete reappears as its character once the missing bytes arrive; one that never
        completes (the stream ends, or another token follows) is never shown.
        """
        return self.tokenizer.decode(ids, skip_special_tokens=True).replace("\ufffd", "")

    def _visible(self, text: str) -> tuple[str, bool]:
        """The part of `text` safe to show now, and whether a stop string was reached."""
        for s in self.stop_strings:
            at = text.find(s)
            if at >= 0:
                return text[:at], True
        hold = 0
        for s in self.stop_strings:  # keep back a tail that could still grow into a stop string
            for n in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:n]):
                    hold = max(hold, n)
                    break
        return (text[: len(text) - hold] if hold else text), False

    def _run(self) -> Iterator[str]:
        lock = self.lock or nullcontext()
        with lock:
            start = time.perf_counter()
            streamer, errors = _TokenQueue(), []
            worker = self._start(streamer, errors)
            ids: list[int] = []
            stopped = done = False
            try:
                while True:
                    item = streamer.q.get()
                    if item is STREAM_END:
                        done = True
                        break
                    ids.extend(item)
                    self.stats.completion_tokens = len(ids)
                    if self.stats.time_to_first_token is None:
                        self.stats.time_to_first_token = time.perf_counter() - start
                    if stopped:
                        continue
                    visible, stopped = self._visible(self._decode(ids))
                    if stopped:
                        self._cancel.set()
                    if len(visible) > len(self.text) and visible.startswith(self.text):
                        piece, self.text = visible[len(self.text) :], visible
                        yield piece
            finally:
                if not done and not stopped:  # the caller walked away: stop the worker
                    self._cancel.set()
                    self.stats.finish_reason = "cancelled"
                worker.join()
                self.stats.elapsed = time.perf_counter() - start
            if errors:
                raise errors[0]
            if not stopped:  # flush what was held back for a stop string that never came
                final = self._decode(ids)
                if len(final) > len(self.text) and final.startswith(self.text):
                    piece, self.text = final[len(self.text) :], final
                    yield piece
            if stopped or (ids and ids[-1] in self.stop_ids):
                self.stats.finish_reason = "stop"
            elif self._cancel.is_set():
                self.stats.finish_reason = "cancelled"
            else:
                self.stats.finish_reason = "length" if len(ids) >= self.params.max_new_tokens else "stop"
