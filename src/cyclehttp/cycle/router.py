"""The index router: routes compiled once into tables of handler indexes.

Every outcome of a lookup is a *target* in one list, ``Router.targets``:
a pre-rendered response, a handler, and also the 404 and the 405 answers,
which are pre-rendered responses too. Route tables hold indexes into
that list:

* ``exact``: raw path bytes -> ``PathEntry`` of a path without parameters (one dict lookup,
  no decoding);
* ``dynamic``: ``PathEntry`` objects with a compiled regex, tried in the order
  they were declared, only when the exact lookup misses;
* ``PathEntry.methods``: method bytes -> target index; a method the path does
  not know selects the entry's 405 target, which carries ``Allow``.

HEAD selects the GET target unless a HEAD route is declared; the protocol
drops the body.
"""

from __future__ import annotations

import re
import string
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, unquote

from cyclehttp.clock.stats import ANY_METHOD, OTHER_METHOD, UNMATCHED
from cyclehttp.cycle.prerendered import PrerenderedResponse
from cyclehttp.cycle.response import Response, error_response
from cyclehttp.cycle.route_index import RouteIndex
from cyclehttp.cycle.targets import ErrorAnswer, Target
from cyclehttp.errors import RouteError

__all__ = [
    "ASTERISK",
    "CONVERTERS",
    "NOT_FOUND_INDEX",
    "SERVER_WIDE",
    "PathEntry",
    "RouteSpec",
    "Router",
    "compile_pattern",
    "normalize_method",
]

