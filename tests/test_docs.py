"""The docs (mkdocs.yml, docs/) build in strict mode, and strict mode catches a broken reference.

A reference to a name that does not exist (``::: cyclehttp.NoSuchThing``), a link to a page that
does not exist, or a docstring mkdocstrings cannot read is a warning, and ``--strict`` makes any
warning fail the build. So this test is what keeps the API reference in step with the code.
"""

from __future__ import annotations

import os
import re
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


# --- One source: the README is the front page, docs/ is the guide --------------------------------

README = REPO / "README.md"
# Shorter paragraphs (a line that leads into a code block, "MIT", a command) may well be said twice.
MIN_PARAGRAPH_CHARS = 80
LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
HEADING = re.compile(r"^ {0,3}#{1,6}(?:\s|$)")


def normalise(text: str) -> str:
    """Whitespace collapsed and links reduced to their text, so a reflowed or relinked copy is the same."""
    return " ".join(LINK.sub(r"\1", text).split())


def paragraphs(markdown: str) -> list[str]:
    """The prose of a Markdown text, normalised: one string per paragraph, and one per list item.

    A paragraph is a block of non-empty lines between blank lines. Fenced code blocks, headings
    and table rows are not prose and are skipped; so are paragraphs under MIN_PARAGRAPH_CHARS.
    Each list item counts on its own, so one item copied out of a list is found too.
    """
    found: list[str] = []
    block: list[str] = []
    fence = ""

    def end_block() -> None:
        text = normalise(" ".join(block))
        if len(text) >= MIN_PARAGRAPH_CHARS:
            found.append(text)
        block.clear()

    for line in markdown.splitlines():
        stripped = line.strip()
        if fence:
            if stripped.startswith(fence):
                fence = ""
            continue
        if stripped.startswith(("```", "~~~")):
            end_block()
            fence = stripped[:3]
        elif not stripped or HEADING.match(line) or stripped.startswith("|"):
            end_block()
        elif LIST_ITEM.match(line):
            end_block()
            block.append(LIST_ITEM.sub("", line))
        else:
            block.append(stripped)
    end_block()
    return found


def repeated_paragraphs(readme: str, pages: dict[str, str]) -> list[tuple[str, str]]:
    """(page, paragraph) for every README paragraph that a page repeats, whole or inside a longer one."""
    readme_paragraphs = paragraphs(readme)
    repeated = []
    for name, page in pages.items():
        for paragraph in paragraphs(page):
            for ours in readme_paragraphs:
                if ours in paragraph or paragraph in ours:
                    repeated.append((name, ours))
    return repeated


def docs_pages() -> dict[str, str]:
    return {
        page.relative_to(REPO).as_posix(): page.read_text(encoding="utf-8")
        for page in sorted((REPO / "docs").rglob("*.md"))
    }


def test_no_readme_paragraph_is_repeated_in_the_docs() -> None:
    repeated = repeated_paragraphs(README.read_text(encoding="utf-8"), docs_pages())
    listing = "\n".join(f"- {name}: {paragraph[:120]}..." for name, paragraph in repeated)
    assert not repeated, (
        "README.md repeats these paragraphs of docs/; the guide is their one source: keep them there "
        f"and link to the page from README.md\n{listing}"
    )


GUIDE_PARAGRAPH = """\
- **Where**: in every serving process: the single process, each `--workers` worker, each
  gunicorn worker, and each test server of the [pytest fixtures](testing.md). Connections that
  arrive while the startup hooks run wait in the listen backlog.
"""


def test_a_paragraph_pasted_into_the_readme_is_found() -> None:
    # The detector itself, on strings: the real files are never touched.
    page = "# Startup\n\nSome other text.\n\n" + GUIDE_PARAGRAPH + "- another item\n"
    readme = "# cyclehttp\n\nA front page.\n\n" + GUIDE_PARAGRAPH
    assert repeated_paragraphs(readme, {"guide.md": page}) == [("guide.md", normalise(GUIDE_PARAGRAPH[2:]))]
    # Reflowed, relinked, and set inside a paragraph of its own: still found.
    reflowed = " ".join(GUIDE_PARAGRAPH[2:].split()).replace("(testing.md)", "(docs/guide/testing.md)")
    readme = "# cyclehttp\n\nIntro of the README. " + reflowed + "\nAnd one more sentence.\n"
    assert [name for name, _ in repeated_paragraphs(readme, {"guide.md": page})] == ["guide.md"]
    # The same paragraph with one word changed is a different paragraph.
    changed = GUIDE_PARAGRAPH.replace("listen backlog", "kernel's backlog")
    assert repeated_paragraphs("# cyclehttp\n\n" + changed, {"guide.md": page}) == []


def test_what_may_be_said_twice_is_not_a_repeat() -> None:
    # Code blocks (the Quick-start commands), headings, table rows and short lines may appear in both.
    long_comment = "# a long comment line that is well over eighty characters long, in a code block\n"
    shared = (
        "## Quick start\n\nNeeds Python 3.11+ and pip. From a clone of this repository:\n\n"
        "```sh\npip install . && cyclehttp examples.hello:routes\n```\n\n"
        f"```python\n{long_comment}{long_comment}```\n\n"
        "| request | answer |\n|---|---|\n| `GET /` | 200 `text/plain` `Hello, World!` (static buffer), "
        "a table row longer than eighty characters |\n"
    )
    assert paragraphs(shared) == []
    assert repeated_paragraphs("# cyclehttp\n\n" + shared, {"index.md": "# Home\n\n" + shared}) == []


def test_a_real_guide_paragraph_in_the_readme_would_fail() -> None:
    # Plant the first long paragraph of a real guide page into the real README, in memory.
    page = (REPO / "docs" / "guide" / "lifecycle.md").read_text(encoding="utf-8")
    planted = paragraphs(page)[0]
    readme = README.read_text(encoding="utf-8") + "\n" + planted + "\n"
    assert ("docs/guide/lifecycle.md", planted) in repeated_paragraphs(readme, docs_pages())


def first_python_block_after(text: str, heading: str) -> str:
    start = text.index(heading)
    found = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL).search(text, start)
    assert found is not None, f"no ```python block after {heading!r}"
    return found.group(1)


def test_the_readme_testing_example_is_the_guides() -> None:
    # Code blocks may appear in both, so this one is kept identical rather than left to drift.
    readme = first_python_block_after(README.read_text(encoding="utf-8"), "## Testing your app")
    guide_page = (REPO / "docs" / "guide" / "testing.md").read_text(encoding="utf-8")
    assert readme == first_python_block_after(guide_page, "# Testing your app")
