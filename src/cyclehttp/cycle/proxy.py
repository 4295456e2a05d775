"""Behind a reverse proxy: who the client is, when a trusted proxy says so.

A proxy in front of the server (nginx, a load balancer) is the socket's peer:
the client's address, the scheme it used and the host it asked for travel in
headers the proxy adds. Anyone can send those headers, so they are believed
only when ``proxy_headers`` is on **and** the socket's peer is one of
``forwarded_allow_ips``. Otherwise they are ordinary headers.

Which headers
-------------
``X-Forwarded-For`` / ``X-Forwarded-Proto`` / ``X-Forwarded-Host`` (the de facto
ones; nginx, HAProxy, AWS ALB, Envoy and Traefik send them) and RFC 7239
``Forwarded`` (``for=``, ``proto=``, ``host=``). When a request carries any
``X-Forwarded-*`` header, ``Forwarded`` is ignored: the common proxies set
``X-Forwarded-For`` but pass a client's own ``Forwarded`` header through
untouched, so letting ``Forwarded`` win would let any client name its address
through a default nginx. A proxy that sets only ``Forwarded`` must drop
``X-Forwarded-*`` (HAProxy: ``http-request del-header X-Forwarded-For``).

The trust walk
--------------
Each proxy appends the address it received the request from, so the list
reads client, proxy 1, proxy 2, ... from left to right and only its right end
was written by the trusted peer. It is walked from the right: trusted
addresses are proxies and are skipped, the first untrusted one is the client.
When every entry is trusted the leftmost is taken. ``Forwarded`` is walked the
same way, element by element, and ``proto``/``host`` come from the element
whose ``for`` is the client (the hop the client itself made).
``X-Forwarded-Proto`` and ``X-Forwarded-Host`` are taken from their
rightmost value: the one the nearest proxy set.

Malformed values (not an address, an unknown scheme, a host with characters a
host cannot have, a list longer than ``MAX_FORWARDED_HOPS`` trusted hops) are
ignored field by field: the client is then the socket's peer, the scheme
``http``, the host the ``Host`` header. Nothing here raises for any input.
"""

from __future__ import annotations

import re
from typing import Final

from cyclehttp.config import IPAddress, TrustedProxies, ip_address, trusted_proxies

__all__ = ["MAX_FORWARDED_HOPS", "Client", "TrustedProxies", "parse_forwarded", "resolve", "trusted_proxies"]

Client = tuple[str, int] | None

# The walk looks at no more than this many entries from the right. A real
# chain has a handful of proxies; a longer run of trusted entries is a
# forgery or a loop, and the socket's peer is used instead.
MAX_FORWARDED_HOPS: Final = 32

# RFC 9110 token characters, the unquoted value of a Forwarded parameter.
_TOKEN: Final = r"[!#$%&'*+.^_`|~0-9A-Za-z-]"
# One Forwarded element: tokens, separators and complete quoted strings (an
# unterminated quote ends it early: that element is malformed). Possessive
# quantifiers: no backtracking whatever the input.
_ELEMENT: Final = re.compile(r'(?:[^,"]++|"(?:[^"\\]|\\.)*+")*+', re.DOTALL)
# RFC 7239 section 4: forwarded-pair = token "=" value; value = token / quoted-string.
# Unquoted ``:`` and brackets are accepted too, as proxies send ``for=1.2.3.4:80``.
_PAIR: Final = re.compile(
    rf'[ \t]*+({_TOKEN}++)=(?:([!#$%&\'*+.^_`|~0-9A-Za-z:\[\]-]++)|"((?:[^"\\]|\\.)*+)")[ \t]*+(?:;|\Z)',
    re.DOTALL,
)
_QUOTED_PAIR: Final = re.compile(r"\\(.)", re.DOTALL)
# RFC 7239 section 6.3: obfnode = "_" 1*( ALPHA / DIGIT / "." / "_" / "-" ).
_OBFUSCATED: Final = re.compile(r"_[A-Za-z0-9._-]+")
# RFC 3986 host (reg-name or bracketed IP literal) with an optional port.
_HOST: Final = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+;=%-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_MAX_HOST: Final = 255
_SCHEMES: Final = {"http": "http", "https": "https"}


def resolve(
    trusted: TrustedProxies, peer: Client, peer_trusted: bool, raw_headers: list[tuple[bytes, bytes]]
) -> tuple[Client, str, str]:
    """``(client, scheme, host)`` of a request, from the proxy headers when ``peer_trusted``.

    ``peer`` is the socket's peer; ``raw_headers`` the request's header pairs.
    The fallbacks are ``peer``, ``"http"`` and the first ``Host`` header
    (``""`` without one). Never raises.
    """
    host_header = ""
    forwarded_for: list[bytes] = []
    forwarded_proto: list[bytes] = []
    forwarded_host: list[bytes] = []
    forwarded: list[bytes] = []
    seen_host = False
    for name, value in raw_headers:
        size = len(name)
        if size == 4:
            if not seen_host and name.lower() == b"host":
                host_header = value.decode("latin-1").strip()
                seen_host = True
        elif not peer_trusted:
            continue
        elif size == 15 and name.lower() == b"x-forwarded-for":
            forwarded_for.append(value)
        elif size == 17 and name.lower() == b"x-forwarded-proto":
            forwarded_proto.append(value)
        elif size == 16 and name.lower() == b"x-forwarded-host":
            forwarded_host.append(value)
        elif size == 9 and name.lower() == b"forwarded":
            forwarded.append(value)
    client, scheme, host = peer, "http", host_header
    if not peer_trusted:
        return client, scheme, host
    if forwarded_for or forwarded_proto or forwarded_host:
        if forwarded_for:
            client = _client_from_x_forwarded_for(trusted, _join(forwarded_for), peer)
        if forwarded_proto:
            scheme = _scheme(_last(_join(forwarded_proto))) or scheme
        if forwarded_host:
            host = _host(_last(_join(forwarded_host))) or host
        return client, scheme, host
    if forwarded:
        element = _client_element(trusted, parse_forwarded(_join(forwarded)))
        if element is not None:
            node = _node(element.get("for"))
            if node is not None:
                client = node
            scheme = _scheme(element.get("proto")) or scheme
            host = _host(element.get("host")) or host
    return client, scheme, host


