"""The docs (mkdocs.yml, docs/) build in strict mode, and strict mode catches a broken reference.

A reference to a name that does not exist (``::: cyclehttp.NoSuchThing``), a link to a page that
does not exist, or a docstring mkdocstrings cannot read is a warning, and ``--strict`` makes any
warning fail the build. So this test is what keeps the API reference in step with the code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT = 120.0

if os.environ.get("CI"):
    # CI installs the docs extra ('.[dev]' includes it): a missing mkdocs there is a failure.
    import mkdocs  # noqa: F401
    import mkdocstrings  # noqa: F401
else:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install '.[docs]'")
    pytest.importorskip("mkdocstrings", reason="the docs extra is not installed: pip install '.[docs]'")


def build(config: Path, site_dir: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config)]
    return subprocess.run(
        [*command, "--site-dir", str(site_dir)],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        # The material theme prints a banner about MkDocs 2.0 on every build; it is not a warning.
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_docs_build_in_strict_mode(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = build(REPO / "mkdocs.yml", site)
    assert result.returncode == 0, result.stderr + result.stdout
    assert (site / "index.html").is_file()
    assert "Path parameters" in (site / "guide" / "routes" / "index.html").read_text(encoding="utf-8")
    # The API reference is generated from the code: the anchors of real objects are there.
    app_page = (site / "reference" / "app" / "index.html").read_text(encoding="utf-8")
    assert 'id="cyclehttp.App.add_route"' in app_page
    config_page = (site / "reference" / "config" / "index.html").read_text(encoding="utf-8")
    assert 'id="cyclehttp.config.Config"' in config_page


def copy_docs(tmp_path: Path) -> Path:
    """A copy of mkdocs.yml and docs/ in tmp_path, reading the source from this checkout."""
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    config = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    assert "paths: [src]" in config
    config = config.replace("paths: [src]", f"paths: [{(REPO / 'src').as_posix()!r}]")
    (tmp_path / "mkdocs.yml").write_text(config, encoding="utf-8")
    return tmp_path / "mkdocs.yml"


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("::: cyclehttp.NoSuchThing\n", "cyclehttp.NoSuchThing"),
        ("See [the missing page](../guide/no-such-page.md).\n", "no-such-page.md"),
    ],
    ids=["unknown-object", "unknown-page"],
)
def test_strict_build_fails_on_a_broken_reference(tmp_path: Path, broken: str, message: str) -> None:
    config = copy_docs(tmp_path)
    page = tmp_path / "docs" / "reference" / "errors.md"
    page.write_text(page.read_text(encoding="utf-8") + "\n" + broken, encoding="utf-8")
    result = build(config, tmp_path / "site")
    assert result.returncode != 0, result.stderr + result.stdout
    assert message in result.stderr + result.stdout


def test_every_public_name_has_a_reference_entry() -> None:
    import cyclehttp

    pages = sorted((REPO / "docs" / "reference").glob("*.md"))
    reference = "\n".join(page.read_text(encoding="utf-8") for page in pages)
    missing = [name for name in cyclehttp.__all__ if f"::: cyclehttp.{name}\n" not in reference]
    assert not missing, f"add '::: cyclehttp.NAME' for these to a page under docs/reference/: {missing}"
