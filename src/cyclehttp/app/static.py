"""Serving a directory of files: ``app.static(prefix, directory)``.

Theory of operation. When ``app.static()`` is called the directory is walked
once. Every regular file small enough (``prerender_max`` bytes, and while the
running total stays under ``prerender_total``) is read and declared as an
ordinary static route whose target is a ``Response``: the router pre-renders
it into a ``PrerenderedResponse``, so serving it is one dict lookup on the raw
path and a write of bytes that already exist, with no code of ours running.
Like the files served from disk, it answers ``Range`` (206, 416) and
``If-Range`` (``Accept-Ranges: bytes``: see ``cyclehttp.ranges``).
Those routes are a snapshot: a small file changed or deleted after start-up
is still served as it was read.

Everything else under the prefix goes to one handler route,
``prefix/{path:path}``, served by ``FileHandler``: files over the limits,
files that appeared after start-up, names a route literal cannot hold. It
resolves the path on disk for every request, refusing (404) anything that
could leave the directory, and answers with ``Response.file``.

What is refused, and why each rule exists:

* ``..`` and ``.`` segments, empty segments (``//``, which make an absolute
  path of what follows): no normalisation, the path must name the file
  directly. Clients normalise dot segments before sending, so a request that
  still holds one is a probe.
* ``%2F`` (an escaped slash): a segment is one name, never two.
* a backslash or NUL, encoded or not: not part of a POSIX name a URL should
  reach, and a path separator or terminator elsewhere.
* dotfiles and dot-directories (``.env``, ``.git/``), unless ``dotfiles=True``:
  they are rarely meant for the public and often secret.
* a symlink whose target lies outside the directory, unless
  ``follow_symlinks=True``; symlinks that stay inside are served.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import TYPE_CHECKING, Final

from cyclehttp.cycle.files import FileResponse, guess_content_type
from cyclehttp.cycle.response import Response, error_response
from cyclehttp.cycle.router import RouteSpec, _encode_path, compile_pattern
from cyclehttp.errors import RouteError

if TYPE_CHECKING:
    from cyclehttp.cycle.request import Request

__all__ = [
    "DEFAULT_PRERENDER_MAX",
    "DEFAULT_PRERENDER_TOTAL",
    "REDIRECT_STATUS",
    "FileHandler",
    "StaticDirectory",
    "StaticPlan",
    "find_owner",
]

DEFAULT_PRERENDER_MAX: Final = 64 * 1024
"""Largest file pre-rendered into memory; larger ones are read from disk per request."""

DEFAULT_PRERENDER_TOTAL: Final = 16 * 1024 * 1024
"""Cap on the file bytes one ``app.static()`` pre-renders; files past it are served from disk.

