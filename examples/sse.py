"""Server-sent events: a clock that ticks to every client, as a streamed response.

Run it with ``cyclehttp examples.sse:routes`` and open http://127.0.0.1:8000/
(or ``curl -N http://127.0.0.1:8000/ticks``).

Each event is ``data: ...`` followed by a blank line (the ``text/event-stream``
format); the server sends each one as a chunk the moment it is yielded. When
the client goes away the generator is closed (its ``finally`` runs); at
shutdown it is closed too and the stream ends cleanly, so EventSource
reconnects elsewhere.
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator

from cyclehttp import Request, Response, StreamingResponse

PAGE = """<!doctype html>
<title>cyclehttp SSE</title>
<pre id="log"></pre>
<script>
  const log = document.getElementById("log");
  new EventSource("/ticks").onmessage = (event) => { log.textContent += event.data + "\\n"; };
</script>
"""


def ticks(request: Request) -> StreamingResponse:
    """GET /ticks?every=<seconds>&count=<n>: one event per tick (``count`` 0: for ever)."""
    every = float(request.query.get("every", "1"))
    count = int(request.query.get("count", "0"))

    async def events() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"  # how long EventSource waits before it reconnects
        n = 0
        while not count or n < count:
            n += 1
            yield f"id: {n}\ndata: {json.dumps({'tick': n, 'time': time.time()})}\n\n"
            await asyncio.sleep(every)

    return Response.stream(
        events(),
        content_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},  # nginx: do not buffer it
    )


routes = [
    ("GET", "/", Response.html(PAGE)),
    ("GET", "/ticks", ticks),
]
