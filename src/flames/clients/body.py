"""Reading a reply's body within a byte limit, decompressing it as it arrives.

A server may send any size of body, or a small gzip body that inflates to gigabytes (a "gzip
bomb"). Bodies are read a chunk at a time and decompressed here, with zlib's `max_length`, so
no more than the limit (plus one chunk) is ever held: a reply over the limit is refused the
moment it passes it, whatever it claims to be.

aiohttp's own decompression is turned off for this (``ClientSession(auto_decompress=False)``):
it is on by default (docs.aiohttp.org/en/v3.14.1/client_reference.html, ClientSession), and
before aiohttp 3.13.3 it inflated each network chunk whole (GHSA-6mq8-rvhq-8wgg; the bounded
`DeflateBuffer.feed_data` of aiohttp/http_parser.py came with that fix), while
``ClientResponse.read()`` reads to the end of the stream in any version
(docs.aiohttp.org/en/latest/streams.html, ``StreamReader.read(n=-1)``). aiohttp would also
announce br and zstd when their packages are installed (aiohttp/client_reqrep.py,
``_gen_default_accept_encoding``), so the encodings this module decodes are sent explicitly.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator

import aiohttp

ACCEPT_ENCODING = "gzip, deflate"
"""What the client accepts: the encodings `read_limited` decodes."""
DEFAULT_MAX_REPLY_BYTES = 8 * 1024 * 1024
"""8 MiB: a chat completion is a few kilobytes; even 100,000 tokens of Chinese, JSON-escaped as
\\uXXXX, stay under 1 MiB."""
CHUNK = 64 * 1024
"""Bytes read (and decompressed) at a time."""


class ReplyTooLarge(Exception):
    """The body passed the byte limit; nothing more of it was read."""

    def __init__(self, limit: int):
        super().__init__(
            f"the reply is larger than the limit of {limit:,} bytes (--max-reply-bytes); "
            "nothing of it was kept"
        )
        self.limit = limit


class BadEncoding(Exception):
    """The body's Content-Encoding is not one the client asked for, or does not decode."""


def _decompressor(encoding: str, first: bytes) -> zlib._Decompress | None:
    """A zlib decompressor for the Content-Encoding, or None for a body sent as it is."""
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        # RFC 9110 says zlib format; some servers send raw deflate (no zlib header).
        return zlib.decompressobj(zlib.MAX_WBITS if _zlib_header(first) else -zlib.MAX_WBITS)
    raise BadEncoding(f"the reply's Content-Encoding {encoding!r} was not asked for")


def _zlib_header(data: bytes) -> bool:
    """Whether `data` starts with a zlib header (RFC 1950: method 8, check bits)."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


class _Limited:
    """Decoded bytes gathered up to a limit."""

    def __init__(self, limit: int):
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            self.parts.clear()
            raise ReplyTooLarge(self.limit)
        self.parts.append(data)

    def room(self) -> int:
        """How many more bytes to inflate at most: one past the limit tells it was passed."""
        return self.limit - self.size + 1


async def read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The decoded body of `response`, or ReplyTooLarge as soon as it passes `limit` bytes;
    BadEncoding for an encoding not asked for, or a body that does not decode."""
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    declared = response.headers.get("Content-Length", "")
    too_long = declared.isascii() and declared.isdigit() and int(declared[:20]) > limit
    if encoding in ("", "identity") and too_long:
        raise ReplyTooLarge(limit)  # refused before a byte of it is read
    body = _Limited(limit)
    inflate: zlib._Decompress | None = None
    started = False
    async for chunk in response.content.iter_chunked(CHUNK):
        if not started:
            inflate = _decompressor(encoding, chunk)
            started = True
        if inflate is None:
            body.add(chunk)
            continue
        data = chunk
        try:
            while data and not inflate.eof:
                body.add(inflate.decompress(data, body.room()))
                data = inflate.unconsumed_tail
                await asyncio.sleep(0)  # a long body never holds the event loop (or its timeout)
        except zlib.error as exc:
            raise BadEncoding(f"the reply's {encoding} body does not decode ({exc})") from None
    if started and inflate is not None and not inflate.eof:
        raise BadEncoding(f"the reply's {encoding} body is cut short")
    return b"".join(body.parts)


async def decoded_chunks(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The decoded body of `response` as it arrives, a piece of at most CHUNK bytes at a time
    (a long download, such as a batch's results, read with `read_limited`'s decoding and never
    held whole); BadEncoding as `read_limited` raises it."""
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    inflate: zlib._Decompress | None = None
    started = False
    async for chunk in response.content.iter_chunked(CHUNK):
        if not started:
            inflate = _decompressor(encoding, chunk)
            started = True
        if inflate is None:
            yield chunk
            continue
        data = chunk
        try:
            while data and not inflate.eof:
                piece = inflate.decompress(data, CHUNK)
                data = inflate.unconsumed_tail
                if piece:
                    yield piece
                await asyncio.sleep(0)
        except zlib.error as exc:
            raise BadEncoding(f"the reply's {encoding} body does not decode ({exc})") from None
    if started and inflate is not None and not inflate.eof:
        raise BadEncoding(f"the reply's {encoding} body is cut short")
