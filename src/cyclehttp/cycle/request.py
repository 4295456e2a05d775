"""The Request a handler receives: small, with everything costly built lazily.

The protocol fills in raw bytes only (method, path, query string, header
pairs, body). Decoding, the header mapping, the query mapping and the peer
address are built the first time a handler asks for them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, unquote_to_bytes

from cyclehttp.config import DEFAULT_MAX_QUERY_PAIRS
from cyclehttp.cycle.cookies import MAX_COOKIE_PAIRS, parse_cookie_header
from cyclehttp.cycle.proxy import ProxyContext
from cyclehttp.cycle.response import load_orjson
from cyclehttp.errors import HTTPError

if TYPE_CHECKING:
    import asyncio

    from cyclehttp.app.application import App
    from cyclehttp.cycle.forms import FormData

__all__ = ["MAX_QUERY_PAIRS", "Headers", "QueryParams", "Request"]

# The default of Config.max_query_pairs (why 1000: see config.py).
MAX_QUERY_PAIRS: Final = DEFAULT_MAX_QUERY_PAIRS

# RFC 3986 section 2.1: pct-encoded = "%" HEXDIG HEXDIG; a "%" not followed by two hex digits is invalid.
_BAD_PERCENT_RE: Final = re.compile(rb"%(?![0-9A-Fa-f]{2})")


_orjson: Any = load_orjson()
"""The optional ``orjson`` module (``pip install 'cyclehttp[json]'``), or None: stdlib ``json``."""

# orjson parses integers beyond 64 bits as floats where the stdlib keeps them exact:
# a body with a run of 19+ digits (anywhere, strings too: that only costs speed) goes to the stdlib.
_LONG_DIGITS_RE: Final = re.compile(rb"[0-9]{19}")


def parse_json(body: bytes) -> Any:
    """``body`` as JSON: orjson when installed and it gives the stdlib's answer, else ``json.loads``.

    orjson refuses what the stdlib accepts (NaN, Infinity, lone surrogate escapes,
    UTF-16/32 bodies, numbers beyond a double): those are parsed again by the
    stdlib, so both paths accept the same bodies and give the same values.
    Raises ``ValueError`` (stdlib message, with line and column) or ``RecursionError``.
    """
    if _orjson is not None and _LONG_DIGITS_RE.search(body) is None:
        try:
            return _orjson.loads(body)
        except ValueError:
            pass
    return json.loads(body)


_METHOD_NAMES = {
    m.encode("ascii"): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
}


class _MultiMapping(Mapping[str, str]):
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


class Headers(_MultiMapping):
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


class QueryParams(_MultiMapping):
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


class Request:
    """One HTTP request, as a handler sees it.

    ``method``, ``params`` and ``body`` are plain attributes; ``path``,
    ``query``, ``headers``, ``client``, ``scheme`` and ``host`` are computed
    on first use. ``transport`` is the connection's transport, or a
    ``ProxyContext`` standing in for it when the server honours proxy headers.
    ``app`` is the App being served (``request.app.state``).
    """

    __slots__ = (
        "_client",
        "_cookies",
        "_form",
        "_headers",
        "_host",
        "_path",
        "_query",
        "_scheme",
        "_transport",
        "body",
        "http_version",
        "method",
        "params",
        "query_string",
        "raw_headers",
        "raw_path",
        "raw_trailers",
    )

    _scheme: str
    _host: str
    _form: FormData  # set by form() only

    def __init__(
        self,
        method: bytes,
        raw_path: bytes,
        query_string: bytes,
        raw_headers: list[tuple[bytes, bytes]],
        body: bytes,
        params: dict[str, Any] | None,
        http_version: str,
        transport: asyncio.BaseTransport | ProxyContext | None,
    ) -> None:
        self.method: str = _METHOD_NAMES.get(method) or method.decode("ascii")
        self.raw_path = raw_path
        self.query_string = query_string
        self.raw_headers = raw_headers
        self.raw_trailers: list[tuple[bytes, bytes]] | None = None
        self.body = body
        self.params: dict[str, Any] = params if params is not None else {}
        self.http_version = http_version
        self._transport = transport
        self._path: str | None = None
        self._query: QueryParams | None = None
        self._headers: Headers | None = None
        self._cookies: dict[str, str] | None = None
        # False: client, scheme and host are not resolved yet (_resolve sets the three together).
        self._client: tuple[str, int] | bool | None = False

    @property
    def path(self) -> str:
        """The request path, percent-decoded (UTF-8)."""
        if self._path is None:
            self._path = unquote(self.raw_path.decode("ascii", "replace"))
        return self._path

    @property
    def query(self) -> QueryParams:
        """The parsed query string; ``query.getall(name)`` for repeated keys."""
        if self._query is None:
            self._query = QueryParams(self.query_string, self._limit("max_query_pairs", MAX_QUERY_PAIRS))
        return self._query

    @property
    def cookies(self) -> dict[str, str]:
        """The request's cookies, name -> value, from its ``Cookie`` header(s).

        Tolerant of real browser jars (quoted values, ``=`` in values, empty
        values; invalid pairs are skipped); the first value of a repeated name
        wins; at most ``max_cookie_pairs`` (a server option, 200) pairs are read, the rest
        ignored. See ``cyclehttp.cookies.parse_cookie_header``.
        """
        if self._cookies is None:
            values = [
                v.decode("latin-1") for n, v in self.raw_headers if len(n) == 6 and n.lower() == b"cookie"
            ]
            limit = self._limit("max_cookie_pairs", MAX_COOKIE_PAIRS)
            self._cookies = parse_cookie_header(values, limit) if values else {}
        return self._cookies

    @property
    def headers(self) -> Headers:
        """The request headers, case-insensitive; ``headers.getall(name)`` for repeats."""
        if self._headers is None:
            self._headers = Headers(self.raw_headers)
        return self._headers

    @property
    def trailers(self) -> Headers:
        """The trailer fields of a chunked body (``Headers``; empty without any).

        Trailers are sent after the body, so they are kept apart from
        ``headers`` (RFC 9110 section 6.5.2) and the server never acts on them:
        they cannot set the Host, the cookies, the framing or, behind a proxy,
        the client's address. Read them only as what the client added at the end.
        """
        return Headers(self.raw_trailers or [])

    @property
    def client(self) -> tuple[str, int] | None:
        """The client's (host, port), or None when the socket has no address (Unix sockets).

        The socket's peer; behind a trusted proxy with ``proxy_headers`` on, the
        client the proxy names (port 0 when it names none).
        """
        if self._client is False:
            self._resolve()
        return self._client  # type: ignore[return-value]

    @property
    def scheme(self) -> str:
        """``"http"``, or what a trusted proxy's ``X-Forwarded-Proto``/``Forwarded`` says (``"https"``)."""
        if self._client is False:
            self._resolve()
        return self._scheme

    @property
    def host(self) -> str:
        """The host the client asked for: the ``Host`` header (``""`` without one), or a trusted proxy's
        ``X-Forwarded-Host``/``Forwarded`` host."""
        if self._client is False:
            self._resolve()
        return self._host

    @property
    def app(self) -> App:
        """The App serving this request, e.g. for ``request.app.state``.

        Found on use through the connection (transport -> protocol -> server
        state), so a request that never asks costs nothing more. Raises
        ``RuntimeError`` for a Request no server made (one built by hand).
        """
        source = self._transport
        protocol = source.get_protocol() if source is not None else None
        app: App | None = getattr(getattr(protocol, "_server", None), "app", None)
        if app is None:
            raise RuntimeError("this Request was not made by a cyclehttp Server, so it has no app")
        return app

    def _limit(self, name: str, default: int) -> int:
        """A Config limit of the server that made this request (``default`` for one built by hand)."""
        source = self._transport
        protocol = source.get_protocol() if source is not None else None
        config = getattr(getattr(protocol, "_server", None), "config", None)
        return int(getattr(config, name, default))

    def _resolve(self) -> None:
        source = self._transport
        if type(source) is ProxyContext:
            self._client, self._scheme, self._host = source.resolve(self.raw_headers)
            return
        peer = source.get_extra_info("peername") if source is not None else None
        self._client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self._scheme = "http"
        self._host = ""
        for name, value in self.raw_headers:
            if len(name) == 4 and name.lower() == b"host":
                self._host = value.decode("latin-1").strip()
                break

    def _log_client(self, peer: str) -> str:
        """The access log's client field: ``peer``, or the client a trusted proxy named."""
        if type(self._transport) is not ProxyContext:
            return peer
        client = self.client
        return client[0] if client is not None else "-"

    def text(self, encoding: str = "utf-8") -> str:
        """The body decoded as text; 400 when it is not valid in ``encoding``."""
        try:
            return self.body.decode(encoding)
        except UnicodeDecodeError as exc:
            raise HTTPError(400, f"Request body is not valid {encoding}: {exc}") from None

    def json(self) -> Any:
        """The body parsed as JSON (with orjson when it is installed).

        415 when the request has a ``Content-Type`` that is not
        ``application/json`` or ``application/*+json`` (a request without one
        is accepted: curl and many scripts send none); 400 for invalid JSON,
        with the line and column, or nesting too deep to parse.
        """
        for name, value in self.raw_headers:
            if len(name) == 12 and name.lower() == b"content-type":
                media = value.partition(b";")[0].strip(b" \t").lower()
                if media != b"application/json" and not (
                    media.startswith(b"application/") and media.endswith(b"+json")
                ):
                    raise HTTPError(
                        415,
                        f"Expected a JSON body (Content-Type: application/json), "
                        f"got Content-Type: {value.decode('latin-1')[:100]}",
                    )
                break
        try:
            return parse_json(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPError(400, f"Invalid JSON body: {exc}") from None
        except RecursionError:
            raise HTTPError(400, "Invalid JSON body: nested too deeply") from None

    async def form(self) -> FormData:
        """The body as an HTML form: text fields (``get``, ``getall``) and ``files`` (``UploadFile``).

        ``application/x-www-form-urlencoded`` or ``multipart/form-data`` (any
        other Content-Type: 415); malformed input is a 400, a form over
        ``max_form_fields``, ``max_form_parts`` or ``max_form_field_size`` a
        413 (see cyclehttp.forms). Parsed once; on a ``stream_body`` route the
        body is read as it arrives. Uploaded files are closed when the request ends.
        """
        try:
            return self._form
        except AttributeError:  # not set in __init__: a request that never asks costs nothing
            from cyclehttp.cycle.forms import read_form

            self._form = await read_form(self)
            return self._form

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.raw_path.decode('ascii', 'replace')}>"
