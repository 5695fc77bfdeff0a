"""One turn (prepare + generate) run on its own thread, its text pieces handed to the event loop.

A generation blocks twice: on the model lock, and on the token queue between tokens. Neither may hold a
worker of the shared thread pool, or enough waiting requests starve the streams that hold the lock (the
old deadlock at 41 concurrent streams). Admission control bounds how many relays exist, so one thread each
is bounded too. `close()` cancels: the model stops at the next token, the relay thread closes the
stream's iterator, which releases the model lock; `aclose()` waits for exactly that, so a slot is handed
on only once the runtime is free (nothing is left to the garbage collector).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

__all__ = ["Relay"]

log = logging.getLogger(__name__)


class Relay:
    """`prepare()` returns (turn, stream) and runs on the relay thread with everything after it.

    >>> relay = Relay(lambda: (turn, engine.stream(turn)))
    >>> turn = await relay.ready()          # raises what prepare raised
    >>> async for piece in relay.pieces(): ...
    >>> await relay.aclose()                # always: cancels if unfinished, waits until the lock is free
    """

    def __init__(self, prepare: Callable[[], tuple[Any, Any]]) -> None:
        self._prepare = prepare
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._done = asyncio.Event()
        self._closed = threading.Event()
        self.turn: Any = None
        self.stream: Any = None
        self.tokens_at_close: int | None = None  # completion tokens when close() was called (for tests)
        self._thread = threading.Thread(target=self._run, name="rolechat-relay", daemon=True)
        self._thread.start()

    # -- relay thread ---------------------------------------------------------------------------------

    def _put(self, kind: str, value: Any = None) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is gone (server shutting down): nobody is listening
            self._closed.set()

    def _run(self) -> None:
        try:
            try:
                self.turn, self.stream = self._prepare()
            except BaseException as exc:
                self._put("error", exc)
                return
            self._put("ready")
            pieces = iter(self.stream)
            try:
                if not self._closed.is_set():
                    for piece in pieces:
                        self._put("piece", piece)
                        if self._closed.is_set():
                            break
            except BaseException as exc:
                self._put("error", exc)
            finally:
                close = getattr(pieces, "close", None)
                if close is not None:
                    close()  # runs the stream's cleanup here, now: cancel, join the model, release the lock
            self._put("end")
        finally:
            try:
                self._loop.call_soon_threadsafe(self._done.set)
            except RuntimeError:
                pass

    # -- event loop -----------------------------------------------------------------------------------

    async def ready(self) -> Any:
        """Wait until the turn is prepared; re-raises the error of prepare()."""
        kind, value = await self._queue.get()
        if kind == "error":
            raise value
        return self.turn

    async def pieces(self) -> AsyncIterator[str]:
        """The reply's text pieces; re-raises a generation error."""
        while True:
            kind, value = await self._queue.get()
            if kind == "piece":
                yield value
            elif kind == "error":
                raise value
            else:
                return

    def close(self) -> None:
        """Cancel (idempotent): the model stops at its next token."""
        if self._closed.is_set():
            return
        self._closed.set()
        stream = self.stream
        if stream is not None:
            stats = getattr(stream, "stats", None)
            self.tokens_at_close = getattr(stats, "completion_tokens", None)
            cancel = getattr(stream, "cancel", None)
            if cancel is not None:
                cancel()

    async def aclose(self) -> None:
        """Cancel if unfinished and wait until the relay thread has let go of the model (shielded)."""
        if not self._done.is_set():
            self.close()
        with anyio.CancelScope(shield=True):
            await self._done.wait()
