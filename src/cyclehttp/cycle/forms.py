"""HTML form bodies: ``await request.form()`` gives a ``FormData``.

Two encodings are read. ``application/x-www-form-urlencoded`` is parsed here
(the WHATWG form rules: ``+`` is a space, ``%XX`` is a byte, UTF-8), strictly:
a ``%`` not followed by two hex digits is a 400, not silently kept.
``multipart/form-data`` is parsed by python-multipart, the streaming parser
Starlette uses; a hand-written multipart parser is where frameworks get their
CVEs (unbounded part headers, quadratic boundary search), so we do not keep one.

Every input is bounded: the whole body by ``max_body_size`` (the protocol
enforces it, buffered or streamed), the number of fields by
``max_form_fields``, of parts by ``max_form_parts``, a non-file field's bytes
by ``max_form_field_size``, a part's header block by ``MAX_PART_HEADER_SIZE``.
Uploaded files are kept in memory up to ``SPOOL_SIZE`` bytes, then on disk
(``tempfile.SpooledTemporaryFile``); on a ``stream_body`` route the body is fed
to the parser chunk by chunk, so a large upload never sits in memory.

Statuses, raised as ``HTTPError`` from ``form()``: 415 for a Content-Type that
is neither form encoding; 400 for malformed input (no or bad boundary, broken
or truncated multipart, invalid percent-encoding, invalid UTF-8, a field name
with control characters, a part without a name); 413 for a limit exceeded
(too many fields or parts, a field or part header too large, the body over
``max_body_size``). 422 is not used: each failure is syntax or size.

The temporary files are closed (and so removed) when the task that called
``form()`` ends: the handler's task, after its answer is handed to the
connection. Nothing is registered for a request that never calls ``form()``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Mapping
from tempfile import SpooledTemporaryFile
from typing import IO, Any, Final, Protocol
from urllib.parse import unquote_to_bytes

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from cyclehttp.compile_hints import mypyc_attr
from cyclehttp.config import Config
from cyclehttp.cycle.mappings import Headers, MultiMapping
from cyclehttp.errors import HTTPError

__all__ = ["MAX_PART_HEADER_SIZE", "SPOOL_SIZE", "FormData", "FormSource", "UploadFile", "read_form"]

# An upload up to this size stays in memory, beyond it goes to a temporary file
# (Starlette's UploadFile spools at 1 MiB too).
SPOOL_SIZE: Final = 1024 * 1024

# The header block of one multipart part (Content-Disposition, Content-Type):
# browsers send ~200 bytes. Below python-multipart's own per-header cap (4224
# bytes in recent releases, a 400 there), so a long header is a 413 here.
MAX_PART_HEADER_SIZE: Final = 4 * 1024

# RFC 2046 section 5.1.1: a boundary is 1 to 70 characters of this set.
_BOUNDARY = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _AtDebug(logging.LoggerAdapter):  # type: ignore[type-arg]
    """python-multipart logs a WARNING for every malformed body it sees: scanner noise.

    Malformed input is the client's mistake and already answered 400, so its
    messages go to ``cyclehttp.error`` at debug level, like the server's own
    rejections.
    """

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(logging.DEBUG, msg, *args, **kwargs)


_PARSER_LOG: Final = _AtDebug(logging.getLogger("cyclehttp.error"), {})


class UploadFile:
    """One uploaded file: ``filename``, ``content_type``, the part's ``headers``, ``size``
    and ``file`` (a binary file object: in memory up to ``SPOOL_SIZE``, then on disk).

    ``read()`` and ``seek()`` work on ``file``; the server closes it when the
    request ends, ``close()`` does it sooner.
    """

    __slots__ = ("content_type", "file", "filename", "headers", "size")

    def __init__(self, filename: str, content_type: str, headers: Headers) -> None:
        self.filename = filename
        self.content_type = content_type
        self.headers = headers
        self.file: IO[bytes] = SpooledTemporaryFile(max_size=SPOOL_SIZE)  # noqa: SIM115 (closed by close())
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        return self.file.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.file.seek(offset, whence)

    def close(self) -> None:
        self.file.close()

    def __repr__(self) -> str:
        return f"<UploadFile {self.filename!r} {self.content_type!r} {self.size} bytes>"


@mypyc_attr(allow_interpreted_subclasses=True)
class FormData(MultiMapping):
    """The form's text fields (``form["name"]``, ``get``, ``getall``) and ``files``.

    ``files`` maps a field name to its ``UploadFile``s, in the order received.
    ``close()`` closes every file (the server does it when the request ends).
    """

    __slots__ = ("files",)

    def __init__(
        self, items: list[tuple[str, str]], files: dict[str, list[UploadFile]] | None = None
    ) -> None:
        self._build(items, fold=False)
        self.files: dict[str, list[UploadFile]] = files if files is not None else {}

    def close(self) -> None:
        for uploads in self.files.values():
            for upload in uploads:
                upload.close()


def _field_name(raw: bytes, what: str) -> str:
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(400, f"{what} is not valid UTF-8") from None
    if _CONTROL.search(name):
        raise HTTPError(400, f"{what} {name!r} contains control characters") from None
    return name


def _decode(raw: bytes, what: str) -> str:
    if _BAD_PERCENT.search(raw):
        raise HTTPError(400, f"invalid percent-encoding in {what}")
    try:
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(400, f"{what} is not valid UTF-8 after percent-decoding") from None


def parse_urlencoded(body: bytes, max_fields: int, max_field_size: int) -> FormData:
    """An ``application/x-www-form-urlencoded`` body as FormData (400/413 as described above)."""
    if body.count(b"&") >= max_fields:  # counted before splitting: no list of a million pairs
        pairs = [p for p in body.split(b"&") if p]
        if len(pairs) > max_fields:
            raise HTTPError(413, f"too many form fields (more than max_form_fields={max_fields})")
    items: list[tuple[str, str]] = []
    for pair in body.split(b"&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        if len(raw_value) > max_field_size:
            raise HTTPError(413, f"form field larger than max_form_field_size={max_field_size} bytes")
        name = _decode(raw_name, "a form field name")
        if _CONTROL.search(name):
            raise HTTPError(400, f"form field name {name!r} contains control characters")
        items.append((name, _decode(raw_value, f"form field {name!r}")))
    return FormData(items)


class _MultipartReader:
    """Callbacks for python-multipart's MultipartParser that build a FormData under the limits."""

    def __init__(self, boundary: bytes, config: Config) -> None:
        self.max_fields = config.max_form_fields
        self.max_parts = config.max_form_parts
        self.max_field_size = config.max_form_field_size
        self.items: list[tuple[str, str]] = []
        self.files: dict[str, list[UploadFile]] = {}
        self.parts = 0
        self.fields = 0
        self.ended = False
        self._header_size = 0
        self._header_name = b""
        self._header_value = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._name = ""
        self._data: list[bytes] = []
        self._size = 0
        self._upload: UploadFile | None = None
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self.on_part_begin,
                "on_header_field": self.on_header_field,
                "on_header_value": self.on_header_value,
                "on_header_end": self.on_header_end,
                "on_headers_finished": self.on_headers_finished,
                "on_part_data": self.on_part_data,
                "on_part_end": self.on_part_end,
                "on_end": self.on_end,
            },
        )
        self.parser.logger = _PARSER_LOG  # type: ignore[assignment]

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            raise HTTPError(413, f"too many multipart parts (more than max_form_parts={self.max_parts})")
        self._header_size = 0
        self._headers = []
        self._header_name = b""
        self._header_value = b""
        self._data = []
        self._size = 0
        self._upload = None

    def _count_header(self, n: int) -> None:
        self._header_size += n
        if self._header_size > MAX_PART_HEADER_SIZE:
            raise HTTPError(413, f"multipart part headers larger than {MAX_PART_HEADER_SIZE} bytes")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers.append((self._header_name, self._header_value))
        self._header_name = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        headers = Headers(self._headers)
        disposition, options = parse_options_header(headers.get("content-disposition"))
        if disposition != b"form-data" or b"name" not in options:
            raise HTTPError(400, "multipart part without 'Content-Disposition: form-data; name=...'")
        self._name = _field_name(options[b"name"], "multipart field name")
        filename = options.get(b"filename")
        if filename is None:
            self.fields += 1
            if self.fields > self.max_fields:
                raise HTTPError(413, f"too many form fields (more than max_form_fields={self.max_fields})")
            return
        upload = UploadFile(
            filename.decode("utf-8", "replace"),
            headers.get("content-type", "application/octet-stream"),
            headers,
        )
        self.files.setdefault(self._name, []).append(upload)  # listed now: closed even if parsing fails
        self._upload = upload

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        upload = self._upload
        if upload is not None:
            upload.file.write(data[start:end])
            upload.size += end - start
            return
        self._size += end - start
        if self._size > self.max_field_size:
            raise HTTPError(
                413, f"form field {self._name!r} larger than max_form_field_size={self.max_field_size} bytes"
            )
        self._data.append(data[start:end])

    def on_part_end(self) -> None:
        upload = self._upload
        if upload is not None:
            upload.file.seek(0)
            return
        try:
            value = b"".join(self._data).decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPError(400, f"form field {self._name!r} is not valid UTF-8") from None
        self.items.append((self._name, value))

    def on_end(self) -> None:
        self.ended = True


