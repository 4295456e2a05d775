"""The Request a handler receives: small, with everything costly built lazily.

The protocol fills in raw bytes only (method, path, query string, header
pairs, body). Decoding, the header mapping, the query mapping and the peer
address are built the first time a handler asks for them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from .errors import HTTPError
from .proxy import ProxyContext

if TYPE_CHECKING:
    import asyncio

    from .app import App

__all__ = ["Headers", "QueryParams", "Request"]

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


class QueryParams(_MultiMapping):
    """The query string as a multi-value mapping (form-urlencoded rules: ``+`` is a space)."""

    __slots__ = ()

    def __init__(self, query_string: bytes | str) -> None:
        if isinstance(query_string, bytes):
            query_string = query_string.decode("latin-1")
        self._build(parse_qsl(query_string, keep_blank_values=True), fold=False)


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
    )

    _scheme: str
    _host: str

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
        self.body = body
        self.params: dict[str, Any] = params if params is not None else {}
        self.http_version = http_version
        self._transport = transport
        self._path: str | None = None
        self._query: QueryParams | None = None
        self._headers: Headers | None = None
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
            self._query = QueryParams(self.query_string)
        return self._query

    @property
    def headers(self) -> Headers:
        """The request headers, case-insensitive; ``headers.getall(name)`` for repeats."""
        if self._headers is None:
            self._headers = Headers(self.raw_headers)
        return self._headers

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
        """The body parsed as JSON; invalid JSON answers 400 with the reason."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPError(400, f"Invalid JSON body: {exc}") from None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.raw_path.decode('ascii', 'replace')}>"
