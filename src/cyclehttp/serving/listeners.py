"""Where the server listens: TCP, a Unix socket (``--uds``), an inherited fd (``--fd``), systemd.

``open_listeners`` returns listening, non-blocking stream sockets; the server
(or a supervisor handing them to worker processes) only accepts on them.
Which listener is used, first match wins:

1. systemd socket activation: ``LISTEN_PID`` is this process and ``LISTEN_FDS``
   is set. The fds 3 .. 3+N-1 are taken, and the variables are removed from
   ``os.environ`` (as ``sd_listen_fds(1)`` does) so child processes do not
   mistake themselves for the activated one.
2. ``fd``: an inherited listening socket, TCP or Unix (uvicorn's ``--fd``
   assumed Unix, uvicorn #295; process managers pass TCP sockets too).
3. ``uds``: a Unix socket bound at a path, with stale-socket handling.
4. TCP ``host:port``: every address the host resolves to.

Every inherited fd is checked before use: a file, a pipe, a datagram socket or
a socket nobody called ``listen()`` on would otherwise fail much later, with a
confusing error from the event loop, or silently never accept.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import weakref
from collections.abc import Sequence
from typing import Any

__all__ = ["ListenError", "close_listeners", "describe", "open_listeners"]

logger = logging.getLogger("cyclehttp")

SD_LISTEN_FDS_START = 3
"""The first fd systemd passes (``SD_LISTEN_FDS_START`` in sd-daemon.h)."""

UDS_MODE = 0o660
"""Mode of a Unix socket file we bind: owner and group may connect (connecting needs write
permission). The usual setup puts the proxy's user (nginx, www-data) in the server's group;
0o666, uvicorn's choice, lets every local user talk to the app."""

_UDS_PATH_MAX = 107
"""Longest AF_UNIX path on Linux: ``sun_path`` is 108 bytes with the terminating NUL."""

_PROBE_TIMEOUT = 1.0
"""Seconds to wait when connecting to an existing socket file to see whether it is alive."""

# Unix socket files this process bound: socket -> (pid, path, st_dev, st_ino). The pid keeps
# a forked child, which inherits this table, from removing the file its parent serves on.
_created: weakref.WeakKeyDictionary[socket.socket, tuple[int, str, int, int]] = weakref.WeakKeyDictionary()


class ListenError(Exception):
    """Cannot listen as asked; the message says why and what to do."""


def open_listeners(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    uds: str | None = None,
    fd: int | None = None,
    backlog: int = 2048,
    reuse_port: bool = False,
) -> list[socket.socket]:
    """Open the listening sockets to serve on, by the precedence in the module docstring.

    Sockets this call binds get SO_REUSEADDR (a restart does not wait for TIME_WAIT) and
    ``listen(backlog)``; inherited ones (``fd``, systemd) are already listening. With
    ``reuse_port`` the TCP sockets also get SO_REUSEPORT, so several processes can each bind
    the same port and the kernel spreads connections over them.

    Raises ``ListenError`` for a request that cannot work whatever the system state (two
    listeners named, a fd that is not a listening socket, a live server on the ``uds`` path)
    and ``OSError`` when the system refuses (port in use, permission denied).
    """
    if backlog < 1:
        raise ListenError(f"backlog must be a number >= 1, got {backlog}")
    if uds is not None and fd is not None:
        raise ListenError("--uds and --fd both name where to listen: give only one of them")
    activated = _systemd_fds()
    if activated is not None:
        if reuse_port:
            raise ListenError(
                "SO_REUSEPORT only applies to a TCP socket cyclehttp binds itself; "
                "systemd passed the sockets here: drop the reuse-port option"
            )
        if uds is not None or fd is not None:
            logger.warning("systemd passed the listening sockets; --uds/--fd are ignored")
        return [_adopt(number, f"systemd fd {number} ({name})") for number, name in activated]
    if (uds is not None or fd is not None) and reuse_port:
        raise ListenError(
            "SO_REUSEPORT only applies to a TCP socket cyclehttp binds itself, not to --uds or --fd"
        )
    if fd is not None:
        return [_adopt(fd, f"--fd {fd}")]
    if uds is not None:
        return [_bind_unix(uds, backlog)]
    return _bind_tcp(host, port, backlog, reuse_port)


