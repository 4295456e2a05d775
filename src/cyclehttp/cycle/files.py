"""File responses: ``Response.file(path)``, with validators, conditional requests and ranges.

When things happen
------------------
``Response.file(path)`` runs in the handler and *stats* the file: a missing file
raises ``FileNotFoundError`` (a directory ``IsADirectoryError``) right there, so
the handler decides what it means (``raise HTTPError(404)``, another file ...).
Uncaught, it is a 500 like any other handler error. The validators (``ETag``,
``Last-Modified``) and the length come from that stat.

The file is *opened* when its body is sent, inside the code that sends it, and
closed there in every case (sent, client gone, error, shutdown): an answer that
is never sent holds no descriptor. Should the file change between the stat and
the send (another inode, size or mtime), the answer fails: a 500 when nothing
was sent yet, an aborted connection otherwise, never a body that contradicts
its headers.

What is sent (``FileResponse.start``)
-------------------------------------
For GET and HEAD, RFC 9110 section 13.2.2 order: ``If-None-Match`` (weak
comparison, lists, ``*``) and, only without it, ``If-Modified-Since`` give 304.
Then, for GET only (section 14.2), ``Range``: one range (``a-b``, ``a-``,
``-n``) gives 206 with ``Content-Range``; a range that starts past the end 416
with ``Content-Range: bytes */size``; several ranges, or anything malformed, are
ignored (200 with the whole file, which the RFC allows; no multipart/byteranges).
``If-Range`` (an ETag, compared strongly, or the exact ``Last-Modified`` date)
that does not match also gives the whole file. ``If-Match`` and
``If-Unmodified-Since`` are not evaluated.

Bodies up to ``INLINE_LIMIT`` are read at once and written with their head; larger
ones go through ``BodySink.send_file`` (``loop.sendfile`` or paced reads).
"""

from __future__ import annotations

import errno
import mimetypes
import os
import re
import stat
import time
from email.utils import formatdate
from functools import partial
from typing import TYPE_CHECKING, BinaryIO, Final
from urllib.parse import quote

from cyclehttp.compile_hints import mypyc_attr
from cyclehttp.cycle.ranges import UNSATISFIABLE, http_date_seconds, if_range_matches, parse_range
from cyclehttp.cycle.response_stream import BodySender, BodySink, LongResponse, header_block, render_block
from cyclehttp.cycle.wire import CONNECTION_LINES, DATE, OCTET_STREAM, STATUS_LINES, HeadersLike

if TYPE_CHECKING:
    from cyclehttp.cycle.request import Request

__all__ = ["INLINE_LIMIT", "UNSATISFIABLE", "FileResponse", "guess_content_type", "parse_range"]

# Bodies up to this size are read in the handler's turn and written with the head
# (one write, no task); larger ones are sent by a task, paced by the client.
INLINE_LIMIT: Final = 64 * 1024

# What a compressed file is, when mimetypes names its encoding (x.tar.gz): serving it
# with Content-Encoding would make clients unpack a download they asked for packed.
_ENCODED_TYPES: Final = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}
_CHARSET_TYPES: Final = frozenset({"application/javascript", "application/x-javascript"})

_ENTITY_TAG: Final = re.compile(r'(?:W/)?("[^"]*")')


def guess_content_type(path: str) -> str:
    """The Content-Type for a file name: mimetypes, ``charset=utf-8`` on text, octet-stream otherwise."""
    kind, encoding = mimetypes.guess_type(path, strict=False)
    if encoding is not None:
        return _ENCODED_TYPES.get(encoding, OCTET_STREAM)
    if kind is None:
        return OCTET_STREAM
    if kind.startswith("text/") or kind in _CHARSET_TYPES:
        return f"{kind}; charset=utf-8"
    return kind


