"""``Response``: status, headers and a body, validated when it is built.

A ``Response`` keeps its headers as a ready byte block (``cycle.wire``); a
handler's answer is rendered from it per request, a route's target once
(``cycle.prerendered``). ``error_response`` is the server's own answer for an
error status, plain text or JSON as the request's ``Accept`` prefers.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

from cyclehttp.compile_hints import mypyc_attr
from cyclehttp.cycle.cookies import set_cookie_header
from cyclehttp.cycle.files import FileResponse
from cyclehttp.cycle.negotiation import prefers_json
from cyclehttp.cycle.response_stream import StreamingResponse
from cyclehttp.cycle.wire import (
    APPLICATION_JSON,
    BYTES_BLOCK,
    JSON_BLOCK,
    OCTET_STREAM,
    STATUS_LINES,
    TEXT_BLOCK,
    TEXT_HTML,
    TEXT_PLAIN,
    HeadersLike,
    has_no_body,
    header_items,
    json_bytes,
    render,
    validate_header,
)

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterable, Iterable
    from datetime import datetime

__all__ = ["REDIRECT_STATUSES", "Response", "error_response", "render_result"]

REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})


@mypyc_attr(allow_interpreted_subclasses=True)
class Response:
    """An HTTP response: status, headers and a body.

    Build one per request in a handler, or give one as a route's target to
    have it pre-rendered once and served without running any code.
    ``body`` may be ``bytes`` or ``str`` (encoded as UTF-8). Header names and
    values are validated here, so a CR/LF injection fails where it is written.
    """

    __slots__ = ("_frozen", "_header_block", "body", "content_type", "headers", "status")

    def __init__(
        self,
        body: object = b"",
        status: object = 200,
        headers: HeadersLike | None = None,
        content_type: str | None = None,
    ) -> None:
        # body and status are checked here, with the messages below: ``object`` so that a compiled
        # build does not refuse them first with a bare TypeError (bytes, bytearray, memoryview, str).
        data: bytes
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode("utf-8")
            if content_type is None:
                content_type = TEXT_PLAIN
        elif isinstance(body, (bytearray, memoryview)):
            data = bytes(body)
        else:
            raise TypeError(
                f"Response body must be bytes or str, got {type(body).__name__}; use Response.json() for data"
            )
        if not isinstance(status, int) or status not in STATUS_LINES:
            raise ValueError(f"unknown HTTP status {status!r}; use a registered status code")
        if has_no_body(status) and data:
            raise ValueError(f"a {status} response cannot have a body")
        items = header_items(headers)
        # A Content-Type among the headers wins over the default or the argument:
        # one header, never two.
        header_type = next((value for name, value in items if name.lower() == "content-type"), None)
        if header_type is not None:
            content_type = header_type
        elif content_type is not None:
            items.insert(0, ("Content-Type", content_type))
        for name, value in items:
            validate_header(name, value)
        self.status: int = status
        self.body: bytes = data
        self.content_type = content_type
        self.headers: tuple[tuple[str, str], ...] = tuple(items)
        self._header_block = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in items)
        self._frozen = False

    @classmethod
    def text(cls, text: str, status: object = 200, headers: HeadersLike | None = None) -> Response:
        """A ``text/plain; charset=utf-8`` response."""
        return cls(text.encode("utf-8"), status, headers, TEXT_PLAIN)

    @classmethod
    def html(cls, html: str, status: object = 200, headers: HeadersLike | None = None) -> Response:
        """A ``text/html; charset=utf-8`` response."""
        return cls(html.encode("utf-8"), status, headers, TEXT_HTML)

    @classmethod
    def json(cls, value: Any, status: object = 200, headers: HeadersLike | None = None) -> Response:
        """An ``application/json`` response with compact UTF-8 JSON."""
        return cls(json_bytes(value), status, headers, APPLICATION_JSON)

    @staticmethod
    def stream(
        content: AsyncIterable[bytes | str] | Iterable[bytes | str],
        status: object = 200,
        headers: HeadersLike | None = None,
        content_type: str | None = OCTET_STREAM,
    ) -> StreamingResponse:
        """A body sent while ``content`` produces it (an async or sync iterator of bytes/str).

        Chunked on HTTP/1.1, close-delimited on HTTP/1.0; each send waits while
        the client is not reading. See ``cyclehttp.streaming.StreamingResponse``.
        """
        return StreamingResponse(content, status, headers, content_type)

    @staticmethod
    def file(
        path: str | os.PathLike[str],
        *,
        content_type: str | None = None,
        headers: HeadersLike | None = None,
        filename: str | None = None,
    ) -> FileResponse:
        """The file at ``path``, with ETag/Last-Modified, 304s and byte ranges.

        Stats the file now: a missing one raises ``FileNotFoundError`` here, in the
        handler, which decides what that means (e.g. ``raise HTTPError(404)``).
        ``filename`` adds ``Content-Disposition: attachment``. See ``cyclehttp.files``.
        """
        return FileResponse(path, content_type=content_type, headers=headers, filename=filename)

    @classmethod
    def redirect(cls, url: object, status: object = 307, headers: HeadersLike | None = None) -> Response:
        """A redirect to ``url`` (absolute or relative) with an empty body.

        ``status`` is 301, 302, 303, 307 (the default: the method and body are
        kept) or 308. ``url`` must be latin-1 without CR, LF or NUL:
        percent-encode anything else (``urllib.parse.quote(url, safe=":/?#[]@!$&'()*+,;=%")``).
        """
        if status not in REDIRECT_STATUSES:
            raise ValueError(f"redirect status must be 301, 302, 303, 307 or 308, got {status!r}")
        if not isinstance(url, str) or not url:
            raise ValueError(f"redirect url must be a non-empty str, got {url!r}")
        return cls(b"", status, [("Location", url), *header_items(headers)])

    def with_headers(self, headers: HeadersLike) -> Response:
        """A copy with ``headers`` added after this one's (e.g. in an ``after_request`` hook)."""
        return Response(self.body, self.status, [*self.headers, *header_items(headers)])

    def freeze(self) -> Response:
        """Refuse every later change to this response (``set_cookie``, ``delete_cookie``); returns it.

        A response served to many requests must not change under them: a route's
        ``Response`` target is frozen when it is declared (it is pre-rendered then,
        so a later change would silently not be sent). Freeze a module-level
        response that handlers return as it is, so that an ``after_request`` hook
        cannot add one client's cookie to everyone's answer.
        """
        self._frozen = True
        return self

    @property
    def header_block(self) -> bytes:
        """The validated header lines as they go on the wire (``Name: value\r\n`` each)."""
        return self._header_block

    @property
    def frozen(self) -> bool:
        """True once ``freeze()`` was called (e.g. the response is a static route's target)."""
        return self._frozen

    def _add_header(self, name: str, value: str, method: str) -> None:
        if self._frozen:
            raise RuntimeError(
                f"response.{method}() cannot change this Response: it is shared by many requests "
                "(a route's pre-rendered target, or frozen with freeze()). Use "
                f"response.{'with_cookie' if method == 'set_cookie' else 'without_cookie'}(...) for a "
                "changed copy, or build the Response in a handler"
            )
        validate_header(name, value)
        self.headers = (*self.headers, (name, value))
        self._header_block += f"{name}: {value}\r\n".encode("latin-1")

    def set_cookie(
        self,
        name: object,
        value: object,
        *,
        max_age: int | None = None,
        expires: datetime | int | float | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: object = "lax",
        partitioned: bool = False,
    ) -> Response:
        """Add a ``Set-Cookie`` header to this response, and return it.

        Both habits work: ``response.set_cookie("sid", token); return response``
        (Flask, Starlette) and ``return Response.text("hi").set_cookie("sid", token)``.
        Call it again for more cookies (one ``Set-Cookie`` each). The name and
        value are validated here (``ValueError``): see ``cookies.set_cookie_header``.
        A frozen response (a route's pre-rendered target) raises ``RuntimeError``:
        ``with_cookie`` gives a changed copy instead.
        """
        header = set_cookie_header(
            name,
            value,
            max_age=max_age,
            expires=expires,
            path=path,
            domain=domain,
            secure=secure,
            httponly=httponly,
            samesite=samesite,
            partitioned=partitioned,
        )
        self._add_header("Set-Cookie", header, "set_cookie")
        return self

    def delete_cookie(
        self, name: object, *, path: str | None = "/", domain: str | None = None, secure: bool = False
    ) -> Response:
        """Tell the client to drop cookie ``name`` (Max-Age=0, Expires in 1970); returns this response.

        ``path`` and ``domain`` must be those the cookie was set with. A frozen
        response raises ``RuntimeError``: ``without_cookie`` gives a changed copy.
        """
        self._add_header("Set-Cookie", _deletion_header(name, path, domain, secure), "delete_cookie")
        return self

    def with_cookie(
        self,
        name: object,
        value: object,
        *,
        max_age: int | None = None,
        expires: datetime | int | float | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: object = "lax",
        partitioned: bool = False,
    ) -> Response:
        """A copy of this response with a ``Set-Cookie`` header added; this one is not changed.

        For a shared (frozen) response: ``return LOGIN_PAGE.with_cookie("sid", token)``.
        """
        header = set_cookie_header(
            name,
            value,
            max_age=max_age,
            expires=expires,
            path=path,
            domain=domain,
            secure=secure,
            httponly=httponly,
            samesite=samesite,
            partitioned=partitioned,
        )
        return self.with_headers([("Set-Cookie", header)])

    def without_cookie(
        self, name: object, *, path: str | None = "/", domain: str | None = None, secure: bool = False
    ) -> Response:
        """A copy of this response that tells the client to drop cookie ``name``; this one is not changed."""
        return self.with_headers([("Set-Cookie", _deletion_header(name, path, domain, secure))])

    def render(self, mode: int, head: bool) -> bytes:
        """The whole message for one request (``head``: without the body)."""
        return render(self.status, self._header_block, self.body, mode, head)

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


