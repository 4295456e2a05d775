"""Tests of examples/forms.py: the form page, an upload, a form without its file."""

import hashlib
import os

import pytest

from cyclehttp import App
from examples.forms import app


@pytest.fixture
def cyclehttp_app() -> App:
    return app


async def test_the_form_page(cyclehttp_client):
    response = await cyclehttp_client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'enctype="multipart/form-data"' in response.text


async def test_an_upload(cyclehttp_client):
    data = os.urandom(300_000)
    response = await cyclehttp_client.post(
        "/upload",
        data={"title": "holiday", "tags": ["a", "b"]},
        files={"file": ("photo.jpg", data, "image/jpeg")},
    )
    assert response.status_code == 200
    assert response.json() == {
        "title": "holiday",
        "tags": ["a", "b"],
        "filename": "photo.jpg",
        "content_type": "image/jpeg",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


async def test_a_form_without_its_file_is_422_and_not_a_form_is_415(cyclehttp_client):
    response = await cyclehttp_client.post("/upload", data={"title": "no file"})
    assert response.status_code == 422
    response = await cyclehttp_client.post("/upload", json={"title": "json"})
    assert response.status_code == 415