def describe(sock: socket.socket) -> str:
    """Where ``sock`` listens, as a user would type it: ``http://127.0.0.1:8000``,
    ``http://[::1]:8000``, ``unix:/run/app.sock``."""
    address: Any = sock.getsockname()
    if sock.family == socket.AF_INET6:
        return f"http://[{address[0]}]:{address[1]}"
    if sock.family == socket.AF_INET:
        return f"http://{address[0]}:{address[1]}"
    if sock.family == socket.AF_UNIX:
        if isinstance(address, bytes):  # the abstract namespace: a leading NUL
            return "unix:@" + address[1:].decode("utf-8", "replace")
        return f"unix:{address}" if address else "unix:(unnamed)"
    return str(address)


def close_listeners(socks: Sequence[socket.socket]) -> None:
    """Close ``socks``, and remove the file of a Unix socket this process bound.

    The file is removed only if the path still holds the very socket we created (same
    device and inode): if another server has meanwhile replaced it, it is left alone.
    Inherited sockets' files belong to whoever created them and are never removed.
    """
    for sock in socks:
        record = _created.pop(sock, None)
        sock.close()
        if record is None:
            continue
        pid, path, device, inode = record
        if pid != os.getpid():
            continue
        try:
            found = os.lstat(path)
        except OSError:
            continue
        if (found.st_dev, found.st_ino) == (device, inode) and stat.S_ISSOCK(found.st_mode):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        else:
            logger.info("not removing %s: another socket or file has replaced ours", path)


# --- systemd ------------------------------------------------------------------


def _systemd_fds() -> list[tuple[int, str]] | None:
    """The (fd, name) pairs systemd passed this process, or None when it was not activated."""
    listen_pid = os.environ.get("LISTEN_PID")
    listen_fds = os.environ.get("LISTEN_FDS")
    names = os.environ.get("LISTEN_FDNAMES")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if listen_pid is None or listen_fds is None:
        return None
    try:
        for_us = int(listen_pid) == os.getpid()
    except ValueError:
        raise ListenError(f"LISTEN_PID must be a process id, got {listen_pid!r}") from None
    if not for_us:
        logger.debug("ignoring LISTEN_FDS: LISTEN_PID=%s is another process", listen_pid)
        return None
    try:
        count = int(listen_fds)
    except ValueError:
        raise ListenError(f"LISTEN_FDS must be a number of fds, got {listen_fds!r}") from None
    if count < 1:
        return None
    labels = names.split(":") if names else []
    if len(labels) != count:
        labels = ["unknown"] * count
    fds = [(SD_LISTEN_FDS_START + i, labels[i]) for i in range(count)]
    logger.info(
        "systemd socket activation: taking fd%s %s",
        "s" if count > 1 else "",
        ", ".join(f"{number} ({label})" for number, label in fds),
    )
    return fds


# --- inherited fds ------------------------------------------------------------


