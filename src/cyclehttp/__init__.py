"""cyclehttp: a fast, hardened HTTP/1.1 server and microframework on uvloop and httptools."""

from .app import App
from .errors import HTTPError, RouteError
from .request import Headers, QueryParams, Request
from .response import Response
from .server import Server, run

__all__ = [
    "App",
    "HTTPError",
    "Headers",
    "QueryParams",
    "Request",
    "Response",
    "RouteError",
    "Server",
    "run",
]

__version__ = "0.1.0"
