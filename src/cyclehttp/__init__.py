"""cyclehttp: a fast, hardened HTTP/1.1 server and microframework on uvloop and httptools."""

from cyclehttp.app.application import App
from cyclehttp.cycle.files import FileResponse
from cyclehttp.cycle.forms import FormData, UploadFile
from cyclehttp.cycle.request import Headers, QueryParams, Request
from cyclehttp.cycle.request_stream import StreamingRequest
from cyclehttp.cycle.response import Response
from cyclehttp.cycle.response_stream import StreamingResponse
from cyclehttp.errors import ClientDisconnected, HTTPError, RouteError, StartupError
from cyclehttp.serving.server import Server, run
from cyclehttp.version import COMPILED
from cyclehttp.version import __version__ as __version__

__all__ = [
    "COMPILED",
    "App",
    "ClientDisconnected",
    "FileResponse",
    "FormData",
    "HTTPError",
    "Headers",
    "QueryParams",
    "Request",
    "Response",
    "RouteError",
    "Server",
    "StartupError",
    "StreamingRequest",
    "StreamingResponse",
    "UploadFile",
    "run",
]
