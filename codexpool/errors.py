"""One error shape for every route: OpenAI's `{"error": {message, type, param, code}}`.

Each error also says who produced it (`source`: the gateway itself or the upstream Codex/ChatGPT
side), in the body and in the `x-codexpool-error-source` header, so operators and clients can
tell a bad request or an exhausted pool from a ChatGPT outage at a glance.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping
from typing import Any, Literal

from aiohttp import web
from aiohttp.typedefs import Handler

from .app_keys import REQUEST_ID
from .store.base import StoreUnavailable

_LOGGER = logging.getLogger(__name__)

Source = Literal["gateway", "upstream"]
SOURCE_HEADER = "x-codexpool-error-source"

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}


class ApiError(Exception):
    """An error answered to the client in OpenAI's shape; raise it from any handler."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        type: str | None = None,
        param: str | None = None,
        source: Source = "gateway",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.type = type or _TYPE_BY_STATUS.get(status, "api_error")
        self.param = param
        self.source: Source = source
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """Return the JSON body for this error."""
        return error_body(self.message, self.type, self.code, self.param, self.source)

    def response(self) -> web.Response:
        """Return the HTTP response for this error."""
        return json_error_response(self.status, self.body(), self.source, self.headers)


def error_body(
    message: str,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    source: Source = "gateway",
) -> dict[str, Any]:
    """Return OpenAI's error object; `source` is an extra key the SDKs ignore."""
    return {
        "error": {"message": message, "type": type, "param": param, "code": code, "source": source}
    }


def json_error_response(
    status: int, body: dict[str, Any], source: Source, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Wrap an error body in a JSON response with the provenance header."""
    resp = web.json_response(body, status=status, dumps=json.dumps)
    resp.headers[SOURCE_HEADER] = source
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into an OpenAI-style JSON error; never leak a traceback."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like pass through untouched
        if exc.status == 413:
            message = "Request body too large."
            code = "request_too_large"
        elif exc.status == 404:
            message = f"Unknown route: {request.method} {request.path}"
            code = "not_found"
        elif exc.status == 405:
            message = f"Method {request.method} is not allowed on {request.path}"
            code = "method_not_allowed"
        else:
            message = exc.text or exc.reason
            code = None
        err = ApiError(exc.status, message, code)
        resp = err.response()
        for name in ("Allow", "Retry-After", "Location"):
            if name in exc.headers:
                resp.headers[name] = exc.headers[name]
        return resp
    except ConnectionResetError:
        raise
    except StoreUnavailable as exc:
        # PostgreSQL cannot be reached: the pool reconnects by itself when it is back.
        _LOGGER.warning("Database unavailable in %s %s: %s", request.method, request.path, exc)
        return ApiError(
            503,
            "The database cannot be reached right now; retry shortly.",
            "database_unavailable",
            headers={"Retry-After": "5"},
        ).response()
    except sqlite3.OperationalError as exc:
        # Storage trouble is the server's state, not a bug: say so and when to retry.
        locked = "locked" in str(exc) or "busy" in str(exc)
        _LOGGER.warning("Database unavailable in %s %s: %s", request.method, request.path, exc)
        return ApiError(
            503,
            "The database is busy (another process holds its lock); retry shortly."
            if locked
            else "The database cannot be written right now; see the server log.",
            "database_busy" if locked else "database_unavailable",
            headers={"Retry-After": "2" if locked else "30"},
        ).response()
    except Exception:
        rid = request.get(REQUEST_ID, "-")
        _LOGGER.exception(
            "Unhandled error in %s %s (request %s)", request.method, request.path, rid
        )
        return ApiError(
            500, f"Internal error (request id {rid}); see the server log.", "internal_error"
        ).response()
