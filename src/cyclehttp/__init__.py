"""cyclehttp: a fast, hardened HTTP/1.1 server and microframework on uvloop and httptools."""

from .app import App
from .bodystream import StreamingRequest
from .errors import ClientDisconnected, HTTPError, RouteError, StartupError
from .files import FileResponse
from .forms import FormData, UploadFile
from .request import Headers, QueryParams, Request
from .response import Response
from .server import Server, run
from .streaming import StreamingResponse

__all__ = [
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

__version__ = "0.1.0"