def _deletion_header(name: object, path: str | None, domain: str | None, secure: bool) -> str:
    """The ``Set-Cookie`` value that removes cookie ``name`` (the path and domain it was set with)."""
    header = set_cookie_header(name, "", path=path, domain=domain, secure=secure, samesite=None, max_age=0)
    return header + "; Expires=Thu, 01 Jan 1970 00:00:00 GMT"


def render_result(result: object, mode: int, head: bool) -> bytes:
    """Turn what a handler returned into wire bytes.

    ``Response`` as is; ``dict``/``list`` as JSON; ``str`` as text/plain;
    ``bytes`` as application/octet-stream. Anything else is a TypeError that
    names the accepted types (the caller answers 500).
    """
    kind = result.__class__  # the exact types first: no isinstance chain for the common results
    if kind is dict or kind is list:
        return render(200, JSON_BLOCK, json_bytes(result), mode, head)
    if kind is bytes:
        return render(200, BYTES_BLOCK, result, mode, head)  # type: ignore[arg-type]  # it is bytes
    if isinstance(result, Response):
        return render(result.status, result._header_block, result.body, mode, head)
    if isinstance(result, (dict, list)):
        return render(200, JSON_BLOCK, json_bytes(result), mode, head)
    if isinstance(result, str):
        return render(200, TEXT_BLOCK, result.encode("utf-8"), mode, head)
    if isinstance(result, (bytes, bytearray, memoryview)):
        return render(200, BYTES_BLOCK, bytes(result), mode, head)
    raise TypeError(f"handler returned {type(result).__name__}; return a Response, bytes, str, dict or list")


def error_response(
    status: int,
    detail: str | None = None,
    headers: HeadersLike | None = None,
    *,
    accept: str | None = None,
    trace: str | None = None,
) -> Response:
    """The server's own answer for an error status: the detail (or the status phrase) as plain text.

    As JSON (``{"error": ..., "status": ...}``) when ``accept`` (the request's
    ``Accept``) prefers ``application/json``; ``trace`` (``debug``) is appended
    to the text, or a ``traceback`` member of the JSON.
    """
    text = detail if detail is not None else HTTPStatus(status).phrase
    if prefers_json(accept):
        body: dict[str, Any] = {"error": text, "status": status}
        if trace is not None:
            body["traceback"] = trace
        return Response(json_bytes(body), status, headers, APPLICATION_JSON)
    if trace is not None:
        text = f"{text}\n\n{trace}"
    return Response(text.encode("utf-8"), status, headers, TEXT_PLAIN)
