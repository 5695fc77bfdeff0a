"""Every error the API returns, in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

OpenAI clients (the `openai` package, LangChain's ChatOpenAI) read `error.message` and show it; FastAPI's own
`{"detail": ...}` would reach the user as a bare status code. Validation errors, HTTP errors and anything
unexpected all leave through here; an unexpected error is logged with its traceback and answered with a 500
that carries none. No message names a folder of the server's own ($ROLECHAT_HOME stands for it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

__all__ = [
    "APIError",
    "error_body",
    "error_response",
    "install_error_handlers",
    "internal_error",
    "public",
    "validation_error",
]

log = logging.getLogger(__name__)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class APIError(Exception):
    """An error with its HTTP status and OpenAI error fields; raise it anywhere a request is handled."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def public(message: str) -> str:
    """A message with the server's own folders out of it: $ROLECHAT_HOME instead of where it is."""
    from rolechat import settings

    home = str(settings.home())
    return message.replace(home, "$ROLECHAT_HOME") if home in message else message


def error_response(error: APIError) -> Response:
    error.message = public(error.message)
    # ensure_ascii: a message may quote client input, which can hold lone surrogates that UTF-8 cannot encode
    return Response(
        json.dumps(error.body(), ensure_ascii=True),
        status_code=error.status,
        headers=error.headers,
        media_type="application/json",
    )


def _param(loc: Sequence[Any]) -> str | None:
    # drop the location's framing and pydantic's union-member tags ("str", "function-after[...]")
    skip = {"body", "query", "path", "header", "str", "int", "float", "bool", "dict", "list", "none"}
    parts = [str(p) for p in loc if str(p) not in skip and "[" not in str(p)]
    return ".".join(parts) or None


def validation_error(errors: Sequence[Mapping[str, Any]]) -> APIError:
    """The first validation error as a 400 naming its field (the input itself is never echoed)."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    param = _param(first.get("loc", ()))
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        return APIError(400, f"Unrecognized request argument supplied: {param}", param=param, code="unknown_parameter")
    if kind == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        return APIError(400, f"The request body is not valid JSON ({detail}).", code="invalid_json")
    if kind == "missing":
        return APIError(400, f"Missing required parameter: {param}.", param=param, code="missing_required_parameter")
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})" if len(errors) > 1 else ""
    where = f"Invalid value for {param}: " if param else "Invalid request: "
    return APIError(400, f"{where}{message}{more}", param=param, code="invalid_value")


def internal_error() -> APIError:
    """What the client sees of an unexpected exception (the traceback goes to the log only)."""
    return APIError(500, "The server had an error while processing your request.", type="server_error")


def install_error_handlers(app: FastAPI) -> None:
    """Route APIError, validation errors and HTTP errors into the OpenAI shape. Unexpected exceptions are
    caught by the gate middleware (rolechat.api.gate), so the connection survives them."""

    async def on_api_error(request: Request, exc: APIError) -> Response:
        return error_response(exc)

    async def on_validation(request: Request, exc: RequestValidationError) -> Response:
        return error_response(validation_error(exc.errors()))

    async def on_http(request: Request, exc: HTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail, ensure_ascii=True)
        if exc.status_code == 404 and message == "Not Found":
            message = f"No route {request.method} {request.url.path}."
        code = "request_too_large" if exc.status_code == 413 else None
        if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):  # FastAPI: a body json.loads refused
            message, code = "The request body is not valid JSON (it must be UTF-8 text).", "invalid_json"
        return error_response(APIError(exc.status_code, message, code=code, headers=exc.headers))

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