def parse_forwarded(value: str) -> list[dict[str, str] | None]:
    """The elements of a ``Forwarded`` header, left to right; a malformed element is None.

    Parameter names are lower-cased, quoted values unescaped. An element with
    a syntax error or a repeated parameter is None; parsing resumes after the
    next comma, so garbage a client sent cannot hide what a proxy appended.
    """
    elements: list[dict[str, str] | None] = []
    position, end = 0, len(value)
    while position <= end:
        match = _ELEMENT.match(value, position)
        stop = match.end() if match else position
        if stop < end and value[stop] != ",":  # an unterminated quoted string
            comma = value.find(",", stop)
            elements.append(None)
            if comma < 0:
                break
            position = comma + 1
            continue
        text = value[position:stop]
        if text.strip(" \t"):
            elements.append(_parse_element(text))
        position = stop + 1
    return elements


def _parse_element(text: str) -> dict[str, str] | None:
    pairs: dict[str, str] = {}
    position, end = 0, len(text.rstrip(" \t"))
    while position < end:
        match = _PAIR.match(text, position, end)
        if match is None:
            return None
        name = match[1].lower()
        if name in pairs:  # RFC 7239 section 4: a parameter MUST NOT occur more than once
            return None
        quoted = match[3]
        pairs[name] = match[2] if quoted is None else _QUOTED_PAIR.sub(r"\1", quoted)
        position = match.end()
    return pairs


def _client_from_x_forwarded_for(trusted: TrustedProxies, value: str, peer: Client) -> Client:
    entries = value.rsplit(",", MAX_FORWARDED_HOPS)
    if len(entries) > MAX_FORWARDED_HOPS:
        del entries[0]  # not walked past: reaching the cut falls back to the peer
        complete = False
    else:
        complete = True
    for entry in reversed(entries):
        parsed = _address_and_port(entry.strip())
        if parsed is None:
            return peer
        address, port = parsed
        if not trusted.trusts(address):
            return str(address), port
    if not complete:
        return peer
    parsed = _address_and_port(entries[0].strip())
    return (str(parsed[0]), parsed[1]) if parsed is not None else peer


def _client_element(trusted: TrustedProxies, elements: list[dict[str, str] | None]) -> dict[str, str] | None:
    """The element whose ``for`` is the client (see the module docstring); None: use the peer."""
    walked = elements[-MAX_FORWARDED_HOPS:]
    for element in reversed(walked):
        if element is None:
            return None
        node = element.get("for")
        if node is None:  # the hop does not say whom it is from: the client stays the peer
            return element
        parsed = _address_and_port(node)
        if parsed is None or not trusted.trusts(parsed[0]):
            return element  # an untrusted address, or an obfuscated or unknown node: the client
    return walked[0] if len(walked) == len(elements) and walked else None


def _node(value: str | None) -> Client:
    """A Forwarded ``for`` node as a client: an address, or an obfuscated/``unknown`` name, port 0."""
    if value is None:
        return None
    parsed = _address_and_port(value)
    if parsed is not None:
        return str(parsed[0]), parsed[1]
    name, _, port = value.partition(":") if not value.startswith("[") else (value, "", "")
    if name.lower() == "unknown" or _OBFUSCATED.fullmatch(name):
        return name, _port(port) or 0
    return None


def _address_and_port(text: str) -> tuple[IPAddress, int] | None:
    """``1.2.3.4``, ``1.2.3.4:80``, ``::1``, ``[::1]`` or ``[::1]:80``; None for anything else."""
    if len(text) > 64:
        return None
    port_text = ""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            return None
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if rest[0] != ":":
                return None
            port_text = rest[1:]
            if not port_text:
                return None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text:
            return None
    else:
        host = text
    address = ip_address(host)
    if address is None or (text.startswith("[") and address.version != 6):
        return None
    if not port_text:
        return address, 0
    port = _port(port_text)
    return (address, port) if port is not None else None


def _port(text: str) -> int | None:
    if not text.isascii() or not text.isdigit() or len(text) > 5 or int(text) > 65535:
        return None
    return int(text)


def _scheme(value: str | None) -> str | None:
    return _SCHEMES.get(value.strip().lower()) if value is not None else None


def _host(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _MAX_HOST or not _HOST.fullmatch(value):
        return None
    return value


def _join(values: list[bytes]) -> str:
    """Repeated header lines are one comma-separated list (RFC 9110 section 5.3)."""
    return ",".join(value.decode("latin-1") for value in values)


def _last(value: str) -> str:
    return value.rpartition(",")[2]
