"""Reading a request body within bounds before anything looks at it: its bytes counted as they arrive (a body sent
in chunks, without a ``Content-Length``, is cut off as soon as it passes the limit), and its JSON nested no deeper,
and its integers no longer, than a chat request needs, so a hostile body is one 400 rather than a ``RecursionError``
or a ``ValueError`` from Python's integer parser (a 500)."""

from __future__ import annotations

import json
import re
from typing import Any, AsyncIterator, Optional

from .openai_schema import APIError, bad_request

MAX_JSON_DEPTH = 32  # a chat request is about 6 deep: body, messages, [i], content, [j], image_url
MAX_INT_DIGITS = 40  # seeds are 64-bit (20 digits); anything longer is no number a request needs
# A JSON string (escapes included) or a bracket: what the depth scan needs to see, at C speed over long strings.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


class ClientGone(Exception):
    """The client closed the connection before its request was read (or answered)."""


def too_large(size_text: str, limit: int) -> APIError:
    return APIError(413, f"The request body is {size_text} bytes, over this server's limit of {limit:,} "
                         "(--max-request-bytes); send smaller images.", code="request_too_large")


async def read_bounded(chunks: AsyncIterator[bytes], declared: Optional[str], limit: int) -> bytes:
    """The body from ``chunks``, refused (413) by its declared length before reading, or as soon as the bytes read
    pass ``limit``: the rest is never read."""
    if declared is not None:
        if not declared.strip().isdigit():
            raise bad_request(f"The Content-Length header {declared[:40]!r} is not a number of bytes.")
        if int(declared) > limit:
            raise too_large(f"{int(declared):,}", limit)
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise too_large(f"over {limit:,}", limit)
        parts.append(chunk)
    return b"".join(parts)


class OversizedNumber:
    """Stands for an integer of more than ``MAX_INT_DIGITS`` digits in a body; every field check refuses it as not a
    number, naming the field."""

    def __init__(self, digits: int):
        self.digits = digits

    def __repr__(self) -> str:
        return f"<an integer of {self.digits:,} digits>"


def _integer(text: str):
    digits = len(text.lstrip("-"))
    return int(text) if digits <= MAX_INT_DIGITS else OversizedNumber(digits)


def check_depth(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> None:
    """400 naming the top-level field whose value nests deeper than ``max_depth``, found without parsing."""
    depth, field = 0, None
    for match in _TOKENS.finditer(raw):
        token = match.group()
        if token[:1] == b'"':
            if depth == 1:
                field = token[1:-1].decode("utf-8", "replace")[:60]  # the last key seen at the top level
            continue
        depth += 1 if token in (b"[", b"{") else -1
        if depth > max_depth:
            raise bad_request(f"'{field}' is nested more than {max_depth} levels deep; a chat request needs far fewer."
                              if field else f"The request body is nested more than {max_depth} levels deep.", field)


def load_json(raw: bytes) -> Any:
    """The body's JSON, nested at most ``MAX_JSON_DEPTH`` deep, integers of over ``MAX_INT_DIGITS`` digits kept as
    ``OversizedNumber``; 400 for anything else."""
    check_depth(raw)
    try:
        return json.loads(raw, parse_int=_integer)
    except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise bad_request(f"The request body is not valid JSON ({str(err)[:200]}).") from None
