"""Reading request bodies under a size limit: 413 before buffering more than the limit."""

from __future__ import annotations

from starlette.requests import Request

from service.http.errors import HTTPError


class BodyTooLarge(HTTPError):
    """413, answered in the envelope of the route that read the body."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large: the limit is {limit} bytes")
        self.limit = limit


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or BodyTooLarge as soon as Content-Length or the bytes received pass `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
