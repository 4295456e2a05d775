import pytest

from cyclehttp import App
from examples.hello import routes


@pytest.fixture
def cyclehttp_app() -> App:
    return App(routes)


async def test_root(cyclehttp_client):
    response = await cyclehttp_client.get("/")
    assert response.status_code == 200
    assert response.text == "Hello, World!"


async def test_pipelined_async_first(cyclehttp_raw):
    conn = await cyclehttp_raw()
    await conn.send(b"GET /sleep/50 HTTP/1.1\r\nHost: x\r\n\r\n" + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 49)
    responses = await conn.read_responses(50)
    assert responses[0].body == b"slept"
    assert all(r.body == b"Hello, World!" for r in responses[1:])
