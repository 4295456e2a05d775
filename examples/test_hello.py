"""Tests of examples/hello.py, written the way a user tests an app.

The fixtures come from the cyclehttp pytest plugin that installs with the
package: no conftest.py needed.
"""

import pytest

from cyclehttp import App
from examples.hello import routes


@pytest.fixture
def cyclehttp_app() -> App:
    return App(routes)


async def test_hello(cyclehttp_client):
    response = await cyclehttp_client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "Hello, World!"


async def test_json(cyclehttp_client):
    response = await cyclehttp_client.get("/json")
    assert response.json() == {"message": "Hello, World!"}


async def test_echo(cyclehttp_client):
    response = await cyclehttp_client.post("/echo", content=b"\x00binary\xff")
    assert response.content == b"\x00binary\xff"


async def test_user_ids_are_integers(cyclehttp_client):
    assert (await cyclehttp_client.get("/users/42")).json() == {"id": 42}
    assert (await cyclehttp_client.get("/users/forty-two")).status_code == 404


async def test_a_failing_handler_is_a_500_and_the_server_keeps_serving(cyclehttp_client):
    assert (await cyclehttp_client.get("/error")).status_code == 500
    assert (await cyclehttp_client.get("/")).status_code == 200


async def test_wrong_method_is_405_with_allow(cyclehttp_client):
    response = await cyclehttp_client.delete("/")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


async def test_raw_bytes(cyclehttp_raw):
    connection = await cyclehttp_raw()
    await connection.send(
        b"GET /sleep/10 HTTP/1.1\r\nHost: t\r\n\r\nGET /users/1 HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    slept, user = await connection.read_responses(2)
    assert slept.body == b"slept"
    assert user.json() == {"id": 1}
