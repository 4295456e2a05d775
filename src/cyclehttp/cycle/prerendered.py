"""Pre-rendered responses: a route's ``Response`` rendered once into immutable buffers.

A ``Response`` given as a route's target becomes a ``PrerenderedResponse``: the whole
message for every connection mode, as bytes that already exist, so serving it
runs no code and formats nothing. The buffers are re-rendered when the ``Date``
clock ticks (once a second), never per request.

A static 2xx response is also served as a 304 (RFC 9110 section 13.1.2) and,
when its body is large enough and of a compressible type, as a gzip (and br)
encoded variant. Every one of them is a PrerenderedResponse of its own, rendered
once and re-rendered with the Date clock, so choosing one per request is a
couple of dict lookups, never formatting.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import re
from typing import Any, Final, NamedTuple

from cyclehttp.cycle.negotiation import accept_encoding_weights
from cyclehttp.cycle.ranges import UNSATISFIABLE, http_date_seconds, if_range_matches, parse_range
from cyclehttp.cycle.response import Response
from cyclehttp.cycle.wire import CLOSE, KEEP_ALIVE, KEEP_ALIVE_HTTP10, TEXT_PLAIN

__all__ = [
    "BROTLI",
    "COMPRESS_MIN_SIZE",
    "SPLIT_BODY_THRESHOLD",
    "PrerenderedResponse",
    "etag_matches",
    "is_compressible",
    "plan_representations",
]

# Bodies above this are written as a second buffer, so the once-a-second
# re-render of a static response copies only its head.
SPLIT_BODY_THRESHOLD: Final = 16 * 1024


# Bodies shorter than this are not compressed: below ~1 KiB a response fits one
# packet either way, and the gzip header and trailer (18 bytes) eat the saving
# (Akamai's threshold is 860 bytes, Cloudflare's and Fastly's about 1 KiB).
COMPRESS_MIN_SIZE: Final = 1024

# Media types worth compressing, beside text/* and the +json / +xml suffixes.
COMPRESSIBLE_TYPES: Final = frozenset(
    {
        "application/json",
        "application/javascript",
        "application/ecmascript",
        "application/x-javascript",
        "application/xml",
        "application/x-ndjson",
        "application/wasm",
        "image/svg+xml",
        "image/x-icon",
        "image/bmp",
    }
)

# Header fields a 304 repeats from the 200 it stands for (RFC 9110 section 15.4.5);
# Date comes from the clock like on every answer.
_NOT_MODIFIED_FIELDS: Final = frozenset({"cache-control", "content-location", "etag", "expires", "vary"})

# RFC 9110 section 8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE,
# etagc = %x21 / %x23-7E / obs-text
_ENTITY_TAG: Final = rb'(?:W/)?"[\x21\x23-\x7e\x80-\xff]*"'
_ENTITY_TAG_RE: Final = re.compile(_ENTITY_TAG)
# RFC 9110 section 13.1.2: If-None-Match = "*" / #entity-tag, where a list may hold
# empty elements (section 5.6.1.2); the value is stripped of OWS before matching.
_ENTITY_TAG_LIST_RE: Final = re.compile(
    rb"(?:,[ \t]*)*" + _ENTITY_TAG + rb"(?:[ \t]*,(?:[ \t]*" + _ENTITY_TAG + rb")?)*"
)
_OPAQUE_TAG_RE: Final = re.compile(rb'"[^"]*"')


def _load_brotli() -> Any:
    try:
        return importlib.import_module("brotli")
    except ImportError:
        return None


_brotli: Any = _load_brotli()
"""The optional ``brotli`` module (``pip install 'cyclehttp[brotli]'``), or None: no br variants."""

BROTLI: Final = _brotli is not None
"""Whether static responses get br variants (the listening line says so)."""


def is_compressible(content_type: str | None) -> bool:
    """True for media types that compress well (text, JSON, JavaScript, XML, SVG ...)."""
    if not content_type:
        return False
    media = content_type.partition(";")[0].strip().lower()
    return media.startswith("text/") or media in COMPRESSIBLE_TYPES or media.endswith(("+json", "+xml"))


def etag_matches(field: bytes, etag: bytes) -> bool:
    """Whether an ``If-None-Match`` value matches ``etag`` (RFC 9110 section 13.1.2).

    The weak comparison: ``W/`` prefixes are ignored on both sides; ``*``
    matches. A malformed value matches nothing, so the client gets the full
    response rather than an error.
    """
    field = field.strip(b" \t")
    if field == etag or field == b"*":  # the common case: the client sends back the tag it got
        return True
    if _ENTITY_TAG_LIST_RE.fullmatch(field) is None:
        return False
    opaque = etag[2:] if etag.startswith(b"W/") else etag
    return opaque in _OPAQUE_TAG_RE.findall(field)


class _Representation(NamedTuple):
    """One form of a static response, planned once: the message to render and its 304."""

    coding: str  # "identity", "gzip" or "br"
    message: Response
    etag: str | None  # None: not a 2xx, no conditional requests
    not_modified: Response | None


def _compress(body: bytes) -> list[tuple[str, bytes]]:
    """The encodings of ``body`` that are smaller than it, preferred first (br, then gzip)."""
    encoded: list[tuple[str, bytes]] = []
    if _brotli is not None:
        encoded.append(("br", _brotli.compress(body, quality=11)))
    # Highest level: this runs once per route at start-up. mtime=0: the same bytes every run.
    encoded.append(("gzip", gzip.compress(body, compresslevel=9, mtime=0)))
    return [(coding, data) for coding, data in encoded if len(data) < len(body)]


def plan_representations(response: Response) -> tuple[_Representation, ...]:
    """The identity form of ``response`` first, then its encoded forms (br, gzip), each with its 304.

    A 2xx gets a strong ETag (the first 64 bits of a BLAKE2b digest of its
    headers and body, so it changes when either does) unless it carries one:
    then that one is used, and a value that is not an entity-tag turns the
    conditional answers off. Other statuses (404, 405, a redirect) are served
    as they are: preconditions do not apply to them (RFC 9110 section 13.2.1),
    and like nginx the server sends no ETag with an error.
    """
    status = response.status
    if not 200 <= status < 300:
        return (_Representation("identity", response, None, None),)
    items = list(response.headers)
    user_etags = [value for name, value in items if name.lower() == "etag"]
    if user_etags:
        etag = user_etags[0]
        if len(user_etags) > 1 or _ENTITY_TAG_RE.fullmatch(etag.encode("latin-1")) is None:
            return (_Representation("identity", response, None, None),)
        items = [(name, value) for name, value in items if name.lower() != "etag"]
    else:
        digest = hashlib.blake2b(response.header_block + b"\r\n" + response.body, digest_size=8)
        etag = f'"{digest.hexdigest()}"'
    body = response.body
    names = [name.lower() for name, _ in items]
    encoded = (
        _compress(body)
        if len(body) >= COMPRESS_MIN_SIZE
        and "content-encoding" not in names
        and is_compressible(response.content_type)
        else []
    )
    if encoded:
        # Caches must key these answers on Accept-Encoding (RFC 9110 section 12.5.5).
        if "vary" in names:
            index = names.index("vary")
            name, value = items[index]
            tokens = {token.strip().lower() for token in value.split(",")}
            if "*" not in tokens and "accept-encoding" not in tokens:
                items[index] = (name, f"{value}, Accept-Encoding")
        else:
            items.append(("Vary", "Accept-Encoding"))
    forms = [("identity", body, [*items, ("ETag", etag)], etag)]
    for coding, data in encoded:
        tag = f'{etag[:-1]}-{coding}"'  # inside the quotes: W/"x" -> W/"x-gzip"
        forms.append((coding, data, [*items, ("Content-Encoding", coding), ("ETag", tag)], tag))
    return tuple(
        _Representation(
            coding,
            Response(data, status, headers),
            tag,
            Response(b"", 304, [(n, v) for n, v in headers if n.lower() in _NOT_MODIFIED_FIELDS]),
        )
        for coding, data, headers, tag in forms
    )


class PrerenderedResponse:
    """A ``Response`` rendered once into immutable buffers, one per mode.

    ``buffers[mode]`` is the whole message for a GET, ``head_buffers[mode]``
    the same head without the body. When the body is larger than
    ``SPLIT_BODY_THRESHOLD`` the buffers hold only the head and ``body`` is
    written after it (``split`` is True), so the per-second re-render stays
    cheap.

    A 2xx also has an ``etag`` (in its headers), a ``not_modified`` 304 to
    answer a matching ``If-None-Match`` with, and possibly ``encoded``
    variants (br, gzip: each a PrerenderedResponse with its own ETag and 304).
    ``select`` picks the answer for a request's fields; the server calls it
    only when the request has one of them.

    A 200 whose headers say ``Accept-Ranges: bytes`` (``app.static()`` files
    do) also answers a ``Range`` GET: ``ranges`` is True. The 206 (or 416) is
    rendered for that request from the same body, so a request without
    ``Range`` pays nothing for it.
    """

    __slots__ = (
        "_modified",
        "_plan",
        "_range_counts",
        "body",
        "buffers",
        "coding",
        "encoded",
        "etag",
        "head_buffers",
        "hits",
        "message",
        "not_modified",
        "ranges",
        "response",
        "split",
    )

    def __init__(self, response: Response, plan: tuple[_Representation, ...] | None = None) -> None:
        self.response = response.freeze()  # rendered now: a later change would never be sent
        self.hits = 0
        """Times these buffers were served (their status is fixed); ``count`` adds the variants'."""
        if plan is None:
            plan = plan_representations(response)
        self._plan = plan
        first = plan[0]
        self.message = first.message
        """What is rendered: ``response`` with its ETag, Vary and Content-Encoding."""
        self.coding = first.coding
        self.etag = None if first.etag is None else first.etag.encode("latin-1")
        self.body = first.message.body
        self.split = len(self.body) > SPLIT_BODY_THRESHOLD
        self.not_modified = (
            None
            if first.not_modified is None
            else PrerenderedResponse(
                first.not_modified, (_Representation(first.coding, first.not_modified, None, None),)
            )
        )
        self.encoded = tuple(PrerenderedResponse(form.message, (form,)) for form in plan[1:])
        headers = {name.lower(): value for name, value in self.message.headers}
        self.ranges = (
            self.message.status == 200 and headers.get("accept-ranges", "").strip().lower() == "bytes"
        )
        """Answer ``Range`` requests (206/416): a 200 with ``Accept-Ranges: bytes``."""
        modified = headers.get("last-modified")
        self._modified = None if modified is None else http_date_seconds(modified)
        self._range_counts = [0] * 6  # the 206/416 answers rendered per request, by status digit
        self.buffers: tuple[bytes, bytes, bytes] = (b"", b"", b"")
        self.head_buffers: tuple[bytes, bytes, bytes] = (b"", b"", b"")
        self.refresh()

    def refresh(self) -> None:
        """Re-render every buffer, the variants' and the 304s' too, with the current ``Date``."""
        message = self.message
        self.head_buffers = (
            message.render(KEEP_ALIVE, True),
            message.render(CLOSE, True),
            message.render(KEEP_ALIVE_HTTP10, True),
        )
        if self.split or not self.body:
            self.buffers = self.head_buffers
        else:
            self.buffers = (
                message.render(KEEP_ALIVE, False),
                message.render(CLOSE, False),
                message.render(KEEP_ALIVE_HTTP10, False),
            )
        if self.not_modified is not None:
            self.not_modified.refresh()
        for variant in self.encoded:
            variant.refresh()

    def select(
        self,
        if_none_match: bytes | None,
        accept_encoding: bytes | None,
        range_field: bytes | None = None,
        if_range: bytes | None = None,
    ) -> PrerenderedResponse:
        """The answer to a GET or HEAD with these fields: this, an encoded variant, a 304, a 206 or a 416.

        The encoding is chosen first (highest qvalue; br before gzip on a tie;
        identity only when listed with a higher qvalue than any variant), then
        ``If-None-Match`` is compared with the chosen variant's ETag (RFC 9110
        section 13.2.2 order), then ``Range`` (give it for a GET only) and
        ``If-Range`` pick a part of the chosen variant, when it takes ranges.
        """
        chosen = self
        if accept_encoding is not None and self.encoded:
            weights = accept_encoding_weights(accept_encoding)
            star = weights.get("*", 0.0)
            best = 0.0
            for variant in self.encoded:
                q = weights.get(variant.coding, star)
                if q > best:
                    chosen, best = variant, q
            if best and weights.get("identity", 0.0) > best:
                chosen = self
        not_modified = chosen.not_modified
        if (
            if_none_match is not None
            and not_modified is not None
            and chosen.etag is not None
            and etag_matches(if_none_match, chosen.etag)
        ):
            return not_modified
        if range_field is not None and chosen.ranges:
            return chosen._part(range_field, if_range)
        return chosen

    def _part(self, range_field: bytes, if_range: bytes | None) -> PrerenderedResponse:
        """The 206 or 416 a ``Range`` asks of this 200, rendered now; this one when it is ignored."""
        etag = None if self.etag is None else self.etag.decode("latin-1")
        if if_range is not None and not if_range_matches(if_range.decode("latin-1"), etag, self._modified):
            return self
        size = len(self.body)
        wanted = parse_range(range_field.decode("latin-1"), size)
        if wanted is None:
            return self
        if wanted == UNSATISFIABLE:
            part = Response(
                b"Range Not Satisfiable: the body has %d bytes" % size,
                416,
                [("Content-Range", f"bytes */{size}")],
                TEXT_PLAIN,
            )
        else:
            first, last = wanted
            part = Response(
                self.body[first : last + 1],
                206,
                [*self.message.headers, ("Content-Range", f"bytes {first}-{last}/{size}")],
            )
        self._range_counts[part.status // 100] += 1
        return PrerenderedResponse(part, (_Representation(self.coding, part, None, None),))

    def count(self, counts: list[int]) -> None:
        """Add the answers served from this response, its variants and their 304s, by status class."""
        counts[self.message.status // 100] += self.hits
        for digit, count in enumerate(self._range_counts):
            counts[digit] += count
        if self.not_modified is not None:
            self.not_modified.count(counts)
        for variant in self.encoded:
            variant.count(counts)

    def reset_counts(self) -> None:
        """Zero the counters of this response, its variants and their 304s."""
        self.hits = 0
        self._range_counts[:] = [0] * 6
        if self.not_modified is not None:
            self.not_modified.reset_counts()
        for variant in self.encoded:
            variant.reset_counts()

    @property
    def status(self) -> int:
        return self.message.status

    def copy(self) -> PrerenderedResponse:
        """The same response with its own buffers and counters (one per compiled router).

        The plan is shared: nothing is hashed or compressed again.
        """
        return PrerenderedResponse(self.response, self._plan)

    def __repr__(self) -> str:
        coding = "" if self.coding == "identity" else f" {self.coding}"
        return f"<PrerenderedResponse {self.status} {len(self.body)} bytes{coding}>"
