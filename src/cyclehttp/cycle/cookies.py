"""Cookies: the ``Cookie`` request header in, ``Set-Cookie`` response headers out.

Parsing follows what browsers send, not the strict grammar: RFC 6265
section 5.4 says a server sees ``name=value`` pairs separated by ``; ``, but
real cookie jars hold quoted values, ``=`` inside values, empty values and
stray spaces. So the parser is tolerant (like Go's ``net/http`` and
Werkzeug): a pair without ``=`` or with an invalid name is skipped, never an
error, because one bad cookie set by another app on the same domain must not
lock a user out of this one.

Rendering is strict: ``set_cookie_header`` validates the name as an RFC 6265
token and the value as cookie-octets (optionally in double quotes), so CR, LF,
``;``, ``,``, spaces and control characters raise ``ValueError`` where the
cookie is written, not on the wire.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime, formatdate
from typing import Final, Literal

from cyclehttp.config import DEFAULT_MAX_COOKIE_PAIRS

__all__ = ["MAX_COOKIE_PAIRS", "parse_cookie_header", "set_cookie_header"]

# The default of Config.max_cookie_pairs (why 200: see config.py).
MAX_COOKIE_PAIRS: Final = DEFAULT_MAX_COOKIE_PAIRS

# RFC 6265 section 4.1.1: cookie-name = token (RFC 9110 section 5.6.2)
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# cookie-value = *cookie-octet / ( DQUOTE *cookie-octet DQUOTE )
# cookie-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E
_COOKIE_VALUE_RE: Final = re.compile(
    r'[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*|"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"'
)
# Path and Domain attribute values: any CHAR except CTLs or ";" (RFC 6265 section 4.1.1)
_ATTRIBUTE_VALUE_RE: Final = re.compile(r"[\x20-\x3a\x3c-\x7e]*")

# The SameSite attribute's values (RFC 6265bis section 4.1.2.7) are case-insensitive: "Lax" is
# the canonical spelling (the draft's, Flask's docs), "lax" this module's default. The type
# admits the three usual spellings of each; set_cookie_header accepts any case at run time.
SameSite = Literal["lax", "strict", "none", "Lax", "Strict", "None", "LAX", "STRICT", "NONE"]
# Lower-cased value -> the attribute as written in Set-Cookie.
_SAMESITE_ATTRIBUTES: Final = {"lax": "SameSite=Lax", "strict": "SameSite=Strict", "none": "SameSite=None"}


def parse_cookie_header(values: list[str], max_pairs: int = MAX_COOKIE_PAIRS) -> dict[str, str]:
    """The cookies of one or more ``Cookie`` header values, name -> value.

    Several ``Cookie`` headers (HTTP/2 proxies split them) are read in order as
    one list. The first value of a repeated name wins: browsers send the cookie
    with the longest (most specific) path first (RFC 6265 section 5.4 step 2).
    Surrounding double quotes are removed from a value; nothing is
    percent-decoded (a cookie's encoding is the app's business). Pairs beyond
    ``max_pairs`` are ignored.
    """
    cookies: dict[str, str] = {}
    seen = 0
    for header in values:
        for pair in header.split(";", max_pairs - seen):
            seen += 1
            if seen > max_pairs:
                return cookies  # the split's last piece holds the rest, unparsed
            name, eq, value = pair.partition("=")
            if not eq:
                continue
            name = name.strip(" \t")
            if name in cookies or not _TOKEN_RE.fullmatch(name):
                continue
            value = value.strip(" \t")
            if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                value = value[1:-1]
            cookies[name] = value
    return cookies


def _expires(expires: datetime | int | float) -> str:
    if isinstance(expires, datetime):
        if expires.tzinfo is None:
            raise ValueError("expires must be an aware datetime (e.g. datetime.now(UTC) + ...)")
        return format_datetime(expires.astimezone(UTC), usegmt=True)
    if isinstance(expires, bool) or not isinstance(expires, (int, float)):
        raise TypeError(f"expires must be a datetime or seconds from now, got {expires!r}")
    return formatdate(datetime.now(UTC).timestamp() + expires, usegmt=True)


def set_cookie_header(
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
) -> str:
    """The value of a ``Set-Cookie`` header (RFC 6265 section 4.1), validated.

    ``expires`` is an aware ``datetime`` or a number of seconds from now.
    ``samesite`` is ``"lax"``, ``"strict"`` or ``"none"`` in any case
    (``"Lax"``, ``"STRICT"``...), written ``SameSite=Lax``/``Strict``/``None``;
    the Python ``None`` leaves the attribute out. ``samesite="none"`` needs
    ``secure=True`` (browsers drop the cookie otherwise), and so does
    ``partitioned`` (CHIPS). Raises ``ValueError`` for a name that is not a
    token, a value outside cookie-octets, a path or domain with ``;`` or
    control characters, or another ``samesite``.
    """
    for flag, flag_value in (("secure", secure), ("httponly", httponly), ("partitioned", partitioned)):
        if not isinstance(flag_value, bool):
            raise TypeError(f"{flag} must be True or False, got {flag_value!r}")
    if not isinstance(name, str) or not _TOKEN_RE.fullmatch(name):
        raise ValueError(f"invalid cookie name {name!r}: use letters, digits and !#$%&'*+-.^_`|~")
    if not isinstance(value, str) or not _COOKIE_VALUE_RE.fullmatch(value):
        raise ValueError(
            f"invalid cookie value {value!r}: no spaces, quotes, commas, semicolons, backslashes or "
            "control characters; encode it first (e.g. urllib.parse.quote or base64)"
        )
    parts = [f"{name}={value}"]
    if max_age is not None:
        if isinstance(max_age, bool) or not isinstance(max_age, int):
            raise TypeError(f"max_age must be an int (seconds), got {max_age!r}")
        parts.append(f"Max-Age={max_age}")
    if expires is not None:
        parts.append(f"Expires={_expires(expires)}")
    if domain is not None:
        if not domain or not _ATTRIBUTE_VALUE_RE.fullmatch(domain):
            raise ValueError(f"invalid cookie domain {domain!r}")
        parts.append(f"Domain={domain}")
    if path is not None:
        if not _ATTRIBUTE_VALUE_RE.fullmatch(path):
            raise ValueError(f"invalid cookie path {path!r}: no ';' or control characters")
        parts.append(f"Path={path}")
    if secure:
        parts.append("Secure")
    if httponly:
        parts.append("HttpOnly")
    if samesite is not None:
        attribute = _SAMESITE_ATTRIBUTES.get(samesite.lower()) if isinstance(samesite, str) else None
        if attribute is None:
            raise ValueError(
                "samesite must be 'Lax', 'Strict' or 'None' (a string, in any case), or None to leave "
                f"the attribute out; got {samesite!r}"
            )
        if attribute == "SameSite=None" and not secure:
            raise ValueError(
                f"samesite={samesite!r} needs secure=True: browsers reject a SameSite=None cookie "
                "that is not Secure"
            )
        parts.append(attribute)
    if partitioned:
        if not secure:
            raise ValueError("partitioned cookies need secure=True")
        parts.append("Partitioned")
    return "; ".join(parts)
