"""Large v1 bodies without several copies in memory (issue 4: a 74 MB, 50,000-lot job).

A body up to :data:`STREAM_ABOVE` bytes is kept in memory and parsed at once with orjson
(:func:`gen_ingest.request_body.parse_json`). A larger one is spooled to an unnamed temporary file
as it streams in (hashed on the way for idempotency) and read back in two passes of ijson's C
parser:

1. the top level (``basic_parse``, no prefixes; :mod:`gen_ingest.spool_scan`): JSON validity, a
   nesting limit, the top-level keys and their small values, the number of lots;
2. the lots (``items(..., "lots.item")``; :mod:`gen_ingest.spooled`), one at a time: the v1
   signature is fed lot by lot (``json.dumps`` of a list is ``"[" + ",".join(dumps(item)) +
   "]"``), each lot is checked and written as one compact JSON line to a second temporary file
   (``SpooledLots``), from which the events are published in order.

The checks and their order are :func:`gen_ingest.validate.check_v1`'s. Shapes this path does not
reproduce exactly (the ``lots`` key twice, a top-level key ``"lots.item"``) fall back to the
in-memory parse. Numbers are parsed as floats and 64-bit integers (larger ones are invalid JSON,
as with orjson).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import tempfile
from dataclasses import dataclass
from typing import IO

from starlette.requests import Request as HttpRequest

from gen_ingest.request_body import parse_json
from gen_ingest.settings import IngestOptions
from gen_ingest.spooled import check_spooled
from gen_ingest.validate import Request, check_v1

STREAM_ABOVE = 4 * 1024 * 1024


@dataclass(slots=True)
class Body:
    """A received body: in memory (``data``) or spooled (``file``), with its SHA-256."""

    digest: bytes
    data: bytearray | None = None
    file: IO[bytes] | None = None


async def receive(request: HttpRequest, files: contextlib.ExitStack) -> Body:
    """Read the body once; past :data:`STREAM_ABOVE` bytes it goes to a temporary file."""
    sha = hashlib.sha256()
    buffer = bytearray()
    spool: IO[bytes] | None = None
    async for chunk in request.stream():
        sha.update(chunk)
        if spool is not None:
            spool.write(chunk)
            continue
        buffer += chunk
        if len(buffer) > STREAM_ABOVE:
            spool = files.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
            spool.write(buffer)
            buffer = bytearray()
    if spool is None:
        return Body(sha.digest(), data=buffer)
    spool.flush()
    return Body(sha.digest(), file=spool)


async def check(
    body: Body, key: bytes, opts: IngestOptions, files: contextlib.ExitStack
) -> Request:
    """:func:`gen_ingest.validate.check_v1` over a received body (spooled ones in a thread)."""
    if body.file is None:
        assert body.data is not None
        data = parse_json(body.data)
        body.data = None  # one copy at a time: the bytes go before the lots are checked
        return check_v1(data, key, opts)
    out = files.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
    return await asyncio.to_thread(check_spooled, body.file, out, key, opts)
