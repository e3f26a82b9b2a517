"""Reading an HTTP request body with a size cap, for every API that takes one.

The Feature API and the model server read bodies through `read_body`: a declared
`Content-Length` above the cap is refused before a byte is read, and a body without one
(chunked transfer encoding, or a length that lies) is counted as it streams in and
refused as soon as it passes the cap, so no request holds more than the cap in memory.
Each API answers `BodyTooLarge` with 413 in its own error object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the operator imports the size limits without the serving extra
    from starlette.requests import Request

MODEL_SERVER_MAX_BYTES = 1024 * 1024
"""The model server's and router's default cap: the largest batch (1000 rows) of long keys
in any of the three protocols, with room to spare."""


class BodyTooLarge(Exception):
    """The request body exceeds the cap (HTTP 413, RFC 9110 section 15.5.14)."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, at most `max_bytes` bytes; raises BodyTooLarge naming the cap.

    Raises starlette's ClientDisconnect when the client leaves mid-body."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(
            f"the request body of {declared} bytes exceeds the limit of {max_bytes} bytes",
            max_bytes,
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(
                f"the request body exceeds the limit of {max_bytes} bytes", max_bytes
            )
        chunks.append(chunk)
    return b"".join(chunks)
