"""Forms and uploads: an HTML form, and a handler that reads its fields and file.

Run it with ``cyclehttp examples.forms:app --max-body-size 104857600`` from the
repository root, open http://127.0.0.1:8000/ in a browser, or
``curl -F title=holiday -F tags=a -F tags=b -F file=@photo.jpg http://127.0.0.1:8000/upload``.

``POST /upload`` is a ``stream_body`` route: ``request.form()`` feeds the body
to the multipart parser as it arrives, and the file goes to a temporary file
beyond 1 MiB, so an upload of any size (up to ``max_body_size``) costs about
the same memory. The server closes (and so removes) the temporary file after
the answer is sent. Malformed or oversized forms are answered 400/413/415 by
``form()`` itself.
"""

import hashlib

from cyclehttp import App, HTTPError, Request, Response

PAGE = """<!doctype html>
<title>cyclehttp upload</title>
<form method="post" action="/upload" enctype="multipart/form-data">
  <p><label>Title <input name="title"></label></p>
  <p><label><input type="checkbox" name="tags" value="a"> a</label>
     <label><input type="checkbox" name="tags" value="b"> b</label></p>
  <p><input type="file" name="file"></p>
  <p><button>Upload</button></p>
</form>
"""

app = App()
app.add_route("GET", "/", Response.html(PAGE))


async def upload(request: Request) -> dict[str, object]:
    """POST /upload: the fields, and the file's name, size and sha256."""
    form = await request.form()
    files = form.files.get("file")
    if not files:
        raise HTTPError(422, "the form has no 'file' field")
    upload = files[0]
    digest = hashlib.sha256()
    while chunk := upload.read(1024 * 1024):
        digest.update(chunk)
    return {
        "title": form.get("title", ""),
        "tags": form.getall("tags"),
        "filename": upload.filename,
        "content_type": upload.content_type,
        "size": upload.size,
        "sha256": digest.hexdigest(),
    }


app.add_route("POST", "/upload", upload, stream_body=True)
