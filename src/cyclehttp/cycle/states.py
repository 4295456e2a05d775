"""The read state of a connection, why its reading is paused, and the transitions it makes.

As h11's ``_state.py``: the states are written down as data, and
``tests/test_states.py`` drives connections through every transition and checks
that each one it sees is in ``TRANSITIONS`` (and that each one listed happens).

=========  =============================================================
IDLE       between requests (nothing of the next request has arrived)
HEAD       reading a request line and headers
BODY       reading a request body (a streamed one: its handler runs meanwhile)
CLOSING    no more requests will be parsed; close once answers are out
=========  =============================================================

The handler side is not a state: ``_busy`` (the task of the async handler, or
of a long body, running) and ``_queue`` (requests parsed but not yet answered).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BODY",
    "CLOSING",
    "HEAD",
    "IDLE",
    "PAUSED_BODY",
    "PAUSED_QUEUE",
    "PAUSED_WRITE",
    "STATE_NAMES",
    "TRANSITIONS",
]

IDLE: Final = 0
HEAD: Final = 1
BODY: Final = 2
CLOSING: Final = 3

STATE_NAMES: Final = {IDLE: "IDLE", HEAD: "HEAD", BODY: "BODY", CLOSING: "CLOSING"}

# Why reading is paused (a bit set): the transport resumes only when none is left.
PAUSED_WRITE: Final = 1  # the client does not read its answers (pause_writing)
PAUSED_QUEUE: Final = 2  # max_pipelined_requests are waiting, or no more requests will be read
PAUSED_BODY: Final = 4  # a streamed request body holds more than request_stream.STREAM_BUFFER

# The method of HttpProtocol that makes a transition -> the (before, after) pairs it may make.
# A method that leaves the state as it was is not a transition.
TRANSITIONS: Final[dict[str, frozenset[tuple[int, int]]]] = {
    # accepted over max_connections (503), or while the server drains
    "connection_made": frozenset({(IDLE, CLOSING)}),
    "on_message_begin": frozenset({(IDLE, HEAD)}),
    # CLOSING: an Expect: 100-continue request answered at once with a final status
    "on_headers_complete": frozenset({(HEAD, BODY), (HEAD, CLOSING)}),
    # CLOSING: the request asked to close (Connection: close, HTTP/1.0), or the server drains
    "on_message_complete": frozenset({(BODY, IDLE), (BODY, CLOSING)}),
    # a stream_body handler returned before its body was all in: a lingering close
    "_stream_ended": frozenset({(BODY, CLOSING)}),
    # bad input, a limit, a timeout: the error answer, then close
    "_fail": frozenset({(HEAD, CLOSING), (BODY, CLOSING)}),
    # an Upgrade or CONNECT request was answered: nothing more is parsed
    "_stop_reading": frozenset({(IDLE, CLOSING)}),
    "abort": frozenset((state, CLOSING) for state in (IDLE, HEAD, BODY)),
    "eof_received": frozenset((state, CLOSING) for state in (IDLE, HEAD, BODY)),
    "connection_lost": frozenset((state, CLOSING) for state in (IDLE, HEAD, BODY)),
    # header, body (through _fail) and idle timeouts
    "check_timeouts": frozenset({(IDLE, CLOSING), (HEAD, CLOSING), (BODY, CLOSING)}),
    "shutdown": frozenset({(IDLE, CLOSING)}),
}
