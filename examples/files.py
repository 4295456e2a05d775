"""Files: a document served inline and a download that resumes (Range), with 304s.

Run it with ``cyclehttp examples.files:routes`` from the repository root, then
``curl -i http://127.0.0.1:8000/readme`` or resume a download with
``curl -C - -o big.bin http://127.0.0.1:8000/download/big.bin``.

``Response.file`` stats the file in the handler (a missing file raises
``FileNotFoundError`` there: these handlers answer 404) and sends it with
``ETag``, ``Last-Modified``, ``Accept-Ranges``; conditional requests get 304 and
``Range`` requests 206 without any code here.
"""

import os
from pathlib import Path

from cyclehttp import FileResponse, HTTPError, Request, Response

ROOT = Path(__file__).resolve().parent
DOWNLOADS = Path(os.environ.get("CYCLEHTTP_DOWNLOADS", ROOT / "downloads"))


def readme(request: Request) -> FileResponse:
    """GET /readme: this file's own source, as text."""
    return Response.file(ROOT / "files.py", content_type="text/plain; charset=utf-8")


def download(request: Request) -> FileResponse:
    """GET /download/{name}: a file of DOWNLOADS as an attachment (resumable)."""
    name = request.params["name"]
    if "/" in name or name.startswith("."):  # one plain name: no way out of DOWNLOADS
        raise HTTPError(404, f"no download named {name!r}")
    try:
        return Response.file(
            DOWNLOADS / name, filename=name, headers={"Cache-Control": "private, max-age=60"}
        )
    except (FileNotFoundError, IsADirectoryError):
        raise HTTPError(404, f"no download named {name!r}") from None


routes = [
    ("GET", "/readme", readme),
    ("GET", "/download/{name}", download),
]
