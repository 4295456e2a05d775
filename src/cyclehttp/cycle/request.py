"""The Request a handler receives: small, with everything costly built lazily.

The protocol fills in raw bytes only (method, path, query string, header
pairs, body). Decoding, the header mapping, the query mapping and the peer
address are built the first time a handler asks for them.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

from cyclehttp.compile_hints import mypyc_attr
from cyclehttp.config import DEFAULTS, Config
from cyclehttp.cycle.cookies import parse_cookie_header
from cyclehttp.cycle.forms import FormData, read_form
from cyclehttp.cycle.mappings import Headers, QueryParams
from cyclehttp.cycle.wire import load_orjson
from cyclehttp.errors import HTTPError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from cyclehttp.cycle.context import ConnectionContext
    from cyclehttp.types import ServedApp

__all__ = ["Headers", "OneChunk", "QueryParams", "Request", "parse_json"]


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


class OneChunk:
    """An async iterator of one chunk: a body that is all here (``Request.body_chunks``)."""

    __slots__ = ("_chunk",)

    def __init__(self, chunk: bytes) -> None:
        self._chunk: bytes | None = chunk

    def __aiter__(self) -> OneChunk:
        return self

    async def __anext__(self) -> bytes:
        chunk = self._chunk
        if chunk is None:
            raise StopAsyncIteration
        self._chunk = None
        return chunk


@mypyc_attr(allow_interpreted_subclasses=True)
class Request:
    """One HTTP request, as a handler sees it.

    ``method``, ``params`` and ``body`` are plain attributes; ``path``,
    ``query``, ``headers``, ``client``, ``scheme`` and ``host`` are computed
    on first use. ``context`` is the connection's ``ConnectionContext`` (its
    transport, the server's config and app, whom to trust for proxy headers),
    None for a Request built by hand. ``app`` is the App being served
    (``request.app.state``).
    """

    __slots__ = (
        "_client",
        "_context",
        "_cookies",
        "_form",
        "_headers",
        "_host",
        "_path",
        "_query",
        "_scheme",
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
        context: ConnectionContext | None,
    ) -> None:
        self.method: str = _METHOD_NAMES.get(method) or method.decode("ascii")
        self.raw_path = raw_path
        self.query_string = query_string
        self.raw_headers = raw_headers
        self.raw_trailers: list[tuple[bytes, bytes]] | None = None
        self.body = body
        self.params: dict[str, Any] = params if params is not None else {}
        self.http_version = http_version
        self._context = context
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
            self._query = QueryParams(self.query_string, self.config.max_query_pairs)
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
            limit = self.config.max_cookie_pairs
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
    def app(self) -> ServedApp:
        """The App serving this request, e.g. for ``request.app.state``.

        Raises ``RuntimeError`` for a Request no server made (one built by hand).
        """
        context = self._context
        if context is None or context.app is None:
            raise RuntimeError("this Request was not made by a cyclehttp Server, so it has no app")
        return context.app

    @property
    def config(self) -> Config:
        """The server's ``Config`` (its limits); the defaults for a Request built by hand."""
        return DEFAULTS if self._context is None else self._context.config

    def _resolve(self) -> None:
        context = self._context
        if context is None:
            self._client, self._scheme, self._host = None, "http", ""
            for name, value in self.raw_headers:
                if len(name) == 4 and name.lower() == b"host":
                    self._host = value.decode("latin-1").strip()
                    break
            return
        self._client, self._scheme, self._host = context.resolve(self.raw_headers)

    def log_client(self, peer: str) -> str:
        """The access log's client field: ``peer``, or the client a trusted proxy named."""
        if self._context is None or self._context.trusted is None:
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
            self._form = await read_form(self)
            return self._form

    def body_chunks(self) -> AsyncIterator[bytes]:
        """The body as it can be read: here whole, in one chunk; on a ``stream_body`` route as it arrives."""
        return OneChunk(self.body)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.raw_path.decode('ascii', 'replace')}>"
