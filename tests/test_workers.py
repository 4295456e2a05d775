"""``--workers N``: the supervisor through the real CLI, and metrics across workers.

Every server here is ``python -m cyclehttp`` in its own session (process
group), so a ``finally`` can kill the supervisor and every worker at once.
Worker pids are read from /proc (the supervisor's children); every network
wait has a timeout. The shared-memory slots and snapshot merging are also
tested in-process, without processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cyclehttp.clock.histogram import LogHistogram
from cyclehttp.clock.metrics_page import render_metrics
from cyclehttp.clock.metrics_reader import fetch, parse
from cyclehttp.clock.shared import (
    TRUNCATED,
    SharedStats,
    WorkerSlot,
    decode_snapshot,
    encode_snapshot,
    merge_snapshots,
)
from cyclehttp.clock.stats import RouteCount, Stats, StatsSnapshot
from cyclehttp.serving.workers import MAX_BACKOFF, restart_delay

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork, /proc and SO_REUSEPORT")

TIMEOUT = 5.0
"""Seconds any single wait (a connection, a response, a condition) may take."""

APP = """
import asyncio, os
from cyclehttp import App, Response

app = App()
app.add_route("GET", "/", Response.text("hello"))

@app.get("/pid")
def pid(request):
    return str(os.getpid())

@app.get("/slow")
async def slow(request):
    await asyncio.sleep(0.5)
    return "slow done"
"""


# --- helpers ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> set[int]:
    """Live (non-zombie) child processes of ``pid``, from /proc."""
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(condition: Callable[[], object], timeout: float = TIMEOUT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.02)


def get(port: int, path: str, timeout: float = TIMEOUT) -> tuple[int, bytes]:
    """One request on a new connection (``Connection: close``): status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


