"""Admission control: at most `max_concurrent` generations run, at most `max_queue` requests wait.

Waiting happens on the event loop (an anyio semaphore), never on a worker thread, so no number of
waiting requests can starve the threads that running generations or `/health` need. A request beyond
the queue, or one that waited longer than `queue_timeout`, gets a 429 with `Retry-After`.
"""

from __future__ import annotations

import math
import time

import anyio

from rolechat.api.errors import APIError

__all__ = ["Admission"]


class Admission:
    def __init__(self, max_concurrent: int, max_queue: int, timeout: float) -> None:
        self.max_concurrent, self.max_queue, self.timeout = max_concurrent, max_queue, timeout
        self.waiting = 0
        self.active = 0
        self._slots: anyio.Semaphore | None = None
        self._hold = 2.0  # running average of how long a slot is held (seconds), for Retry-After
        self.on_reject = lambda reason: None

    def retry_after(self) -> int:
        """Seconds until a retry is likely to be admitted: the queue ahead, drained at the observed pace."""
        ahead = self.waiting + self.active
        return max(1, min(60, math.ceil(self._hold * ahead / self.max_concurrent)))

    def _refuse(self, reason: str, message: str) -> APIError:
        self.on_reject(reason)
        return APIError(429, message, code="rate_limit_exceeded", headers={"Retry-After": str(self.retry_after())})

    async def acquire(self) -> float:
        """Wait for a slot (raises a 429 APIError when the queue is full or the wait too long); returns
        the moment it was granted, to hand back to release()."""
        if self._slots is None:
            self._slots = anyio.Semaphore(self.max_concurrent)
        if self.active + self.waiting >= self.max_concurrent + self.max_queue:
            raise self._refuse(
                "queue_full",
                f"The server is busy: {self.active} generation(s) running and {self.waiting} waiting "
                f"(server.max_queue = {self.max_queue}). Retry later.",
            )
        self.waiting += 1
        try:
            with anyio.fail_after(self.timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise self._refuse(
                "queue_timeout",
                f"The server is busy: no generation slot came free in {self.timeout:g} s "
                "(server.queue_timeout). Retry later.",
            ) from None
        finally:
            self.waiting -= 1
        self.active += 1
        return time.monotonic()

    def release(self, granted: float) -> None:
        assert self._slots is not None
        self.active -= 1
        self._hold = 0.8 * self._hold + 0.2 * (time.monotonic() - granted)
        self._slots.release()
