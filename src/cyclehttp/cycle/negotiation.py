"""Content negotiation: the weighted lists of ``Accept`` and ``Accept-Encoding`` (RFC 9110 section 12).

One parser for both fields: a comma-separated list of elements, each a token
(a media range or a content coding) with ``;``-separated parameters, one of
which may be ``q``. A ``q`` that is not an RFC 9110 qvalue counts as 0 (not
acceptable): a malformed weight never makes a representation preferred.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["accept_encoding_weights", "prefers_json", "weighted_elements"]

# RFC 9110 section 12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE_RE: Final = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")

# Parsed Accept-Encoding values: clients send the same few strings all day. Bounded:
# a client sending a new value every time only makes the cache start over.
_ACCEPT_ENCODING_CACHE: Final[dict[bytes, dict[str, float]]] = {}
_ACCEPT_ENCODING_CACHE_SIZE: Final = 256


def weighted_elements(field: str) -> list[tuple[str, float]]:
    """``(token, q)`` of each element of a weighted list, token in lower case, in the order sent.

    Empty elements are skipped; an element without ``q`` weighs 1; an
    unreadable ``q`` weighs 0.
    """
    elements = []
    for element in field.split(","):
        token, _, parameters = element.partition(";")
        token = token.strip(" \t").lower()
        if not token:
            continue
        q = 1.0
        if parameters:
            for parameter in parameters.split(";"):
                key, _, value = parameter.partition("=")
                if key.strip(" \t").lower() == "q":
                    value = value.strip(" \t")
                    q = float(value) if _QVALUE_RE.fullmatch(value) else 0.0
        elements.append((token, q))
    return elements


def accept_encoding_weights(field: bytes) -> dict[str, float]:
    """Content coding -> qvalue of an ``Accept-Encoding`` value (RFC 9110 section 12.5.3).

    ``x-gzip`` counts as ``gzip``; a coding listed twice keeps its first weight.
    The result is cached.
    """
    weights = _ACCEPT_ENCODING_CACHE.get(field)
    if weights is not None:
        return weights
    weights = {}
    for coding, q in weighted_elements(field.decode("latin-1")):
        weights.setdefault("gzip" if coding == "x-gzip" else coding, q)
    if len(_ACCEPT_ENCODING_CACHE) >= _ACCEPT_ENCODING_CACHE_SIZE:
        _ACCEPT_ENCODING_CACHE.clear()
    _ACCEPT_ENCODING_CACHE[field] = weights
    return weights


def _quality(ranges: list[tuple[str, str, float]], kind: str, subtype: str) -> float:
    """The q of the most specific media range matching ``kind/subtype`` (0 when none does)."""
    best_specificity, q = -1, 0.0
    for range_kind, range_subtype, weight in ranges:
        if range_kind == kind and range_subtype == subtype:
            specificity = 2
        elif range_kind == kind and range_subtype == "*":
            specificity = 1
        elif range_kind == "*" and range_subtype == "*":
            specificity = 0
        else:
            continue
        if specificity > best_specificity:
            best_specificity, q = specificity, weight
    return q


def prefers_json(accept: str | None) -> bool:
    """Whether an ``Accept`` value ranks ``application/json`` above ``text/plain`` and ``text/html``.

    A tie (``*/*``, no ``Accept``) is plain text.
    """
    if not accept:
        return False
    ranges = []
    for media, q in weighted_elements(accept):
        kind, _, subtype = media.partition("/")
        if kind and subtype:
            ranges.append((kind, subtype.strip(" \t"), q))
    json_q = _quality(ranges, "application", "json")
    return json_q > 0 and json_q > max(_quality(ranges, "text", "plain"), _quality(ranges, "text", "html"))
