"""Request ids: every request gets one, echoed in `x-request-id`, so a log line, an error
body and a client's report can be matched.

A client's own id (printable, at most 64 characters) is kept, so ids can follow a request
through a proxy or the client's logs; otherwise a random one is made.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from .app_keys import REQUEST_ID
from .ids import unique_hex

REQUEST_ID_HEADER = "x-request-id"


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every request an id (echoed in a header) so log lines and errors can be matched."""
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    rid = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else unique_hex(32)
    request[REQUEST_ID] = rid
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        exc.headers[REQUEST_ID_HEADER] = rid
        raise
    return resp  # request_id_header adds the header as the response is prepared


async def request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    """Echo the request id on every response as its headers go out (on_response_prepare), so
    streams carry it too: the middleware sees a stream only once it is on the wire."""
    rid = request.get(REQUEST_ID)
    if rid is not None:
        response.headers[REQUEST_ID_HEADER] = rid
