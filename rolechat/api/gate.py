"""The gate every HTTP request passes first (a plain ASGI middleware, so it sees the request before any
body is read and the response until its last byte):

1. the API key, compared in constant time, from the headers alone: an unauthenticated client cannot make
   the server read (or parse) a single byte of its body;
2. the body size: refused from `Content-Length` at once, and counted while it is read (chunked bodies),
   before any JSON or multipart parsing;
3. metrics: one count and one latency per request, by route template;
4. the last resort: an unexpected exception becomes a 500 in OpenAI's shape (traceback to the log only),
   and the connection stays usable.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from starlette.exceptions import HTTPException

from rolechat.api.errors import APIError, error_response, internal_error
from rolechat.api.metrics import Metrics

__all__ = ["Gate", "OPEN_PATHS"]

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health"})  # answered without the key (load balancers, liveness probes)


class BodyTooLarge(HTTPException):
    """Raised from `receive`; FastAPI re-raises HTTPExceptions from body reading as they are."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit} bytes (server.max_body_bytes).")


class Gate:
    def __init__(self, app: Any, *, key: str, body_limit: int, upload_limit: int, metrics: Metrics) -> None:
        self.app = app
        self.key = key.encode("utf-8")
        self.body_limit, self.upload_limit = body_limit, upload_limit
        self.metrics = metrics

    def _limit(self, method: str, path: str) -> int:
        if method == "POST" and path.startswith("/v1/knowledge_bases/") and path.endswith("/documents"):
            return self.upload_limit
        return self.body_limit

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        given = headers.get(b"authorization", b"")
        scheme, _, token = given.partition(b" ")
        # compare_digest takes as long whatever prefix matches; the scheme check leaks nothing secret
        return hmac.compare_digest(token.strip(), self.key) and scheme.lower() == b"bearer"

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        method, path = scope["method"], scope["path"]
        state = {"status": 0}

        async def tracked_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            await send(message)

        try:
            headers = dict(scope["headers"])
            if self.key and path not in OPEN_PATHS and not self._authorized(headers):
                error = APIError(
                    401,
                    "Missing or wrong API key: send `Authorization: Bearer <key>`.",
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await error_response(error)(scope, receive, tracked_send)
                return
            limit = self._limit(method, path)
            length = headers.get(b"content-length")
            if length is not None:
                try:
                    size = int(length)
                except ValueError:
                    await error_response(APIError(400, "Invalid Content-Length header."))(scope, receive, tracked_send)
                    return
                if size > limit:
                    too_large = BodyTooLarge(limit)
                    error = APIError(413, str(too_large.detail), code="request_too_large")
                    await error_response(error)(scope, receive, tracked_send)
                    return
            await self.app(scope, _limited(receive, limit), tracked_send)
        except Exception:
            log.exception("unexpected error in %s %s", method, path)
            if not state["status"]:
                await error_response(internal_error())(scope, receive, tracked_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(method, template, state["status"] or 500, time.perf_counter() - start)


def _limited(receive: Any, limit: int) -> Any:
    seen = 0

    async def receive_limited() -> dict:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return receive_limited
