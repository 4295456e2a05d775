"""The multi-value mappings of a request: ``Headers``, ``QueryParams`` (and, in ``forms``, ``FormData``).

Read-only mappings of str to str that keep every value of a key: ``m[key]``
and ``m.get(key)`` give the first, ``m.getall(key)`` all of them in order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Final
from urllib.parse import unquote_to_bytes

from cyclehttp.compile_hints import mypyc_attr
from cyclehttp.config import DEFAULT_MAX_QUERY_PAIRS
from cyclehttp.errors import HTTPError

__all__ = ["MAX_QUERY_PAIRS", "Headers", "MultiMapping", "QueryParams"]

# The default of Config.max_query_pairs (why 1000: see config.py).
MAX_QUERY_PAIRS: Final = DEFAULT_MAX_QUERY_PAIRS

# RFC 3986 section 2.1: pct-encoded = "%" HEXDIG HEXDIG; a "%" not followed by two hex digits is invalid.
_BAD_PERCENT_RE: Final = re.compile(rb"%(?![0-9A-Fa-f]{2})")


@mypyc_attr(allow_interpreted_subclasses=True)
class MultiMapping(Mapping[str, str]):
    """A read-only mapping of str to str that keeps every value of a key.

    ``m[key]`` and ``m.get(key)`` give the first value; ``m.getall(key)``
    gives all of them in order.
    """

    __slots__ = ("_index", "_items")

    _items: list[tuple[str, str]]
    _index: dict[str, list[str]]

    def _build(self, items: list[tuple[str, str]], fold: bool) -> None:
        self._items = items
        index: dict[str, list[str]] = {}
        for key, value in items:
            index.setdefault(key.lower() if fold else key, []).append(value)
        self._index = index

    def _key(self, key: str) -> str:
        return key

    def __getitem__(self, key: str) -> str:
        return self._index[self._key(key)][0]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._key(key) in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def getall(self, key: str, default: list[str] | None = None) -> list[str]:
        """Every value of ``key`` in the order received (``default`` or [] when absent)."""
        values = self._index.get(self._key(key))
        if values is None:
            return [] if default is None else default
        return list(values)

    def multi_items(self) -> list[tuple[str, str]]:
        """All (key, value) pairs in the order received, repeats included."""
        return list(self._items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"


@mypyc_attr(allow_interpreted_subclasses=True)
class Headers(MultiMapping):
    """Request headers: case-insensitive, multi-value aware.

    Names are compared case-insensitively and iterate lower-cased; values are
    decoded as latin-1, the way HTTP defines header bytes.
    """

    __slots__ = ()

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._build([(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw], fold=True)

    def _key(self, key: str) -> str:
        return key.lower()


def _query_part(raw: bytes) -> str:
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" in raw:
        if _BAD_PERCENT_RE.search(raw) is not None:
            raise HTTPError(400, f"Invalid percent-encoding in the query string: {raw[:100]!r}")
        raw = unquote_to_bytes(raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(
            400, f"The query string is not valid UTF-8 once percent-decoded: {raw[:100]!r}"
        ) from None


@mypyc_attr(allow_interpreted_subclasses=True)
class QueryParams(MultiMapping):
    """The query string as a multi-value mapping (form-urlencoded rules: ``+`` is a space).

    Pairs are separated by ``&``; a key without ``=`` has the value ``""``;
    empty pairs are skipped. Strict where ``urllib.parse.parse_qsl`` guesses:
    a ``%`` not followed by two hex digits, bytes that are not UTF-8 once
    decoded, or more than ``max_pairs`` pairs raise ``HTTPError(400)``, so a
    handler reading ``request.query`` answers 400 with the reason.
    """

    __slots__ = ()

    def __init__(self, query_string: bytes | str, max_pairs: int = MAX_QUERY_PAIRS) -> None:
        if isinstance(query_string, str):
            query_string = query_string.encode("utf-8")
        pieces = query_string.split(b"&", max_pairs) if query_string else []
        if len(pieces) > max_pairs and any(pieces[max_pairs].split(b"&")):
            raise HTTPError(400, f"Too many query parameters: more than {max_pairs}")
        items: list[tuple[str, str]] = []
        for piece in pieces[:max_pairs]:
            if piece:
                key, _, value = piece.partition(b"=")
                items.append((_query_part(key), _query_part(value)))
        self._build(items, fold=False)