Pre-rendered bytes are not free after start-up: a body under
``SPLIT_BODY_THRESHOLD`` (16 KiB) lives in three whole-message buffers per
compiled router (and in the declared route), re-rendered with every ``Date``
tick. Measured with 1000 files of 4 KiB: ~5x the file bytes in memory at
declaration plus ~4x per compiled router, and 1.3 to 2 ms per MB per second on
the event loop for the refresh. 16 MiB of small files stays near 30 ms a second;
a site's assets are usually far less. Raise it when the files are mostly over
16 KiB (their bodies are shared, not copied).
"""

REDIRECT_STATUS: Final = 301
"""``/prefix/dir`` -> ``/prefix/dir/`` (with ``index=True``): permanent, as nginx answers."""

INDEX_FILE: Final = "index.html"

# Characters a route literal cannot hold (parameters, query, fragment): such files are
# served from disk by the handler route instead of being pre-rendered.
_NOT_LITERAL: Final = frozenset("{}?#")
# An escaped slash, backslash or NUL anywhere in the raw path: refused before decoding.
_REFUSED_ESCAPE: Final = re.compile(rb"%(?:2[fF]|5[cC]|00)")

_NOT_FOUND: Final = error_response(404).freeze()  # returned to every refused path


def _inside(real: str, root: str) -> bool:
    """True when the resolved path ``real`` is ``root`` or below it."""
    return real == root or real.startswith(root if root.endswith(os.sep) else root + os.sep)


def _valid_name(name: str, dotfiles: bool) -> bool:
    """A directory entry that may be served (reached by a URL at all)."""
    if not dotfiles and name.startswith("."):
        return False
    if "\\" in name or "\x00" in name:
        return False
    try:
        name.encode("utf-8")  # names that are not UTF-8 come as surrogates: no URL decodes to them
    except UnicodeEncodeError:
        return False
    return True


@dataclass(slots=True)
class _Found:
    """A regular file met by the walk."""

    parts: tuple[str, ...]
    real: str
    size: int


@dataclass(slots=True)
class StaticPlan:
    """The routes one ``app.static()`` declares: ``(path, target)``, GET (and HEAD)."""

    routes: list[tuple[str, object]] = field(default_factory=list)
    prerendered_files: int = 0
    prerendered_bytes: int = 0
    disk_files: int = 0


class FileHandler:
    """The handler of ``prefix/{path:path}``: a file resolved on disk for every request.

    Serves what was not pre-rendered (large files, files that appeared after
    start-up), and answers 404 for every path that is refused (see the module
    docstring) or names nothing servable. A directory, with ``index=True``,
    is served as its ``index.html`` when the URL ends in ``/``, and
    redirected to that form when it does not.
    """

    __slots__ = ("base", "directory", "dotfiles", "follow_symlinks", "index", "root")

    def __init__(
        self, base: str, root: str, directory: str, *, index: bool, follow_symlinks: bool, dotfiles: bool
    ) -> None:
        self.base = base
        self.root = root
        self.directory = directory
        self.index = index
        self.follow_symlinks = follow_symlinks
        self.dotfiles = dotfiles

    def __call__(self, request: Request) -> Response | FileResponse:
        if _REFUSED_ESCAPE.search(request.raw_path) is not None:
            return _NOT_FOUND
        relative: str = request.params.get("path", "")
        resolved = self.resolve(relative)
        if resolved is None:
            return _NOT_FOUND
        real, mode = resolved
        name = relative.rsplit("/", 1)[-1]
        if stat.S_ISDIR(mode):
            if not self.index:
                return _NOT_FOUND
            if relative and not relative.endswith("/"):
                location = _encode_path(self.base + "/" + relative + "/").decode("ascii")
                return Response(b"", REDIRECT_STATUS, headers=[("Location", location)])
            index = self._check(os.path.join(real, INDEX_FILE))
            if index is None or not stat.S_ISREG(index[1]):
                return _NOT_FOUND
            real, name = index[0], INDEX_FILE
        elif not stat.S_ISREG(mode) or relative.endswith("/"):
            return _NOT_FOUND
        try:
            return Response.file(real, content_type=guess_content_type(name))
        except OSError:  # removed or replaced since the stat above
            return _NOT_FOUND

    def resolve(self, relative: str) -> tuple[str, int] | None:
        """``(real path, st_mode)`` of the decoded relative URL path, or None when refused or missing.

        A trailing ``/`` is allowed (a directory's URL); every other segment
        must be a name that ``_valid_name`` accepts and not ``.`` or ``..``.
        """
        parts = relative.split("/") if relative else []
        if parts and parts[-1] == "":
            parts.pop()  # "dir/": the caller decides what a trailing slash means
        for part in parts:
            if part in ("", ".", "..") or not _valid_name(part, self.dotfiles):
                return None
        return self._check(os.path.join(self.root, *parts))

    def _check(self, path: str) -> tuple[str, int] | None:
        try:
            real = os.path.realpath(path, strict=True)
            mode = os.stat(real).st_mode
        except (OSError, ValueError):
            return None
        if not self.follow_symlinks and not _inside(real, self.root):
            return None
        return real, mode

    def __repr__(self) -> str:
        return f"<files of {self.directory!r} at {self.base or '/'}/>"


class StaticDirectory:
    """A validated ``app.static()`` declaration and the routes it makes.

    Raises ``RouteError`` for a prefix that is not a plain path starting
    with ``/``, a directory that does not exist or is not one, or limits that
    are not non-negative ints.
    """

    def __init__(
        self,
        prefix: str,
        directory: str | os.PathLike[str],
        *,
        index: bool = False,
        prerender_max: int = DEFAULT_PRERENDER_MAX,
        prerender_total: int = DEFAULT_PRERENDER_TOTAL,
        follow_symlinks: bool = False,
        dotfiles: bool = False,
    ) -> None:
        where = f"app.static({prefix!r}, {str(directory)!r})"
        self.where = where
        self.prefix = _check_prefix(prefix, where)
        # "/static" -> "/static"; "/" -> "": file routes are base + "/" + relative path
        self.base = "" if self.prefix == "/" else self.prefix
        if not _is_path(directory):
            raise RouteError(
                f"{where}: directory must be a str or os.PathLike, got {type(directory).__name__}"
            )
        self.directory = os.fspath(directory)
        if not os.path.exists(self.directory):
            raise RouteError(
                f"{where}: directory {os.path.abspath(self.directory)!r} does not exist; "
                "create it, or give a path relative to the working directory or an absolute one"
            )
        if not os.path.isdir(self.directory):
            raise RouteError(f"{where}: {os.path.abspath(self.directory)!r} is not a directory")
        self.root = os.path.realpath(self.directory)
        for name, value in (("prerender_max", prerender_max), ("prerender_total", prerender_total)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise RouteError(f"{where}: {name} must be an int >= 0 (bytes), got {value!r}")
        self.index = index
        self.prerender_max = prerender_max
        self.prerender_total = prerender_total
        self.follow_symlinks = follow_symlinks
        self.dotfiles = dotfiles
        self.handler = FileHandler(
            self.base,
            self.root,
            self.directory,
            index=index,
            follow_symlinks=follow_symlinks,
            dotfiles=dotfiles,
        )

    @property
    def handler_path(self) -> str:
        """The route of the files served from disk."""
        return self.base + "/{path:path}"

    def url_path(self, parts: tuple[str, ...]) -> str:
        """The route path (decoded) of a file: ``prefix/a/b.txt``."""
        return self.base + "/" + "/".join(parts)

    def plan(self) -> StaticPlan:
        """Walk the directory and build its routes (reads the files it pre-renders)."""
        plan = StaticPlan()
        files, index_dirs = self._walk()
        rendered: dict[tuple[str, ...], Response] = {}
        for found in files:
            response = self._prerender(found, plan)
            if response is None:
                plan.disk_files += 1
                continue
            rendered[found.parts] = response
            plan.routes.append((self.url_path(found.parts), response))
        if self.index:
            root_rendered = False
            for parts in index_dirs:
                response = rendered.get((*parts, INDEX_FILE))
                if response is not None:
                    # "/prefix/dir/" serves dir/index.html (the root's is "/prefix/")
                    plan.routes.append((self.url_path(parts) + ("/" if parts else ""), response))
                    root_rendered = root_rendered or not parts
            if not root_rendered:
                # "/prefix/" is not matched by {path:path} (it needs one character at least)
                plan.routes.append((self.base + "/", self.handler))
            if self.base:
                location = _encode_path(self.base + "/").decode("ascii")
                redirect = Response(b"", REDIRECT_STATUS, headers=[("Location", location)])
                plan.routes.append((self.base, redirect))
        plan.routes.append((self.handler_path, self.handler))
        return plan

    def _prerender(self, found: _Found, plan: StaticPlan) -> Response | None:
        if found.size > self.prerender_max or plan.prerendered_bytes + found.size > self.prerender_total:
            return None
        if any(c in _NOT_LITERAL for part in found.parts for c in part):
            return None
        try:
            with open(found.real, "rb") as f:
                data = f.read(self.prerender_max + 1)
                modified = os.fstat(f.fileno()).st_mtime
        except OSError:
            return None  # unreadable now: the handler answers for it (404 or the file, later)
        if len(data) > self.prerender_max or plan.prerendered_bytes + len(data) > self.prerender_total:
            return None  # it grew since the walk
        plan.prerendered_files += 1
        plan.prerendered_bytes += len(data)
        return Response(
            data,
            headers=[("Last-Modified", formatdate(modified, usegmt=True)), ("Accept-Ranges", "bytes")],
            content_type=guess_content_type(found.parts[-1]),
        )

    def _walk(self) -> tuple[list[_Found], list[tuple[str, ...]]]:
        """Regular files (sorted, depth first) and the directories holding an index.html."""
        files: list[_Found] = []
        index_dirs: list[tuple[str, ...]] = []
        stack: list[tuple[str, tuple[str, ...], frozenset[str]]] = [(self.root, (), frozenset({self.root}))]
        while stack:
            real_dir, parts, ancestors = stack.pop()
            subdirs: list[tuple[str, tuple[str, ...], frozenset[str]]] = []
            for name, real, st in self._entries(real_dir):
                if stat.S_ISDIR(st.st_mode):
                    if real not in ancestors:  # a symlink back up the tree: a loop
                        subdirs.append((real, (*parts, name), ancestors | {real}))
                elif stat.S_ISREG(st.st_mode):
                    files.append(_Found((*parts, name), real, st.st_size))
                    if name == INDEX_FILE:
                        index_dirs.append(parts)
            stack.extend(reversed(subdirs))
        files.sort(key=lambda found: found.parts)
        return files, index_dirs

    def _entries(self, real_dir: str) -> Iterator[tuple[str, str, os.stat_result]]:
        try:
            names = sorted(os.listdir(real_dir))
        except OSError:
            return
        for name in names:
            if not _valid_name(name, self.dotfiles):
                continue
            try:
                real = os.path.realpath(os.path.join(real_dir, name), strict=True)
                st = os.stat(real)
            except (OSError, ValueError):
                continue  # a dangling symlink, or removed meanwhile
            if not _inside(real, self.root):
                # never walked, whatever follow_symlinks says: the walk stays in the tree, and a
                # link out of it is served from disk (follow_symlinks=True) or refused
                continue
            yield name, real, st


def _is_path(value: object) -> bool:
    return isinstance(value, (str, os.PathLike))


def _check_prefix(prefix: object, where: str) -> str:
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise RouteError(f"{where}: the prefix must be a URL path starting with '/', e.g. '/static'")
    stripped = prefix.rstrip("/") or "/"
    if any(c in prefix for c in "{}?#%\\\x00") or any(ord(c) < 0x21 for c in prefix):
        raise RouteError(
            f"{where}: the prefix must be a plain path without parameters, '?', '#', '%', "
            "backslashes, spaces or control characters, e.g. '/static'"
        )
    if stripped != "/" and any(part in ("", ".", "..") for part in stripped[1:].split("/")):
        raise RouteError(f"{where}: the prefix has an empty, '.' or '..' segment; write it as e.g. '/static'")
    return stripped


def find_owner(routes: Iterable[RouteSpec], paths: Iterable[str], base: str) -> tuple[str, str] | None:
    """The first of ``paths`` a declared route already answers (any method): ``(path, route)``.

    A file route that duplicates a declared route would make one of them
    unreachable, and a dynamic route under the prefix (``base``) matching a
    file's path would be shadowed by it (the static table is looked up
    first): both are refused at declaration. A dynamic route that only
    reaches into the prefix, such as a fallback ``/{rest:path}``, is not a
    clash: files win over it, which is what a fallback is for.
    """
    static: dict[bytes, str] = {}
    signatures: dict[str, str] = {}
    dynamic: list[tuple[re.Pattern[bytes], str]] = []
    for spec in routes:
        signatures.setdefault(spec.pattern.signature, spec.path)
        if spec.pattern.regex is None:
            static.setdefault(spec.pattern.raw, spec.path)
        elif spec.pattern.signature.startswith(base + "/"):
            dynamic.append((spec.pattern.regex, spec.path))
    for path in paths:
        pattern = compile_pattern(path)
        if pattern.regex is not None:
            owner = signatures.get(pattern.signature)
        else:
            owner = static.get(pattern.raw) or next(
                (route for regex, route in dynamic if regex.fullmatch(pattern.raw) is not None), None
            )
        if owner is not None:
            return path, owner
    return None
