"""A segment index of the parameter routes: the few a path could match, however many there are.

Parameter routes are regexes, and trying them one after another costs in
proportion to their number: a few hundred routes, and routing is most of a
request. ``RouteIndex`` is built once, at start-up: a trie over the ``/``
segments of the routes' patterns. A segment that is all literal text is a key
(its encoded bytes, as the path is compared); a segment holding a parameter
matches any segment; a ``{name:path}`` parameter matches the rest of the path.

``candidates(path)`` walks the segments of a request path (normalised as the
router normalises it) and returns the routes that could match it, in
declaration order. It only prunes routes that cannot match: their regexes
still decide, in that order, with their converters, exactly as the linear
search did, so which route wins, the parameters, the 405s and their ``Allow``
stay what they were. The walk costs in proportion to the path's segments
(and to the routes that share its shape), not to the table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Final

__all__ = ["RouteIndex"]

# A segment holding a {name:path} parameter: it and whatever follows match the rest of the path.
_PATH_PARAMETER: Final = re.compile(r"\{[^{}]*:path\}")


class _Node:
    """The routes that reach one segment position by one chain of segments."""

    __slots__ = ("ends", "literal", "parameter", "tails")

    def __init__(self) -> None:
        self.literal: dict[bytes, _Node] = {}
        """Children by the exact (encoded) text of the next segment."""
        self.parameter: _Node | None = None
        """The child for a next segment that holds a parameter (any text may match it)."""
        self.ends: list[int] = []
        """Routes (declaration positions) whose pattern ends here."""
        self.tails: list[int] = []
        """Routes with a {name:path} parameter from here on: any longer path may match them."""


class RouteIndex:
    """The segment trie of ``patterns`` (the declared paths of the parameter routes, in order).

    ``encode`` turns a literal segment into the bytes a normalised request path holds for it.
    """

    __slots__ = ("_root",)

    def __init__(self, patterns: Sequence[str], encode: Callable[[str], bytes]) -> None:
        self._root = _Node()
        for position, pattern in enumerate(patterns):
            self._add(position, pattern, encode)

    def _add(self, position: int, pattern: str, encode: Callable[[str], bytes]) -> None:
        node = self._root
        for segment in pattern.split("/"):
            if _PATH_PARAMETER.search(segment) is not None:
                node.tails.append(position)
                return
            if "{" in segment:
                if node.parameter is None:
                    node.parameter = _Node()
                node = node.parameter
            else:
                node = node.literal.setdefault(encode(segment), _Node())
        node.ends.append(position)

    def candidates(self, path: bytes) -> list[int]:
        """The positions of the routes ``path`` could match, in declaration order (``path`` starts with /)."""
        found: list[int] = []
        node = self._root.literal.get(b"")  # every pattern starts with "/": its first segment is empty
        start = 1
        size = len(path)
        # One chain while the path goes one way (the common case): a segment is sliced only when it
        # is reached, so a path that leaves the table early (a 404) stops early.
        while node is not None and start <= size:
            if node.tails:
                found.extend(node.tails)
            end = path.find(b"/", start)
            if end < 0:
                end = size
            child = node.literal.get(path[start:end])
            parameter = node.parameter
            if child is not None and parameter is not None:
                return self._walk(path, end + 1, [child, parameter], found)
            node = child if child is not None else parameter
            start = end + 1
        if node is not None:
            found.extend(node.ends)
        if len(found) > 1:
            found.sort()
        return found

    def _walk(self, path: bytes, start: int, nodes: list[_Node], found: list[int]) -> list[int]:
        """The walk from where it forked: every node the path can reach, segment by segment."""
        size = len(path)
        while nodes and start <= size:
            end = path.find(b"/", start)
            if end < 0:
                end = size
            segment = path[start:end]
            following: list[_Node] = []
            for node in nodes:
                if node.tails:
                    found.extend(node.tails)
                child = node.literal.get(segment)
                if child is not None:
                    following.append(child)
                if node.parameter is not None:
                    following.append(node.parameter)
            nodes = following
            start = end + 1
        for node in nodes:
            found.extend(node.ends)
        if len(found) > 1:
            found.sort()
        return found
