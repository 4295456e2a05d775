"""``cyclehttp.rawhttp``: the path the docs name for the raw client (``cyclehttp.testing.rawclient``)."""

from cyclehttp.testing.rawclient import (
    MAX_HEAD,
    ConnectionClosed,
    MalformedResponse,
    RawConnection,
    RawResponse,
    request,
)

__all__ = ["MAX_HEAD", "ConnectionClosed", "MalformedResponse", "RawConnection", "RawResponse", "request"]
