"""Reading what an operator request carries: its credential and its body. The one place the web server parses them.

Anything that cannot be read — a body that is not UTF-8, not JSON, a form in an unknown charset, JSON nested
absurdly deep (Python's decoder gives up with RecursionError) or holding a lone surrogate — is an `InputError`,
which console.errors answers with a 400 and a JSON error body; never a 500.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .errors import InputError

MAX_JSON_DEPTH = 32  # no operator API body nests deeper than 2; deeper ones are refused before any handler sees them


def bearer_token(header: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None for any other header.

    The scheme is matched case-insensitively (RFC 7235 section 2.1: `bearer` and `BEARER` are `Bearer` too).
    """
    scheme, _, given = header.strip().partition(" ")
    given = given.strip()
    return given if scheme.lower() == "bearer" and given else None


async def read_json(request: web.Request, optional: bool = False) -> Any:
    """The request body as JSON: the one place the web server parses a JSON body.

    JSON between systems is UTF-8 (RFC 8259 section 8.1), so the body is decoded as UTF-8 whatever charset its
    Content-Type claims.

    Args:
        optional: an empty body is `{}` instead of an error.

    Raises:
        InputError: (400) for a body that is not UTF-8, not JSON, or nested deeper than MAX_JSON_DEPTH.
    """
    raw = await request.read()
    if optional and not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"the request body must be UTF-8 (byte {exc.start} is not)") from exc
    try:
        value = json.loads(text)
    except RecursionError as exc:  # the decoder's own guard against deep nesting: refused, not a crash
        raise InputError(f"the request body's JSON nests deeper than {MAX_JSON_DEPTH} levels") from exc
    except ValueError as exc:
        raise InputError("the request body must be JSON") from exc
    problem = _json_problem(value, MAX_JSON_DEPTH)
    if problem:
        raise InputError(f"the request body's JSON {problem}")
    return value


async def read_form(request: web.Request) -> Any:
    """The request's form fields (urlencoded or multipart); InputError (400) for a body that cannot be decoded
    (not UTF-8, an unknown charset, a broken multipart body)."""
    try:
        return await request.post()
    except (ValueError, LookupError) as exc:  # UnicodeDecodeError is a ValueError
        raise InputError("the form could not be read: send it UTF-8 encoded") from exc


def _json_problem(value: Any, limit: int) -> str | None:
    """What is wrong with a parsed JSON value the library should never see: containers nested more than `limit`
    deep, or a string with a lone surrogate (`"\\ud800"` is valid JSON but not text: SQLite and UTF-8 refuse it).
    Iterative, so no depth can make it recurse."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "has a lone surrogate (an unpaired \\ud800-\\udfff escape): text must be valid Unicode"
        elif isinstance(item, (dict, list)):
            if depth >= limit:
                return f"nests deeper than {limit} levels"
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return None
