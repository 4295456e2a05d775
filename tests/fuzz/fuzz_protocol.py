"""Coverage-guided fuzzing of HttpProtocol with atheris (not run by pytest or CI).

    pip install atheris
    python tests/fuzz/fuzz_protocol.py -atheris_runs=100000

Each input drives one HttpProtocol over a fake transport (no sockets): the
input is split into chunks fed to ``data_received``, interleaved with the
events a real transport produces (EOF, pause/resume writing, a graceful
shutdown) and event-loop turns for the async handler. See README.md here
for what is checked. ``check_one_input(data)`` works without atheris too.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from cyclehttp import App, Request, Response
from cyclehttp.clock.stats import Stats
from cyclehttp.config import Config
from cyclehttp.cycle.connection import HttpProtocol
from cyclehttp.cycle.server_state import ServerState
from cyclehttp.testing.fake_transport import FakeTransport
from cyclehttp.testing.rawclient import MalformedResponse, RawConnection, RawResponse

ALLOWED_STATUSES = frozenset({200, 400, 404, 405, 408, 413, 414, 431, 500, 501, 505})


def _echo(request: Request) -> bytes:
    return request.body


def _user(request: Request) -> dict[str, int]:
    return {"id": request.params["user_id"]}


def _fail(request: Request) -> Response:
    raise RuntimeError("this handler always fails")


async def _later(request: Request) -> str:
    await asyncio.sleep(0)
    return "later"


ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/", Response.text("Hello, World!")),
    ("GET", "/json", Response.json({"message": "Hello, World!"})),
    ("POST", "/echo", _echo),
    ("GET", "/users/{user_id:int}", _user),
    ("GET", "/error", _fail),
    ("GET", "/later", _later),
    ("GET", "/sleep/{ms:int}", _later),  # examples/hello.py's async route, without the sleep
]
# Small limits, so that short inputs reach 413, 414 and 431.
CONFIG = Config(max_header_size=512, max_url_length=128, max_body_size=256, max_pipelined_requests=4)


class _InternalErrors(logging.Handler):
    """Internal errors are logged and the connection aborted: for the fuzzer they are crashes."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("internal error"):
            self.records.append(record)


_router = App(ROUTES).compile()
_errors = _InternalErrors()
_default_loop: asyncio.AbstractEventLoop | None = None


def _get_loop() -> asyncio.AbstractEventLoop:
    global _default_loop
    if _default_loop is None:
        _default_loop = asyncio.new_event_loop()
    return _default_loop


def parse_responses(data: bytes, loop: asyncio.AbstractEventLoop | None = None) -> list[RawResponse]:
    """Parse ``data`` (the whole output of a connection) as HTTP/1.1 responses; raise if it is not.

    Runs ``cyclehttp.testing.rawclient``'s strict parser over the bytes, on ``loop`` (not running).
    """

    async def parse() -> list[RawResponse]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        connection = RawConnection(reader, None, timeout=1)  # type: ignore[arg-type]  # never written to
        responses = []
        while connection._buf or not reader.at_eof():
            try:
                responses.append(await connection.read_response())
            except Exception as exc:
                raise MalformedResponse(f"after {len(responses)} responses: {exc}; output: {data!r}") from exc
        return responses

    return (loop or _get_loop()).run_until_complete(parse())


# Statuses that only the protocol itself sends (the routes here raise no HTTPError): each ends the connection.
_CLOSING_STATUSES = frozenset({400, 408, 413, 414, 431, 501, 505})


def check_responses(data: bytes, loop: asyncio.AbstractEventLoop | None = None) -> list[RawResponse]:
    """Every byte forms complete, well-framed responses; ``Connection: close`` only on the last."""
    responses = parse_responses(data, loop)
    for i, response in enumerate(responses):
        assert response.http_version == "1.1", response.raw
        assert response.status in ALLOWED_STATUSES, response.raw
        assert response.header("content-length") is not None, response.raw
        if response.header("connection") == "close":
            assert i == len(responses) - 1, f"bytes after a Connection: close response: {data!r}"
        if response.status in _CLOSING_STATUSES:
            assert response.header("connection") == "close", response.raw
    return responses


def check_one_input(
    data: bytes, consume: Any = None, loop: asyncio.AbstractEventLoop | None = None
) -> list[RawResponse]:
    """Drive one connection with ``data`` and check what it wrote; return the responses.

    ``consume(n)`` returns an int in ``range(n)`` to choose the events; without it the
    choices come from the first 4 bytes of ``data``. ``loop`` (not running) runs the
    async handler; by default one private loop is kept for the process.
    """
    if consume is None:
        header, data = data[:4], data[4:]
        picks = iter(header)

        def consume(n: int) -> int:
            return next(picks, 0) % n

    loop = loop or _get_loop()

    def turn(steps: int) -> None:
        for _ in range(steps):
            loop.run_until_complete(asyncio.sleep(0))

    errors = _errors
    errors.records.clear()
    logger = logging.getLogger("cyclehttp")
    logger.addHandler(errors)
    task_errors: list[dict[str, Any]] = []
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: task_errors.append(context))
    try:
        state = ServerState(_router, CONFIG, Stats(), loop)
        protocol = HttpProtocol(state)
        transport = FakeTransport()
        protocol.connection_made(transport)
        pieces = 1 + consume(4)
        size = max(1, -(-len(data) // pieces))
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        for chunk in chunks:
            if transport.closed:
                break
            protocol.data_received(chunk)
            event = consume(8)
            if event == 1:
                protocol.pause_writing()
            elif event == 2:
                protocol.resume_writing()
            elif event == 3:
                turn(3)
            elif event == 4 and not transport.closed:
                protocol.shutdown()
        if consume(2) and not transport.closed:
            protocol.resume_writing()
        if not transport.closed and not transport.eof_written and not protocol.eof_received():
            transport.close()  # what a real transport does when eof_received returns a false value
        turn(6)
        if protocol._paused & 1 and not transport.closed:  # the client reads again, at last
            protocol.resume_writing()
            turn(6)
        protocol.connection_lost(None)
        turn(2)
    finally:
        logger.removeHandler(errors)
        loop.set_exception_handler(previous_handler)
    assert not task_errors, f"error in a task on input {data!r}: {task_errors[0].get('exception')!r}"
    assert not errors.records, f"internal error on input {data!r}: {errors.records[0].getMessage()}"
    assert not state.connections, "connection_lost left the connection registered"
    return check_responses(bytes(transport.written), loop)


def main() -> None:
    import atheris

    logging.getLogger("cyclehttp").propagate = False  # GET /error logs a traceback: expected, keep quiet

    def test_one_input(data: bytes) -> None:
        provider = atheris.FuzzedDataProvider(data)
        picks = iter(provider.ConsumeBytes(4))
        check_one_input(provider.ConsumeBytes(provider.remaining_bytes()), lambda n: next(picks, 0) % n)

    atheris.instrument_all()  # cyclehttp (and httptools' Python side) is imported already: instrument it now
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
