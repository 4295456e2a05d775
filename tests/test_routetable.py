"""``cyclehttp routes``: the route table as text, and the subcommand."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cyclehttp import App, Response, RouteError
from cyclehttp.app.route_table import WIDTH, format_routes, format_size
from cyclehttp.serving.cli import load_app, main

REPO_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30


def row(text: str, path: str) -> str:
    """The first row of ``text`` whose path column is ``path`` (with its continuation lines)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        columns = line.split()
        if len(columns) > 2 and path in columns[1:4] and columns[0].isdigit():
            rest = [following.strip() for following in lines[i + 1 :]]
            more = []
            for following, raw in zip(rest, lines[i + 1 :], strict=True):
                if not raw.startswith(" " * 10) or not following:
                    break
                more.append(following)
            return " ".join([line, *more])
    raise AssertionError(f"no row for {path!r} in:\n{text}")


def test_format_size() -> None:
    assert format_size(13) == "13 B"
    assert format_size(1023) == "1023 B"
    assert format_size(1229) == "1.2 KiB"
    assert format_size(3 * 1024 * 1024) == "3.0 MiB"


def test_hello_routes() -> None:
    text = format_routes(load_app("examples.hello:routes", app_dir=str(REPO_ROOT)))
    assert "6 route targets: 2 static, 4 handlers" in text
    assert "GET HEAD" in row(text, "/") and "static 200 text/plain 13 B" in row(text, "/")
    assert "static 200 application/json 27 B" in row(text, "/json")
    assert "304" in row(text, "/json")
    assert "POST" in row(text, "/echo") and "handler examples.hello.echo (sync)" in row(text, "/echo")
    assert "handler examples.hello.user (sync)" in row(text, "/users/{user_id:int}")
    assert "handler examples.hello.fail (sync)" in row(text, "/error")
    assert "handler examples.hello.sleep (async)" in row(text, "/sleep/{ms:int}")
    # the built-in answers come last, marked: a 405 per path, then the 404 (index 0)
    builtin = text.split("built-in:\n", 1)[1]
    assert builtin.count("built-in 405") == 6
    assert "built-in 405, Allow: POST" in builtin
    # OPTIONS * (RFC 9112 section 3.2.4): every method served, answered without a lookup
    assert "built-in 200, Allow: GET, HEAD, OPTIONS," in row(builtin, "*")
    assert builtin.rstrip().splitlines()[-1].split()[0] == "0"
    assert "404 Not Found" in builtin.rstrip().splitlines()[-1]
    # user rows by index: 1 .. 6
    indexes = [
        int(line.split()[0]) for line in text.split("built-in:")[0].splitlines() if line[:3].strip().isdigit()
    ]
    assert indexes == [1, 2, 3, 4, 5, 6]
    assert max(len(line) for line in text.splitlines()) <= WIDTH


def test_variants_stream_body_and_metrics_page() -> None:
    app = App()
    app.add_route("GET", "/big", Response.text("x" * 5000))

    @app.post("/upload", stream_body=True)
    async def upload(request: object) -> str:
        return "ok"

    text = format_routes(app, metrics_path="/metrics")
    big = row(text, "/big")
    assert "static 200 text/plain 4.9 KiB" in big
    assert "gzip " in big and "304" in big
    assert "upload (async, stream_body)" in row(text, "/upload")
    assert "test_variants_stream_body_and_metrics_page.<locals>.upload" in row(text, "/upload")
    assert "built-in metrics page" in text.split("built-in:", 1)[1]


def test_app_metrics_path_and_clash() -> None:
    text = format_routes(App([("GET", "/", "hi")], metrics_path="/stats"))
    assert "/stats" in text and "built-in metrics page" in text
    with pytest.raises(RouteError, match="already served by the route"):
        format_routes(App([("GET", "/metrics", "hi")]), metrics_path="/metrics")


def test_static_directory_files_are_listed(tmp_path: Path) -> None:
    (tmp_path / "css").mkdir()
    (tmp_path / "css" / "site.css").write_text("body { color: red }\n" * 100)
    (tmp_path / "index.html").write_text("<p>hi</p>")
    app = App()
    app.static("/static", tmp_path)
    text = format_routes(app)
    assert "static 200 text/css 2.0 KiB" in row(text, "/static/css/site.css")
    assert "gzip" in row(text, "/static/css/site.css")
    assert "static 200 text/html 9 B" in row(text, "/static/index.html")
    assert "handler <files of" in row(text, "/static/{path:path}")


def _env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("CYCLEHTTP_")}
    env.pop("PYTHONPATH", None)
    return env


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cyclehttp", "routes", *args],
        cwd=REPO_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_routes_command() -> None:
    result = run("examples.hello:routes", "--metrics-path", "/metrics")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("routes of examples.hello:routes\n")
    for path in ("/", "/json", "/echo", "/users/{user_id:int}", "/error", "/sleep/{ms:int}", "/metrics"):
        assert path in result.stdout
    assert "examples.hello.sleep (async)" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nomodule:x"], "cannot import module 'nomodule'"),
        (["examples.hello:echo"], "is a callable, not an App; pass --factory"),
        (["examples.hello:routes", "--metrics-path", "/json"], "already served by the route '/json'"),
        ([], "module:attr (or set CYCLEHTTP_APP)"),
    ],
)
def test_routes_command_errors_exit_2(args: list[str], expected: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    # a bad target: "cyclehttp: error:" as when serving; argparse's own: "cyclehttp routes: error:"
    prefix = "cyclehttp routes: error:" if not args else "cyclehttp: error:"
    errors = [line for line in result.stderr.splitlines() if line.startswith(prefix)]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert result.stdout == ""


def test_routes_in_process_factory_and_app_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "routes_factory_mod.py").write_text(
        "from cyclehttp import App\ndef make():\n    return App([('GET', '/made', 'made')])\n"
    )
    try:
        assert main(["routes", "routes_factory_mod:make", "--factory", "--app-dir", str(tmp_path)]) == 0
    finally:
        sys.modules.pop("routes_factory_mod", None)
        if str(tmp_path) in sys.path:
            sys.path.remove(str(tmp_path))
    out = capsys.readouterr().out
    assert "/made" in out and "static 200 text/plain 4 B" in out
