"""Server settings, validated once when the server is built."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, fields, replace
from typing import Any, Final

from cyclehttp.errors import RouteError

__all__ = [
    "DEFAULTS",
    "Config",
    "IPAddress",
    "TrustedProxies",
    "check_flag",
    "check_metrics_path",
    "ip_address",
    "trusted_proxies",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# h11's DEFAULT_MAX_INCOMPLETE_EVENT_SIZE is 16 KiB (its comment: node 80 KiB,
# tomcat 8 KiB, IIS 16 KiB); nginx's large_client_header_buffers is 4 x 8 KiB.
DEFAULT_MAX_HEADER_SIZE: Final = 16 * 1024

# nginx answers 414 when the request line outgrows one 8 KiB header buffer.
DEFAULT_MAX_URL_LENGTH: Final = 8 * 1024

# nginx's client_max_body_size and aiohttp's client_max_size are both 1 MiB.
DEFAULT_MAX_BODY_SIZE: Final = 1024 * 1024

# A whole request head must arrive within this many seconds of its first byte
# (slowloris: uvicorn resets its timer on every byte, so one byte a second
# holds a connection forever). Also bounds a new connection that sends nothing.
DEFAULT_HEADER_TIMEOUT: Final = 10.0

# Longest silence while a request body arrives (nginx client_body_timeout is 60 s).
DEFAULT_BODY_TIMEOUT: Final = 30.0

# Idle keep-alive connections close after this. It must outlast the idle timeout
# of a proxy in front (nginx upstream keepalive_timeout and AWS ALB are 60 s),
# or the proxy reuses a connection the server is closing and answers 502
# (sanic #2531, which raised sanic's default from 5 s to 120 s).
DEFAULT_KEEP_ALIVE_TIMEOUT: Final = 75.0

# A connection whose client has not read for this long while the server has an answer
# waiting for it (the transport paused for writing all along) is aborted: it would hold
# its max_connections slot forever. nginx's send_timeout is 60 s.
DEFAULT_SEND_TIMEOUT: Final = 60.0

# Connections beyond this are answered 503 and closed at once (uvicorn's
# --limit-concurrency does the same). Each open connection costs a file
# descriptor: keep it below `ulimit -n`.
DEFAULT_MAX_CONNECTIONS: Final = 10_000

# aiohttp bounds its pipelined-request queue at 32 and resumes at half
# (PR #12830, after years of issue #1368); the same numbers serve here.
DEFAULT_MAX_PIPELINED_REQUESTS: Final = 32

# uvicorn's --timeout-graceful-shutdown answers uvicorn #251 (Ctrl-C hanging on a
# long request); sanic's GRACEFUL_SHUTDOWN_TIMEOUT is 15 s. 10 s fits inside the
# 30 s that Kubernetes and systemd give a process between SIGTERM and SIGKILL.
DEFAULT_GRACEFUL_TIMEOUT: Final = 10.0

# Fields of one form (request.form()): Django's DATA_UPLOAD_MAX_NUMBER_FIELDS and
# Starlette's max_fields are both 1000.
DEFAULT_MAX_FORM_FIELDS: Final = 1000

# Parts of one multipart body, files included (Starlette's max_files is 1000).
DEFAULT_MAX_FORM_PARTS: Final = 1000

# Bytes of one non-file form field: Starlette's max_part_size is 1 MiB; Django's
# DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB) bounds all fields together.
DEFAULT_MAX_FORM_FIELD_SIZE: Final = 1024 * 1024

# Pairs of a query string read by request.query; more answer 400 (Django's
# DATA_UPLOAD_MAX_NUMBER_FIELDS and PHP's max_input_vars are 1000 too).
DEFAULT_MAX_QUERY_PAIRS: Final = 1000

# Pairs of the Cookie header(s) read by request.cookies; the rest are ignored (RFC 6265
# section 6.1 asks browsers for at least 50 cookies per domain; more than 200 is abuse
# or a broken jar, and the header size limit already bounds the bytes).
DEFAULT_MAX_COOKIE_PAIRS: Final = 200

# Proxy headers are believed from these peers only (uvicorn's default too; gunicorn adds ::1).
DEFAULT_FORWARDED_ALLOW_IPS: Final = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Config:
    """Limits and timeouts of one server.

    ``max_pipelined_requests``: requests parsed ahead on one connection while
    an earlier one is handled; beyond it the server stops reading from that
    client until half of them are answered.
    ``graceful_timeout``: seconds a shutdown waits for requests in flight
    before closing their connections.
    ``max_header_size`` (431), ``max_url_length`` (414), ``max_body_size``
    (413): bytes; the request is refused with that status and the
    connection closed. ``header_timeout``: seconds from a request's first
    byte to the end of its headers (408). ``body_timeout``: longest silence
    inside a body (408). ``keep_alive_timeout``: seconds an idle connection
    is kept. ``send_timeout``: seconds a client may leave an answer unread (the
    server's writes paused all along) before its connection is aborted.
    ``max_connections``: open connections; more are answered 503.
    ``timing``: time every request and handler (the cost is measured in
    benchmarks/; connection timing and counters stay on without it).
    ``access_log``: log one line per response to ``cyclehttp.access``.
    ``metrics_path``: serve the Prometheus metrics page on this path.
    ``proxy_headers``: believe ``X-Forwarded-For``/``-Proto``/``-Host`` and
    ``Forwarded`` (``request.client``, ``scheme``, ``host``; the access log)
    when the socket's peer is one of ``forwarded_allow_ips``: comma-separated
    IP addresses and CIDR networks, ``unix`` for peers on a Unix socket,
    ``*`` for any peer (see cyclehttp.proxy).
    ``debug``: a 500's body shows the handler's traceback (plain text, or a
    ``traceback`` member of the JSON error); for local development only, never
    in production, where it would show your code to every client.
    ``max_form_fields``, ``max_form_parts``, ``max_form_field_size`` (bytes of
    one non-file field): bound ``request.form()``, which answers 413 beyond
    them (see cyclehttp.forms); ``max_body_size`` still bounds the whole body.
    ``max_query_pairs``: pairs ``request.query`` reads, beyond: 400.
    ``max_cookie_pairs``: pairs ``request.cookies`` reads, the rest ignored.
    """

    max_pipelined_requests: int = DEFAULT_MAX_PIPELINED_REQUESTS
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT
    max_header_size: int = DEFAULT_MAX_HEADER_SIZE
    max_url_length: int = DEFAULT_MAX_URL_LENGTH
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    timing: bool = True
    access_log: bool = False
    metrics_path: str | None = None
    proxy_headers: bool = False
    # Only the local machine, as uvicorn: a proxy elsewhere must be named.
    forwarded_allow_ips: str = DEFAULT_FORWARDED_ALLOW_IPS
    debug: bool = False
    max_form_fields: int = DEFAULT_MAX_FORM_FIELDS
    max_form_parts: int = DEFAULT_MAX_FORM_PARTS
    max_form_field_size: int = DEFAULT_MAX_FORM_FIELD_SIZE
    max_query_pairs: int = DEFAULT_MAX_QUERY_PAIRS
    max_cookie_pairs: int = DEFAULT_MAX_COOKIE_PAIRS

    def __post_init__(self) -> None:
        for name in (
            "max_pipelined_requests",
            "max_header_size",
            "max_url_length",
            "max_body_size",
            "max_connections",
            "max_form_fields",
            "max_form_parts",
            "max_form_field_size",
            "max_query_pairs",
            "max_cookie_pairs",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in (
            "graceful_timeout",
            "header_timeout",
            "body_timeout",
            "keep_alive_timeout",
            "send_timeout",
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be seconds >= 0, got {value!r}")
        for name in ("header_timeout", "body_timeout", "keep_alive_timeout", "send_timeout"):
            if getattr(self, name) == 0:
                raise ValueError(f"{name} must be more than 0 seconds")
        for name in ("timing", "access_log", "proxy_headers", "debug"):
            check_flag(name, getattr(self, name))
        check_metrics_path(self.metrics_path)
        if not isinstance(self.forwarded_allow_ips, str):
            raise ValueError(
                f"forwarded_allow_ips must be a str such as '127.0.0.1,10.0.0.0/8', "
                f"got {self.forwarded_allow_ips!r}"
            )
        trusted_proxies(self.forwarded_allow_ips)  # ValueError naming the bad entry

    def merged_with_app(self, *, metrics_path: str | None, debug: bool) -> Config:
        """This config with an App's own ``metrics_path``/``debug`` filled in (the server option wins).

        The server calls it once when it starts, so everything after reads the
        one ``Config``: an App's settings are declared defaults, not a second owner.
        """
        return replace(self, metrics_path=self.metrics_path or metrics_path, debug=self.debug or debug)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Config:
        """A Config from keyword options, with a clear error for an unknown name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(
                f"unknown server option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**options)


def check_flag(name: str, value: object) -> None:
    """``ValueError`` unless ``value`` is True or False (a Config flag, or the App's ``debug``)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def check_metrics_path(path: object) -> None:
    """``RouteError`` (a ``ValueError``) unless ``path`` is None or a plain path such as ``/metrics``."""
    if path is not None and (not isinstance(path, str) or not path.startswith("/") or "?" in path):
        raise RouteError(f"metrics_path must be a path starting with '/', e.g. '/metrics', got {path!r}")


# -- forwarded_allow_ips: whom the proxy headers are believed from (cyclehttp.cycle.proxy) -------

# The literal entry of forwarded_allow_ips that trusts peers on a Unix socket
# (they have no address to match; the socket file's permissions say who may connect).
UNIX: Final = "unix"


class TrustedProxies:
    """The parsed ``forwarded_allow_ips``: which direct peers may speak for a client.

    ``spec`` is comma-separated IPv4/IPv6 addresses and CIDR networks,
    ``*`` (any peer, Unix sockets included) and ``unix`` (peers on a Unix
    socket). Raises ``ValueError`` naming the entry that is none of these.
    IPv4-mapped IPv6 peers (``::ffff:127.0.0.1``, on a dual-stack socket)
    match their IPv4 entries.
    """

    __slots__ = ("_addresses", "_networks", "spec", "trust_all", "trust_unix")

    def __init__(self, spec: str) -> None:
        if not isinstance(spec, str):
            raise ValueError(f"forwarded_allow_ips must be a str, got {spec!r}")
        self.spec = spec
        self.trust_all = False
        self.trust_unix = False
        self._addresses: set[IPAddress] = set()
        self._networks: list[IPNetwork] = []
        entries = [entry.strip() for entry in spec.split(",") if entry.strip()]
        if not entries:
            raise ValueError(
                "forwarded_allow_ips is empty: name the proxy's address, e.g. '127.0.0.1', or '*'"
            )
        for entry in entries:
            if entry == "*":
                self.trust_all = self.trust_unix = True
            elif entry.lower() == UNIX:
                self.trust_unix = True
            elif "/" in entry:
                self._networks.append(_parse_network(entry))
            else:
                try:
                    self._addresses.add(_unmapped(ipaddress.ip_address(entry)))
                except ValueError:
                    raise ValueError(
                        f"forwarded_allow_ips: {entry!r} is not an IP address or network "
                        "(host names are not resolved); use e.g. '127.0.0.1,10.0.0.0/8', 'unix' or '*'"
                    ) from None

    def trusts(self, address: IPAddress) -> bool:
        """True when ``address`` is one of the trusted proxies."""
        if self.trust_all:
            return True
        address = _unmapped(address)
        if address in self._addresses:
            return True
        return any(address in network for network in self._networks)

    def trusts_peer(self, peer: Any) -> bool:
        """True when a socket's ``peername`` (a tuple for TCP, a str for Unix) is trusted."""
        if not isinstance(peer, tuple):
            return self.trust_unix
        if self.trust_all:
            return True
        address = ip_address(str(peer[0])) if peer else None
        return address is not None and self.trusts(address)

    def __repr__(self) -> str:
        return f"TrustedProxies({self.spec!r})"


@functools.lru_cache(maxsize=32)
def trusted_proxies(spec: str) -> TrustedProxies:
    """The ``TrustedProxies`` of ``spec``, parsed once per distinct value (Config and every connection)."""
    return TrustedProxies(spec)


def ip_address(text: str) -> IPAddress | None:
    """The IP address ``text`` names (IPv4-mapped IPv6 as IPv4), or None for anything else."""
    if not text or not text.isascii():
        return None
    try:
        return _unmapped(ipaddress.ip_address(text))
    except ValueError:
        return None


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _parse_network(entry: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(entry)
    except ValueError as exc:
        if "host bits set" in str(exc):
            suggestion = ipaddress.ip_network(entry, strict=False)
            raise ValueError(
                f"forwarded_allow_ips: {entry!r} has host bits set; did you mean '{suggestion}'?"
            ) from None
        raise ValueError(
            f"forwarded_allow_ips: {entry!r} is not an IP network; use e.g. '10.0.0.0/8' or 'fd00::/8'"
        ) from None


DEFAULTS: Final = Config()