class Served:
    """A ``cyclehttp --workers`` process: its port, log and worker pids."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log
        self.seen_workers: set[int] = set()

    def workers(self) -> set[int]:
        pids = children(self.process.pid)
        self.seen_workers |= pids
        return pids

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        status, body = get(self.port, "/metrics")
        assert status == 200
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((sample.labels, sample.value))
        return samples


def _start(tmp_path: Path, port: int, args: tuple[str, ...]) -> subprocess.Popen[bytes]:
    log = (tmp_path / "server.log").open("wb")
    with log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cyclehttp",
                "wapp:app",
                "--app-dir",
                str(tmp_path),
                "--port",
                str(port),
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def serve(tmp_path: Path, *args: str, workers: int = 2) -> Iterator[Served]:
    (tmp_path / "wapp.py").write_text(APP)
    process: subprocess.Popen[bytes] | None = None
    served: Served | None = None
    try:
        for attempt in range(2):  # a port taken between free_port() and the bind: once more
            port = free_port()
            process = _start(tmp_path, port, args)
            served = Served(process, port, tmp_path / "server.log")
            deadline = time.monotonic() + TIMEOUT * 2
            while time.monotonic() < deadline and process.poll() is None:
                if _listening(port) and len(served.workers()) == workers:
                    break
                time.sleep(0.05)
            if process.poll() is None or attempt == 1 or "cannot listen" not in served.text():
                break
        assert served is not None
        assert process is not None and process.poll() is None, served.text()
        yield served
    finally:
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=TIMEOUT)
        if served is not None:
            for pid in served.seen_workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def stop(served: Served) -> int:
    """SIGTERM the supervisor; its exit status (every worker must be gone)."""
    served.workers()
    served.process.send_signal(signal.SIGTERM)
    status = served.process.wait(timeout=TIMEOUT * 3)
    for pid in served.seen_workers:
        wait_until(lambda pid=pid: not alive(pid), what=f"worker {pid} gone")  # type: ignore[misc]
    return status


def total_requests(samples: dict[str, list[tuple[dict[str, str], float]]], skip: str = "/metrics") -> int:
    return int(sum(v for labels, v in samples.get("cyclehttp_requests_total", []) if labels["route"] != skip))


# --- the supervisor, through the CLI ------------------------------------------------


def replaced(served: Served, victim: int) -> set[int]:
    """Wait until two workers run and ``victim`` is not one of them; return them.

    One /proc scan per check: two scans could see different moments (the victim
    gone in one, its replacement not yet forked in the other).
    """
    scans: list[set[int]] = []

    def done() -> bool:
        scans.append(served.workers())
        return len(scans[-1]) == 2 and victim not in scans[-1]

    wait_until(done, what="replacement")
    return scans[-1]


@pytest.mark.parametrize("balance", ["reuseport", "shared"])
def test_two_workers_serve(tmp_path: Path, balance: str) -> None:
    with serve(tmp_path, "--workers", "2", "--balance", balance) as served:
        workers = served.workers()
        assert len(workers) == 2
        answered: set[int] = set()
        for _ in range(60):
            status, body = get(served.port, "/pid")
            assert status == 200
            answered.add(int(body))
            if answered == workers and balance == "reuseport":
                break
        assert answered <= workers
        if balance == "reuseport":
            # The kernel hashes each new connection to one of the two sockets.
            assert answered == workers
        assert "(2 workers, " in served.text()
        assert stop(served) == 0


def test_killed_worker_is_replaced_with_back_off(tmp_path: Path) -> None:
    with serve(tmp_path, "--workers", "2") as served:
        first = served.workers()
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        replacement = (replaced(served, victim) - first).pop()
        log = served.text()
        assert f"(pid {victim}) was killed by SIGKILL" in log
        assert "restarting it now" in log
        for _ in range(20):
            assert get(served.port, "/")[0] == 200
        # The replacement dies at once too: now the supervisor waits before the next start.
        os.kill(replacement, signal.SIGKILL)
        wait_until(lambda: "restarting it in 0.5 s" in served.text(), what="back-off logged")
        wait_until(lambda: len(served.workers()) == 2, what="second replacement")
        assert get(served.port, "/")[0] == 200
        assert stop(served) == 0


def test_sigterm_drains_requests_in_flight(tmp_path: Path) -> None:
    with serve(tmp_path, "--workers", "2") as served:
        results: list[tuple[int, bytes] | BaseException] = []
        sent = threading.Semaphore(0)

        def slow_request() -> None:
            try:
                with socket.create_connection(("127.0.0.1", served.port), timeout=TIMEOUT) as sock:
                    sock.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
                    sent.release()
                    data = b""
                    while chunk := sock.recv(65536):
                        data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                results.append((int(head.split(b" ", 2)[1]), body))
            except BaseException as exc:
                results.append(exc)
                sent.release()

        threads = [threading.Thread(target=slow_request) for _ in range(6)]
        for thread in threads:
            thread.start()
        for _ in threads:
            assert sent.acquire(timeout=TIMEOUT)
        time.sleep(0.15)  # the requests are read and their handlers are sleeping
        workers = served.workers()
        assert stop(served) == 0
        for thread in threads:
            thread.join(timeout=TIMEOUT)
        assert results == [(200, b"slow done")] * 6
        assert not any(alive(pid) for pid in workers)
        assert not _listening(served.port)


def test_metrics_page_counts_the_whole_server(tmp_path: Path) -> None:
    with serve(tmp_path, "--workers", "2", "--metrics-path", "/metrics") as served:
        for _ in range(30):
            assert get(served.port, "/")[0] == 200
        # The other worker's figures are published once a second.
        wait_until(lambda: total_requests(served.metrics()) == 30, timeout=4, what="30 requests on the page")
        samples = served.metrics()
        assert samples["cyclehttp_workers"][0][1] == 2
        per_worker = {labels["worker"]: v for labels, v in samples["cyclehttp_worker_requests_total"]}
        assert set(per_worker) == {"0", "1"}
        assert all(v > 0 for v in per_worker.values()), per_worker  # SO_REUSEPORT spread them
        pids = {int(labels["pid"]) for labels, _ in samples["cyclehttp_worker_info"]}
        assert pids == served.workers()
        histogram = {
            labels.get("le"): v for labels, v in samples["cyclehttp_request_duration_seconds_bucket"]
        }
        assert histogram["+Inf"] >= 30
        # What `cyclehttp stats URL` reads: the whole server too.
        figures = parse(fetch(f"http://127.0.0.1:{served.port}/metrics"))
        assert figures.requests is not None
        assert sum(n for (_, route, _), n in figures.requests.items() if route != "/metrics") == 30

        # A worker that stops (gracefully) and is replaced: its counts stay on the page.
        victim = pids.pop()
        os.kill(victim, signal.SIGTERM)
        replaced(served, victim)
        wait_until(
            lambda: sum(v for _, v in served.metrics()["cyclehttp_worker_starts_total"]) == 3,
            what="replacement published",
        )
        assert total_requests(served.metrics()) == 30
        assert stop(served) == 0
        assert "all workers: stopped after" in served.text()


@pytest.mark.parametrize("value", ["0", "auto"])
def test_workers_auto_is_one_per_cpu(tmp_path: Path, value: str) -> None:
    cpus = os.cpu_count() or 1
    if cpus == 1:
        pytest.skip("one CPU: --workers auto means a single process")
    with serve(tmp_path, "--workers", value, workers=cpus) as served:
        assert len(served.workers()) == cpus
        assert get(served.port, "/")[0] == 200
        assert stop(served) == 0


@pytest.mark.parametrize(
    ("value", "message"), [("-1", "expected a number of processes >= 1"), ("abc", "'auto'")]
)
def test_bad_workers_value_exits_2(value: str, message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cyclehttp", "examples.hello:routes", "--workers", value],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
    )
    assert result.returncode == 2
    assert "argument --workers" in result.stderr and message in result.stderr


def test_bad_target_with_workers_starts_no_worker(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "cyclehttp", "no_such_module:app", "--workers", "2", "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "cyclehttp: error: cannot import module 'no_such_module'" in result.stderr
    assert "worker" not in result.stderr and "listening" not in result.stderr


def test_metrics_path_hiding_a_route_exits_2_before_forking(tmp_path: Path) -> None:
    (tmp_path / "wapp.py").write_text(APP)
    result = subprocess.run(
        [sys.executable, "-m", "cyclehttp", "wapp:app", "--app-dir", str(tmp_path), "--workers", "2",
         "--port", str(free_port()), "--metrics-path", "/pid", "--log-level", "debug"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
    )  # fmt: skip
    assert result.returncode == 2
    assert "'/pid' is already served by the route" in result.stderr
    assert "worker 0 started" not in result.stderr


# --- the back-off -------------------------------------------------------------------------


def test_restart_delay_doubles_up_to_the_cap() -> None:
    delays = [restart_delay(n) for n in range(1, 10)]
    assert delays[:6] == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0]
    assert delays[6:] == [MAX_BACKOFF] * 3


# --- shared slots and merging, in-process ----------------------------------------------


def histogram_of(*values: int) -> LogHistogram:
    histogram = LogHistogram()
    for value in values:
        histogram.record(value)
    return histogram


def stats_with(
    requests: int, latencies: tuple[int, ...], accepted: int = 3, closed: int = 2
) -> StatsSnapshot:
    stats = Stats()
    stats.connections_accepted = accepted
    stats.connections_closed = closed
    stats.bytes_sent = 100 * requests
    stats.limit_hits["max_body_size"] = 1
    for value in latencies:
        stats.request_latency.record(value)
    snapshot = stats.snapshot()
    return replace(
        snapshot,
        requests=requests,
        requests_by_route=(RouteCount("GET", "/", "2xx", requests),),
        requests_by_status={**snapshot.requests_by_status, "2xx": requests},
    )


def test_snapshot_round_trip() -> None:
    snapshot = stats_with(7, (1_000, 50_000, 3_000_000, 1 << 50))
    decoded, extra = decode_snapshot(encode_snapshot(snapshot, pid=12) or b"")
    assert extra["pid"] == 12
    assert decoded.request_latency == snapshot.request_latency
    assert decoded.requests_by_route == snapshot.requests_by_route
    assert decoded.requests == 7
    assert dict(decoded.limit_hits) == dict(snapshot.limit_hits)
    assert decoded.connections_open == 1


def test_merge_sums_counters_and_merges_histograms_bucket_by_bucket() -> None:
    a_values, b_values = (1_000, 2_000, 9_000_000), (7, 40_000, 123_456_789)
    merged = merge_snapshots([stats_with(3, a_values), stats_with(4, b_values, accepted=5, closed=5)])
    expected = histogram_of(*a_values)
    expected.merge(histogram_of(*b_values))
    assert merged.request_latency == expected.snapshot()
    assert merged.requests == 7
    assert merged.requests_by_route == (RouteCount("GET", "/", "2xx", 7),)
    assert merged.connections_accepted == 8 and merged.connections_open == 1
    assert merged.limit_hits["max_body_size"] == 2
    assert merged.bytes_sent == 700


def test_a_snapshot_too_big_folds_routes_and_keeps_the_total() -> None:
    routes = tuple(RouteCount("GET", f"/route/{i}/" + "x" * 200, "2xx", i + 1) for i in range(400))
    snapshot = replace(stats_with(0, ()), requests_by_route=routes)
    data = encode_snapshot(snapshot, limit=16 * 1024)
    assert data is not None and len(data) <= 16 * 1024
    decoded, _ = decode_snapshot(data)
    assert sum(r.count for r in decoded.requests_by_route) == sum(r.count for r in routes)
    assert any(r.route == TRUNCATED for r in decoded.requests_by_route)
    assert RouteCount("GET", routes[-1].route, "2xx", 400) in decoded.requests_by_route  # the busiest stays


def test_slots_survive_a_torn_write_and_a_restart_continues_the_counts() -> None:
    shared = SharedStats(2, buffer_size=32 * 1024)
    try:
        assert shared.read(0) is None
        first = WorkerSlot(shared, 0, pid=100)
        first.publish(stats_with(5, (1_000,)))
        # A writer killed in the middle of its next write: garbage in the other buffer, seq unchanged.
        seq = int.from_bytes(shared._map[0:8], "little")
        offset = 64 + ((seq + 1) & 1) * 32 * 1024
        shared._map[offset : offset + 10] = b"\xff" * 10
        assert decode_snapshot(shared.read(0) or b"")[0].requests == 5

        replacement = WorkerSlot(shared, 0, pid=101)
        assert replacement.starts == 2
        assert replacement.base is not None and replacement.base.connections_open == 0
        replacement.publish(stats_with(2, (2_000,)))
        other = WorkerSlot(shared, 1, pid=200)
        other.publish(stats_with(1, ()))
        whole, figures = other.whole(stats_with(1, ()))
        assert whole.requests == 5 + 2 + 1
        assert [(f.index, f.pid, f.starts, f.requests) for f in figures] == [(0, 101, 2, 7), (1, 200, 1, 1)]
        assert whole.request_latency.count == 2
        merged = shared.merged()
        assert merged is not None and merged.requests == 8
    finally:
        shared.close()


def test_corrupt_slot_keeps_the_last_good_read() -> None:
    shared = SharedStats(2, buffer_size=8 * 1024)
    try:
        reader = WorkerSlot(shared, 1)
        WorkerSlot(shared, 0, pid=7).publish(stats_with(3, ()))
        assert reader.whole(stats_with(0, ()))[0].requests == 3
        seq = int.from_bytes(shared._map[0:8], "little")
        start = 64 + (seq & 1) * 8 * 1024
        shared._map[start : start + 1] = b"#"  # the CRC no longer matches
        assert shared.read(0) is None
        assert reader.whole(stats_with(0, ()))[0].requests == 3
    finally:
        shared.close()


def test_single_process_page_has_no_worker_families() -> None:
    page = render_metrics(Stats().snapshot(), "0")
    assert "cyclehttp_worker" not in page
