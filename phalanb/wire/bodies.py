"""Reading an HTTP body within a limit, before and after undoing a Content-Encoding the server applied anyway.

Used by every fetch that talks HTTP (the service client, the NRAS fetches), so no answer can fill the memory and
a compressed one cannot grow past the limit while it is inflated.
"""

from __future__ import annotations

import zlib

import httpx

from ..errors import ParseError, TransportError

__all__ = ["read_limited"]


def _inflate(body: bytes, wbits: int, limit: int, what: str) -> bytes:
    """Decompress at most ``limit`` bytes, never more: the output is bounded *while* inflating, so a small
    compressed answer cannot grow into gigabytes in memory first (a 71 KB gzip body inflates to 73 MB)."""
    out = bytearray()
    rest = body
    while True:
        d = zlib.decompressobj(wbits)
        try:
            out += d.decompress(rest, limit - len(out) + 1)
        except zlib.error as exc:
            raise ParseError(f"{what}: the compressed answer is corrupt ({exc}); nothing can be read from it",
                             field="body") from None
        if len(out) > limit or d.unconsumed_tail:
            raise ParseError(f"{what}: the answer decompresses to more than {limit} bytes (phalanb's limit); it "
                             f"was {len(body)} bytes compressed", field="body", offset=limit)
        if not d.eof:
            raise ParseError(f"{what}: the compressed answer is truncated ({len(body)} bytes, the stream does not "
                             "end)", field="body", offset=len(body))
        rest = d.unused_data
        if not rest:
            return bytes(out)
        if wbits != 16 + zlib.MAX_WBITS:  # only gzip may hold several members
            raise ParseError(f"{what}: {len(rest)} bytes follow the end of the compressed answer", field="body",
                             offset=len(body) - len(rest))


def _decode_content(body: bytes, encoding: str | None, *, limit: int = 64 * 1024 * 1024,
                    what: str = "answer") -> bytes:
    """Undo a transfer compression the server applied although phalanb asked for ``identity``, never inflating
    past ``limit`` bytes. Corrupt, truncated or oversized input raises :class:`ParseError`.

    The service hashed the body before compression, so the decompressed bytes are the ones to hash.
    """
    if not encoding or encoding == "identity":
        if len(body) > limit:
            raise ParseError(f"{what}: the answer exceeds {limit} bytes", field="body", offset=limit)
        return body
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return _inflate(body, 16 + zlib.MAX_WBITS, limit, what)
    if encoding == "deflate":
        # HTTP "deflate" is zlib-wrapped, but some servers send raw deflate.
        try:
            return _inflate(body, zlib.MAX_WBITS, limit, what)
        except ParseError as exc:
            if "decompresses to more" in str(exc):
                raise
            return _inflate(body, -zlib.MAX_WBITS, limit, what)
    raise TransportError(f"the server compressed the body with {encoding!r} although phalanb asked for identity; "
                         "phalanb cannot recover the exact bytes it signed")


def read_limited(response: httpx.Response, limit: int, *, what: str) -> bytes:
    """The body of a streamed ``response``, at most ``limit`` bytes before *and* after undoing its
    Content-Encoding. Larger, corrupt or truncated bodies raise :class:`ParseError`; a broken connection
    :class:`TransportError`."""
    parts, size = [], 0
    try:
        for chunk in response.iter_raw():
            size += len(chunk)
            if size > limit:
                raise ParseError(f"{what}: the answer exceeds {limit} bytes", field="body", offset=limit)
            parts.append(chunk)
    except httpx.StreamConsumed:
        # An in-memory response (a test's mock, built from bytes): httpx has already read and decoded it.
        return _decode_content(response.content, None, limit=limit, what=what)
    except (httpx.HTTPError, httpx.StreamError) as exc:
        raise TransportError(f"{what}: the connection broke after {size} bytes ({_reason(exc)})",
                             url=str(response.request.url)) from None
    return _decode_content(b"".join(parts), response.headers.get("content-encoding"), limit=limit, what=what)


def _reason(exc: BaseException) -> str:
    text = str(exc) or "the connection failed without a message"
    return text.splitlines()[0][:200]