# name -> (regex over the raw, percent-encoded path, conversion of the decoded text)
CONVERTERS: Final[dict[str, tuple[str, Callable[[str], Any]]]] = {
    "str": (r"[^/]+", str),
    "int": (r"[0-9]+", int),
    "float": (r"[0-9]+(?:\.[0-9]+)?", float),
    "uuid": (r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", uuid.UUID),
    "path": (r".+", str),
}

# RFC 3986 pchar plus "/": what may stand unencoded in a path.
_PATH_SAFE: Final = "/:@!$&'()*+,;=-._~"
_PARAM: Final = re.compile(r"\{([^{}]*)\}")
_METHOD: Final = re.compile(r"^[A-Z][A-Z-]*$")


def _encode_path(text: str) -> bytes:
    return quote(text, safe=_PATH_SAFE).encode("ascii")


_PERCENT: Final = re.compile(rb"%([0-9A-Fa-f]{2})")
_PERCENT_SIGN: Final = ord("%")
_ESCAPED_SLASH: Final = re.compile(rb"%2[fF]")
# Bytes a route literal holds unencoded ("/" excluded: %2F must stay in one segment).
_LITERAL_SAFE: Final = frozenset(
    (_PATH_SAFE.replace("/", "") + string.ascii_letters + string.digits).encode("ascii")
)


def _normalize_escape(match: re.Match[bytes]) -> bytes:
    byte = int(match.group(1), 16)
    return bytes((byte,)) if byte in _LITERAL_SAFE else b"%" + match.group(1).upper()


def _normalize_path(path: bytes) -> bytes:
    """Percent-escapes in the form ``_encode_path`` gives route literals (RFC 3986 6.2.2)."""
    return _PERCENT.sub(_normalize_escape, path)


@dataclass(frozen=True, slots=True)
class CompiledPattern:
    """A path pattern: its regex (None for a path without parameters), its raw path and params."""

    pattern: str
    raw: bytes
    regex: re.Pattern[bytes] | None
    converters: tuple[tuple[str, Callable[[str], Any]], ...]
    signature: str  # the pattern with parameter names erased, to find duplicates


def compile_pattern(path: object) -> CompiledPattern:
    """Parse ``/users/{user_id:int}`` into a regex over raw path bytes.

    Raises ``RouteError`` for a path without a leading slash, an unknown
    converter, a bad or repeated parameter name, or stray braces.
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise RouteError(f"route path {path!r} must be a str starting with '/'")
    regex_parts: list[bytes] = []
    signature_parts: list[str] = []
    converters: list[tuple[str, Callable[[str], Any]]] = []
    position = 0
    for match in _PARAM.finditer(path):
        literal = path[position : match.start()]
        _check_literal(path, literal)
        regex_parts.append(re.escape(_encode_path(literal)))
        signature_parts.append(literal)
        name, _, converter_name = match.group(1).partition(":")
        converter_name = converter_name or "str"
        if not name.isidentifier():
            raise RouteError(f"route {path!r}: parameter name {name!r} is not an identifier")
        if any(name == seen for seen, _ in converters):
            raise RouteError(f"route {path!r}: parameter {name!r} appears twice")
        if converter_name not in CONVERTERS:
            known = ", ".join(CONVERTERS)
            raise RouteError(
                f"route {path!r}: unknown converter {converter_name!r} for {name!r}; use one of {known}"
            )
        regex, convert = CONVERTERS[converter_name]
        regex_parts.append(b"(" + regex.encode("ascii") + b")")
        signature_parts.append("{:" + converter_name + "}")
        converters.append((name, convert))
        position = match.end()
    literal = path[position:]
    _check_literal(path, literal)
    if not converters:
        return CompiledPattern(path, _encode_path(path), None, (), path)
    regex_parts.append(re.escape(_encode_path(literal)))
    signature_parts.append(literal)
    return CompiledPattern(
        path, b"", re.compile(b"".join(regex_parts)), tuple(converters), "".join(signature_parts)
    )


def _check_literal(path: str, literal: str) -> None:
    if "{" in literal or "}" in literal:
        raise RouteError(f"route {path!r}: unbalanced '{{' or '}}'")
    if "?" in literal or "#" in literal:
        raise RouteError(f"route {path!r}: a route path cannot contain '?' or '#'")


def normalize_method(method: object) -> str:
    if not isinstance(method, str) or not _METHOD.match(method.upper()):
        raise RouteError(f"invalid HTTP method {method!r}; use e.g. 'GET' or 'POST'")
    return method.upper()


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One declared route: method, compiled path pattern and target."""

    method: str
    pattern: CompiledPattern
    target: Target

    @property
    def path(self) -> str:
        return self.pattern.pattern


class PathEntry:
    """All routes of one path pattern: method -> target index, and its 405."""

    __slots__ = ("allow", "converters", "methods", "not_allowed", "pattern", "regex")

    def __init__(self, pattern: CompiledPattern) -> None:
        self.pattern = pattern.pattern
        self.regex = pattern.regex
        self.converters = pattern.converters
        self.methods: dict[bytes, int] = {}
        self.not_allowed = 0
        self.allow = ""


NOT_FOUND_INDEX: Final = 0

LINEAR_ROUTES: Final = 8
"""Up to this many parameter routes are tried one after another; more go through ``RouteIndex``
(measured: benchmarks/micro/router.py)."""

ASTERISK: Final = b"*"
"""The asterisk-form request target (``OPTIONS * HTTP/1.1``): the key of the server-wide entry."""
SERVER_WIDE: Final = "*"


class Router:
    """The compiled route table; built once when the server starts.

    Every target is the router's own copy, so the responses it counts are
    this router's (``request_counts``), labelled by ``labels``.
    """

    __slots__ = (
        "_combined_405",
        "_error_answer",
        "_index",
        "dynamic",
        "exact",
        "labels",
        "not_found",
        "server_options",
        "targets",
    )

    def __init__(self, routes: Iterable[RouteSpec], error_answer: ErrorAnswer | None = None) -> None:
        # The 404 and 405 are pre-rendered unless the app's error handlers take their status:
        # then error_answer gives a handler target that raises the HTTPError for them to answer.
        self._error_answer = error_answer
        self.not_found = self._error_target(404)
        self.targets: list[Target] = [self.not_found]
        self.labels: list[tuple[str, str]] = [(ANY_METHOD, UNMATCHED)]
        self.exact: dict[bytes, PathEntry] = {}
        self.dynamic: list[PathEntry] = []
        self._combined_405: dict[str, int] = {}
        entries: dict[str, PathEntry] = {}
        for route in routes:
            key = route.pattern.signature
            entry = entries.get(key)
            if entry is None:
                entry = entries[key] = PathEntry(route.pattern)
                if route.pattern.regex is None:
                    self.exact[route.pattern.raw] = entry
                else:
                    self.dynamic.append(entry)
            method = route.method.encode("ascii")
            if method in entry.methods:
                raise RouteError(f"duplicate route: {route.method} {route.path}")
            entry.methods[method] = self._add(route.target.copy(), route.method, route.path)
        for entry in entries.values():
            if b"GET" in entry.methods and b"HEAD" not in entry.methods:
                entry.methods[b"HEAD"] = entry.methods[b"GET"]
            entry.allow = ", ".join(sorted(m.decode("ascii") for m in entry.methods))
            entry.not_allowed = self._add(self._error_target(405, entry.allow), OTHER_METHOD, entry.pattern)
        self._index = (
            RouteIndex([entry.pattern for entry in self.dynamic], _encode_path)
            if len(self.dynamic) > LINEAR_ROUTES
            else None
        )
        self.server_options = self._add(PrerenderedResponse(Response()), "OPTIONS", SERVER_WIDE)
        """The index of the ``OPTIONS *`` answer."""
        self._render_server_options()

    def _render_server_options(self) -> None:
        """``OPTIONS *`` (RFC 9112 section 3.2.4): 200 with ``Allow``, every method some route serves.

        Pre-rendered like any route target, and answered without a route lookup:
        the asterisk form names the server, not a resource.
        """
        entries = [entry for key, entry in self.exact.items() if key != ASTERISK]
        methods = {m for entry in (*entries, *self.dynamic) for m in entry.methods}
        allow = ", ".join(sorted({m.decode("ascii") for m in methods} | {"OPTIONS"}))
        self.targets[self.server_options] = PrerenderedResponse(Response(headers=[("Allow", allow)]))
        entry = self.exact.get(ASTERISK)
        if entry is None:  # first rendering: the entry, with a 405 like any path's (the protocol
            # answers any other method on "*" with 400 before looking it up)
            entry = self.exact[ASTERISK] = PathEntry(compile_pattern("/"))
            entry.pattern = SERVER_WIDE
            entry.methods[b"OPTIONS"] = self.server_options
            entry.allow = "OPTIONS"
            entry.not_allowed = self._add(self._error_target(405, entry.allow), OTHER_METHOD, SERVER_WIDE)

    def _error_target(self, status: int, allow: str | None = None) -> Target:
        """The 404 (``allow`` None) or a 405 with ``Allow``: pre-rendered, or a handler target."""
        headers = None if allow is None else [("Allow", allow)]
        handled = None if self._error_answer is None else self._error_answer(status, headers)
        return PrerenderedResponse(error_response(status, headers=headers)) if handled is None else handled

    def _add(self, target: Target, method: str, route: str) -> int:
        self.targets.append(target)
        self.labels.append((method, route))
        return len(self.targets) - 1

    def add_internal(self, path: str, target: Target, method: str = "GET") -> None:
        """Serve ``target`` on ``path`` (e.g. the metrics page), refusing to hide a user route.

        Raises ``RouteError`` when a declared route already answers ``path``:
        either one would shadow the other.
        """
        pattern = compile_pattern(path)
        if pattern.regex is not None:
            raise RouteError(f"{path!r} must be a plain path, without parameters")
        index, _ = self.lookup(method.encode("ascii"), pattern.raw)
        if index != NOT_FOUND_INDEX:
            owner = self.labels[index][1]
            raise RouteError(
                f"{path!r} is already served by the route {owner!r}; choose another path "
                "(e.g. /_cyclehttp/metrics) or rename the route"
            )
        entry = PathEntry(pattern)
        entry.methods[method.encode("ascii")] = self._add(target, method, path)
        if method == "GET":
            entry.methods[b"HEAD"] = entry.methods[b"GET"]
        entry.allow = ", ".join(sorted(m.decode("ascii") for m in entry.methods))
        entry.not_allowed = self._add(self._error_target(405, entry.allow), OTHER_METHOD, path)
        self.exact[pattern.raw] = entry
        self._render_server_options()

    def lookup(self, method: bytes, path: bytes) -> tuple[int, dict[str, Any] | None]:
        """The target index for a request, and the path parameters of a dynamic route.

        ``path`` is the raw (percent-encoded) path without the query string.
        """
        entry = self.exact.get(path)
        if entry is not None:
            return entry.methods.get(method, entry.not_allowed), None
        return self.lookup_pattern(method, path)

    def lookup_pattern(self, method: bytes, path: bytes) -> tuple[int, dict[str, Any] | None]:
        """``lookup`` without the exact-path table: the connection has looked there already."""
        escaped = _PERCENT_SIGN in path  # an int: much cheaper than a bytes needle
        if escaped:
            # An escaped slash stays inside its segment, as for dynamic routes: "/a%2Fb" is
            # not the exact path "/a/b" (no exact path holds one: "%" itself is encoded).
            if _ESCAPED_SLASH.search(path) is None:
                decoded = _encode_path(unquote(path.decode("ascii", "replace")))
                entry = self.exact.get(decoded)
                if entry is not None:
                    return entry.methods.get(method, entry.not_allowed), None
            path = _normalize_path(path)
        matched: list[PathEntry] | None = None
        entries = self.dynamic
        if self._index is not None:  # many routes: only those the segment index leaves are tried
            positions = self._index.candidates(path)
            if not positions:
                return NOT_FOUND_INDEX, None
            entries = [entries[position] for position in positions]
        for entry in entries:
            assert entry.regex is not None
            match = entry.regex.fullmatch(path)
            if match is None:
                continue
            params = _convert(entry, match.groups(), escaped)
            if params is None:
                continue
            index = entry.methods.get(method)
            if index is not None:
                return index, params
            if matched is None:
                matched = []
            matched.append(entry)
        if matched is None:
            return NOT_FOUND_INDEX, None
        if len(matched) == 1:
            return matched[0].not_allowed, None
        return self._union_405(matched), None

    def _union_405(self, entries: list[PathEntry]) -> int:
        methods = sorted({m.decode("ascii") for e in entries for m in e.methods})
        allow = ", ".join(methods)
        index = self._combined_405.get(allow)
        if index is None:
            route = " | ".join(entry.pattern for entry in entries)
            index = self._combined_405[allow] = self._add(self._error_target(405, allow), OTHER_METHOD, route)
        return index

    def static_responses(self) -> list[PrerenderedResponse]:
        """Every pre-rendered response, for the once-a-second Date refresh."""
        return [t for t in self.targets if isinstance(t, PrerenderedResponse)]

    def request_counts(self) -> list[tuple[tuple[str, str], list[int]]]:
        """``((method, route), responses by status digit)`` for every target, in index order.

        Targets that share a label (HEAD served by GET) are one entry.
        """
        merged: dict[tuple[str, str], list[int]] = {}
        for label, target in zip(self.labels, self.targets, strict=True):
            counts = merged.setdefault(label, [0] * 6)
            if isinstance(target, PrerenderedResponse):
                target.count(counts)  # its own answers, its 304s and its encoded variants'
            else:
                for digit, count in enumerate(target.responses):
                    counts[digit] += count
        return list(merged.items())

    def reset_counts(self) -> None:
        """Zero the response counters of every target."""
        for target in self.targets:
            if isinstance(target, PrerenderedResponse):
                target.reset_counts()
            else:
                target.responses[:] = [0] * 6

    def refresh(self) -> None:
        """Re-render every pre-rendered buffer with the current Date."""
        for target in self.targets:
            if isinstance(target, PrerenderedResponse):
                target.refresh()


def _convert(entry: PathEntry, groups: tuple[bytes, ...], escaped: bool) -> dict[str, Any] | None:
    """Converted path parameters, or None when a converter refuses its text (then: no match).

    ``escaped``: the path holds percent-escapes, so each value is unquoted first.
    """
    params: dict[str, Any] = {}
    try:
        for i, (name, convert) in enumerate(entry.converters):
            text = groups[i].decode("ascii")
            params[name] = convert(unquote(text) if escaped else text)
    except ValueError:
        return None
    return params