def _content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII ``filename`` and, when needed, RFC 8187 ``filename*``."""
    cleaned = "".join(c for c in filename if c >= " " and c != "\x7f")
    fallback = "".join(c if c.isascii() else "_" for c in cleaned).replace("\\", "_").replace('"', "_")
    value = f'attachment; filename="{fallback}"'
    if fallback != cleaned:
        value += f"; filename*=UTF-8''{quote(cleaned, safe='')}"
    return value


@mypyc_attr(allow_interpreted_subclasses=True)
class FileResponse(LongResponse):
    """A file on disk as a response: ``Response.file(path)``.

    ``ETag`` is strong, made of the file's mtime (ns), size and inode in hex;
    ``Last-Modified`` its mtime; ``Accept-Ranges: bytes``; ``Content-Disposition:
    attachment`` when ``filename`` is given. Headers passed in ``headers`` win over
    these (``Cache-Control`` is a common one). Conditional requests and ranges are
    answered as the module docstring says.
    """

    __slots__ = (
        "_cache_block",
        "_full_block",
        "_identity",
        "content_type",
        "etag",
        "headers",
        "last_modified",
        "mtime",
        "path",
        "size",
    )

    status = 200

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        content_type: str | None = None,
        headers: HeadersLike | None = None,
        filename: str | None = None,
    ) -> None:
        self.path = os.fspath(path)
        info = os.stat(self.path)  # FileNotFoundError, PermissionError: the handler's to answer
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "Response.file needs a file, not a directory", self.path)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "Response.file needs a regular file", self.path)
        self.size = info.st_size
        self.mtime = int(info.st_mtime)
        self._identity = (info.st_ino, info.st_size, info.st_mtime_ns)
        self.etag = f'"{info.st_mtime_ns:x}-{info.st_size:x}-{info.st_ino:x}"'
        self.last_modified = formatdate(info.st_mtime, usegmt=True)
        items = list(header_block(headers, content_type or guess_content_type(self.path)))
        given = {name.lower() for name, _ in items}
        ours = [
            ("Last-Modified", self.last_modified),
            ("ETag", self.etag),
            ("Accept-Ranges", "bytes"),
        ]
        if filename is not None:
            ours.append(("Content-Disposition", _content_disposition(filename)))
        items += [(name, value) for name, value in ours if name.lower() not in given]
        header_block(items, None)  # validates the filename's header too
        self.headers = tuple(items)
        self.content_type = next(v for n, v in items if n.lower() == "content-type")
        self._full_block = render_block(items)
        # RFC 9110 section 15.4.5: a 304 carries the validators and caching fields, not the
        # representation's type or disposition.
        self._cache_block = render_block(
            (n, v) for n, v in items if n.lower() not in ("content-type", "content-disposition")
        )

    def _not_modified(self, request: Request) -> bool:
        headers = request.headers
        if_none_match = headers.getall("if-none-match")
        if if_none_match:
            value = ", ".join(if_none_match)
            if value.strip() == "*":
                return True
            return any(match[1] == self.etag for match in _ENTITY_TAG.finditer(value))
        since = headers.get("if-modified-since")
        if since is None:
            return False
        date = http_date_seconds(since)
        # A date in the future is invalid (RFC 9110 section 13.1.3): ignore it.
        return date is not None and date <= time.time() and self.mtime <= date

    def _range(self, request: Request) -> tuple[int, int] | None:
        headers = request.headers
        ranges = headers.getall("range")
        if len(ranges) != 1:
            return None
        if_range = headers.get("if-range")
        if if_range is not None and not if_range_matches(if_range, self.etag, self.mtime):
            return None
        return parse_range(ranges[0], self.size)

    def start(self, request: Request, mode: int, head: bool) -> tuple[bytes, int, BodySender | None]:
        method = request.method
        if (method == "GET" or method == "HEAD") and self._not_modified(request):
            return (
                b"".join((STATUS_LINES[304], DATE.line, self._cache_block, CONNECTION_LINES[mode], b"\r\n")),
                mode,
                None,
            )
        size = self.size
        first, last = 0, size - 1
        status = 200
        extra = b""
        if method == "GET":
            wanted = self._range(request)
            if wanted == UNSATISFIABLE:
                body = b"Range Not Satisfiable: the file has %d bytes" % size
                data = b"".join(
                    (
                        STATUS_LINES[416],
                        DATE.line,
                        b"Content-Type: text/plain; charset=utf-8\r\n",
                        b"Content-Range: bytes */%d\r\n" % size,
                        b"Content-Length: %d\r\n" % len(body),
                        CONNECTION_LINES[mode],
                        b"\r\n",
                        body,
                    )
                )
                return data, mode, None
            if wanted is not None:
                first, last = wanted
                status = 206
                extra = b"Content-Range: bytes %d-%d/%d\r\n" % (first, last, size)
        count = last - first + 1
        data = b"".join(
            (
                STATUS_LINES[status],
                DATE.line,
                self._full_block,
                extra,
                b"Content-Length: %d\r\n" % count,
                CONNECTION_LINES[mode],
                b"\r\n",
            )
        )
        if head or count == 0:
            return data, mode, None
        if count <= INLINE_LIMIT:
            with self._open() as file:
                file.seek(first)
                body = file.read(count)
            if len(body) != count:
                raise OSError(errno.EIO, f"file changed while read ({len(body)} of {count} bytes)", self.path)
            return data + body, mode, None
        return data, mode, partial(self._send, first, count)

    def _open(self) -> BinaryIO:
        file = open(self.path, "rb")  # noqa: SIM115 - closed by the caller's with
        try:
            info = os.fstat(file.fileno())
            if (info.st_ino, info.st_size, info.st_mtime_ns) != self._identity:
                raise OSError(errno.ESTALE, "file changed since Response.file", self.path)
        except BaseException:
            file.close()
            raise
        return file

    async def _send(self, offset: int, count: int, sink: BodySink) -> int:
        with self._open() as file:
            return await sink.send_file(file, offset, count)

    def __repr__(self) -> str:
        return f"<FileResponse {self.path!r} {self.size} bytes>"
