"""Byte ranges and the validators that guard them (RFC 9110 sections 13.1.5, 14).

One place for what a ``Range`` request asks and whether ``If-Range`` still
holds, shared by the files served from disk (``Response.file``) and the
pre-rendered static responses, so both answer a range the same way:

* one range (``a-b``, ``a-``, ``-n``): 206 with ``Content-Range``;
* a range that starts at or past the end, or an empty suffix: 416 with
  ``Content-Range: bytes */size``;
* several ranges, or anything malformed: ignored, the whole body (200), which
  the RFC allows (no ``multipart/byteranges``);
* ``If-Range`` that does not match (an entity-tag compared strongly, or the
  exact ``Last-Modified`` date): the whole body.
"""

from __future__ import annotations

import re
from email.utils import mktime_tz, parsedate_tz
from typing import Final

__all__ = ["UNSATISFIABLE", "http_date_seconds", "if_range_matches", "parse_range"]

# RFC 9110 section 14.1.1: ranges-specifier = range-unit "=" range-set. Only a
# set holding exactly one range-spec (empty list elements allowed) matches; the
# pattern is anchored and has no nested repetition, so a 10,000-range header is
# refused in one linear scan, building nothing.
_ONE_RANGE: Final = re.compile(r"bytes=[ \t,]*(\d*)-(\d*)[ \t,]*", re.IGNORECASE | re.ASCII)
# Longer numbers than this are past any body's end (and int() refuses over 4300 digits).
_MAX_DIGITS: Final = 18
_HUGE: Final = 10**19

UNSATISFIABLE: Final = (-1, -1)
"""``parse_range``'s answer for a range that starts past the end (416)."""


def _number(digits: str) -> int:
    digits = digits.lstrip("0")
    if len(digits) > _MAX_DIGITS:
        return _HUGE
    return int(digits) if digits else 0


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """The one byte range ``value`` asks of a ``size``-byte body: ``(first, last)`` inclusive.

    None when the header is to be ignored (malformed, several ranges, last < first);
    ``UNSATISFIABLE`` when it starts at or past the end, or is an empty suffix.
    """
    match = _ONE_RANGE.fullmatch(value.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None
        suffix = _number(last)
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        return max(0, size - suffix), size - 1
    start = _number(first)
    end = _number(last) if last else _HUGE
    if end < start:
        return None
    if start >= size:
        return UNSATISFIABLE
    return start, min(end, size - 1)


def http_date_seconds(value: str) -> int | None:
    """Seconds since the epoch of an HTTP date (any of RFC 9110's three forms), None if invalid."""
    try:
        parsed = parsedate_tz(value)
        return None if parsed is None else int(mktime_tz(parsed))
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def if_range_matches(value: str, etag: str | None, modified: int | None) -> bool:
    """Whether an ``If-Range`` value still names this representation (RFC 9110 section 13.1.5).

    An entity-tag is compared strongly with ``etag`` (a weak tag never
    matches); a date must equal ``modified`` (seconds since the epoch) exactly.
    No validator to compare with: no match, the whole body is sent.
    """
    value = value.strip()
    if value.startswith(('"', "W/")):
        return etag is not None and value == etag
    return modified is not None and http_date_seconds(value) == modified
