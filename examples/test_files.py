"""Tests of examples/files.py: whole files, 304, a resumed download."""

import os
from pathlib import Path

import pytest

import examples.files
from cyclehttp import App
from examples.files import routes


@pytest.fixture
def cyclehttp_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> App:
    (tmp_path / "big.bin").write_bytes(os.urandom(1_000_000))
    monkeypatch.setattr(examples.files, "DOWNLOADS", tmp_path)
    return App(routes)


async def test_readme_and_its_304(cyclehttp_client):
    response = await cyclehttp_client.get("/readme")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.content == Path(examples.files.__file__).read_bytes()
    again = await cyclehttp_client.get("/readme", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304
    modified = await cyclehttp_client.get(
        "/readme", headers={"If-Modified-Since": response.headers["last-modified"]}
    )
    assert modified.status_code == 304


async def test_a_download_resumes_with_range(cyclehttp_client, tmp_path: Path):
    whole = (tmp_path / "big.bin").read_bytes()
    head = await cyclehttp_client.head("/download/big.bin")
    assert head.headers["content-disposition"] == 'attachment; filename="big.bin"'
    assert head.headers["accept-ranges"] == "bytes"
    assert head.headers["content-length"] == str(len(whole))
    first = await cyclehttp_client.get("/download/big.bin", headers={"Range": "bytes=0-99999"})
    assert first.status_code == 206
    rest = await cyclehttp_client.get(
        "/download/big.bin", headers={"Range": "bytes=100000-", "If-Range": head.headers["etag"]}
    )
    assert rest.status_code == 206
    assert rest.headers["content-range"] == f"bytes 100000-{len(whole) - 1}/{len(whole)}"
    assert first.content + rest.content == whole


async def test_missing_downloads_are_404(cyclehttp_client):
    for name in ("nope.bin", ".hidden", "..", "%2e%2e%2ffiles.py"):
        assert (await cyclehttp_client.get(f"/download/{name}")).status_code == 404, name