class FormSource(Protocol):
    """What ``read_form`` reads: a ``Request`` (or a ``StreamingRequest``) is one."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def config(self) -> Config: ...

    def body_chunks(self) -> AsyncIterator[bytes]: ...


async def read_form(request: FormSource) -> FormData:
    """Parse ``request``'s body as a form (see the module's docstring); ``Request.form()`` calls it."""
    content_type, options = parse_options_header(request.headers.get("content-type"))
    config = request.config
    if content_type == b"application/x-www-form-urlencoded":
        body = b"".join([chunk async for chunk in request.body_chunks()])
        return parse_urlencoded(body, config.max_form_fields, config.max_form_field_size)
    if content_type != b"multipart/form-data":
        raise HTTPError(
            415,
            "request.form() needs Content-Type application/x-www-form-urlencoded or multipart/form-data, "
            f"got {content_type.decode('latin-1') or 'none'!r}",
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise HTTPError(400, "multipart/form-data without a boundary parameter")
    if _BOUNDARY.fullmatch(boundary) is None:
        raise HTTPError(400, "invalid multipart boundary (RFC 2046: 1 to 70 characters)")
    reader = _MultipartReader(boundary, config)
    received = FormData([], reader.files)  # closes the files received so far if the body fails
    try:
        async for chunk in request.body_chunks():
            reader.parser.write(chunk)
        reader.parser.finalize()
        if not reader.ended:
            raise HTTPError(400, "multipart body truncated: no closing boundary")
    except MultipartParseError as exc:
        received.close()
        raise HTTPError(400, f"malformed multipart body: {exc}") from None
    except BaseException:
        received.close()
        raise
    form = FormData(reader.items, reader.files)
    if form.files:
        task = asyncio.current_task()
        if task is not None:  # outside a task (never in a server) the caller closes it
            task.add_done_callback(lambda _task: form.close())
    return form