def _adopt(fd: int, origin: str) -> socket.socket:
    """Wrap an inherited fd, after checking that it is a listening stream socket we can serve."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise ListenError(f"{origin}: the fd is not open in this process ({exc.strerror})") from None
    if not stat.S_ISSOCK(mode):
        raise ListenError(
            f"{origin} is a {_file_kind(mode)}, not a socket: pass the fd of a listening socket"
        )
    sock = socket.socket(fileno=fd)
    try:
        if sock.family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
            raise ListenError(
                f"{origin} is a {sock.family.name} socket: cyclehttp serves TCP or Unix sockets"
            )
        if sock.type != socket.SOCK_STREAM:
            raise ListenError(
                f"{origin} is a {sock.type.name} socket, not a stream socket: "
                "HTTP needs SOCK_STREAM (ListenStream= in a systemd .socket unit)"
            )
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ListenError(
                f"{origin} is a socket that is not listening: call listen() on it before passing it"
            )
    except BaseException:
        sock.detach()  # the fd is the caller's: leave it open
        raise
    # Like every socket Python creates, do not leak it into processes we start.
    sock.set_inheritable(False)
    sock.setblocking(False)
    logger.debug("%s: serving on %s", origin, describe(sock))
    return sock


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "pipe"),
        (stat.S_ISCHR, "character device (a terminal?)"),
        (stat.S_ISBLK, "block device"),
    )
    for test, kind in kinds:
        if test(mode):
            return kind
    return "file that is not a socket"


# --- Unix sockets ---------------------------------------------------------------


def _bind_unix(path: str, backlog: int) -> socket.socket:
    """Bind a Unix socket at ``path``, replacing a stale socket file but nothing else."""
    if not path:
        raise ListenError("--uds needs a path, e.g. /run/app/app.sock")
    if len(os.fsencode(path)) > _UDS_PATH_MAX:
        raise ListenError(
            f"Unix socket path {path!r} is {len(os.fsencode(path))} bytes; the limit is "
            f"{_UDS_PATH_MAX}: choose a shorter path"
        )
    _clear_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        # Before listen(): until then every connect is refused, so no client ever
        # reaches the socket while it still has the umask's mode.
        os.chmod(path, UDS_MODE)
        found = os.lstat(path)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    _created[sock] = (os.getpid(), path, found.st_dev, found.st_ino)
    return sock


def _clear_stale_socket(path: str) -> None:
    """Remove ``path`` if it is a socket nobody listens on; refuse anything else there."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        kind = "symbolic link" if stat.S_ISLNK(mode) else _file_kind(mode)
        raise ListenError(
            f"{path} exists and is a {kind}, not a socket; it was left alone: "
            "remove it yourself or choose another --uds path"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(_PROBE_TIMEOUT)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        pass  # nobody listens: a leftover of a server that did not clean up
    except TimeoutError:
        # The backlog is full: a server is there, just busy.
        raise ListenError(
            f"another server is listening on {path} (it did not answer within "
            f"{_PROBE_TIMEOUT:g} s): stop it or choose another --uds path"
        ) from None
    except FileNotFoundError:
        return  # removed meanwhile
    except OSError as exc:
        raise ListenError(
            f"cannot tell whether the socket {path} is in use ({exc}): remove it yourself"
        ) from None
    else:
        raise ListenError(f"another server is listening on {path}: stop it or choose another --uds path")
    finally:
        probe.close()
    logger.info("removing stale socket %s (nothing listens on it)", path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# --- TCP ------------------------------------------------------------------------


def _bind_tcp(host: str, port: int, backlog: int, reuse_port: bool) -> list[socket.socket]:
    """Bind every address ``host`` resolves to (``localhost``: 127.0.0.1 and ::1), like asyncio."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # "[::1]", the URL spelling of an IPv6 address
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise ListenError("SO_REUSEPORT is not available on this platform")
    infos = socket.getaddrinfo(
        host or None, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    addresses: list[tuple[socket.AddressFamily, Any]] = []
    for info in infos:
        if info[0] in (socket.AF_INET, socket.AF_INET6) and (info[0], info[4]) not in addresses:
            addresses.append((info[0], info[4]))
    socks: list[socket.socket] = []
    try:
        for family, address in addresses:
            if port == 0 and socks:
                # Port 0 on several addresses: one port for all, not a different one each.
                address = (address[0], socks[0].getsockname()[1], *address[2:])
            sock = socket.socket(family, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6 and len(addresses) > 1:
                # With an IPv4 address beside it, the IPv6 socket must not claim IPv4 too.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL and family == socket.AF_INET6 and len(addresses) > 1:
                    # "localhost" on a host with IPv6 disabled: serve IPv4 alone.
                    logger.debug("skipping %s: %s", address, exc)
                    socks.pop().close()
                    continue
                raise
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks
