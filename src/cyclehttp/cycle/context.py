"""``ConnectionContext``: what the requests of one connection share.

Objects are passed down, never found: the server gives every connection its
``ServerState`` (``cycle.server_state``); the connection gives every ``Request``
it makes its ``ConnectionContext`` (the transport, the server's config, the app, whom to
trust for proxy headers), built once in ``connection_made``, so a request
learns what it needs without walking the transport, and costs nothing more
when it never asks.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from cyclehttp.config import DEFAULTS, Config, TrustedProxies, trusted_proxies
from cyclehttp.cycle.proxy import Client, resolve

if TYPE_CHECKING:
    from cyclehttp.types import ServedApp

__all__ = ["ConnectionContext"]


class ConnectionContext:
    """What the requests of one connection share, built once when it is accepted.

    ``transport`` is the connection's; ``config`` the server's; ``app`` the app
    served (None for a protocol driven by hand); ``trusted`` the parsed
    ``forwarded_allow_ips`` when the server honours proxy headers, else None.
    The socket's peer and whether it is trusted are looked up once, the first
    time a request asks.
    """

    __slots__ = ("_peer", "_peer_trusted", "app", "config", "transport", "trusted")

    def __init__(
        self,
        transport: asyncio.BaseTransport | None,
        config: Config = DEFAULTS,
        app: ServedApp | None = None,
    ) -> None:
        self.transport = transport
        self.config = config
        self.app = app
        self.trusted: TrustedProxies | None = (
            trusted_proxies(config.forwarded_allow_ips) if config.proxy_headers else None
        )
        self._peer: Client | bool = False
        self._peer_trusted = False

    def peer(self) -> tuple[Client, bool]:
        """The socket's peer as ``(host, port)`` (None on a Unix socket) and whether it is trusted."""
        if self._peer is False:
            raw = self.transport.get_extra_info("peername") if self.transport is not None else None
            self._peer = (str(raw[0]), int(raw[1])) if isinstance(raw, tuple) and len(raw) >= 2 else None
            self._peer_trusted = self.trusted is not None and self.trusted.trusts_peer(raw)
        return self._peer, self._peer_trusted  # type: ignore[return-value]

    def resolve(self, raw_headers: list[tuple[bytes, bytes]]) -> tuple[Client, str, str]:
        """``(client, scheme, host)`` of a request on this connection (``cycle.proxy``).

        Without proxy headers: the socket's peer, ``http`` and the ``Host`` header.
        """
        peer, trusted = self.peer()
        if self.trusted is None:
            return peer, "http", _host_header(raw_headers)
        return resolve(self.trusted, peer, trusted, raw_headers)


def _host_header(raw_headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in raw_headers:
        if len(name) == 4 and name.lower() == b"host":
            return value.decode("latin-1").strip()
    return ""
