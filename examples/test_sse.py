"""Tests of examples/sse.py: the event stream read as a client reads it."""

import json

import pytest

from cyclehttp import App
from examples.sse import routes


@pytest.fixture
def cyclehttp_app() -> App:
    return App(routes)


async def test_the_page(cyclehttp_client):
    response = await cyclehttp_client.get("/")
    assert "EventSource" in response.text


async def test_events_arrive_one_by_one(cyclehttp_client):
    async with cyclehttp_client.stream("GET", "/ticks", params={"every": "0.01", "count": "3"}) as response:
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["transfer-encoding"] == "chunked"
        text = "".join([piece async for piece in response.aiter_text()])
    blocks = [block for block in text.split("\n\n") if block]
    assert blocks[0] == "retry: 2000"
    ticks = [json.loads(block.split("data: ", 1)[1]) for block in blocks[1:]]
    assert [tick["tick"] for tick in ticks] == [1, 2, 3]
    assert all(block.startswith(f"id: {n}\n") for n, block in enumerate(blocks[1:], 1))


async def test_an_endless_stream_can_be_left(cyclehttp_client):
    async with cyclehttp_client.stream("GET", "/ticks", params={"every": "0.01"}) as response:
        seen = 0
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                seen += 1
                if seen == 5:
                    break
    assert seen == 5
    # The server is still there for the next request.
    assert (await cyclehttp_client.get("/")).status_code == 200
