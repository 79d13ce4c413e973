"""Our child processes (the API, Celery workers and beat, a private redis-server): started,
waited for, signalled and stopped one way, for `make run` (cli/devrun.py), the bench and the
tests.

Each child leads its own process group (and session, see Child), so that a signal reaches
whatever it started too and a terminal's Ctrl-C reaches only its parent, which then stops the
children in order (Celery takes a second SIGINT as "quit now"). On Linux each child also dies
with its parent (PR_SET_PDEATHSIG): a parent killed outright, with no clean-up run, leaves no
worker behind on a shared Redis. That signal comes when the *thread* that started the child
ends, not the process: start children from the main thread (or one that lives as long as they
should).

Each child logs, stdout and stderr together, to a file of its own, where the marker of being
ready is looked for and whose end every error about the child quotes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx
import redis

PROJECT_ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 60.0
STOP_SECONDS = 15.0
POLL_SECONDS = 0.1
TAIL_LINES = 30
# Enough for TAIL_LINES lines with tracebacks; a log is never read whole into a message.
_TAIL_BYTES = 64 << 10

# What each of them writes to its log once it is ready (the API is asked instead: it is ready
# when it answers, see Child.wait_for_http).
WORKER_READY = "ready."
BEAT_READY = "beat: Starting"


class ChildFailed(RuntimeError):
    """A child did not start in time or died; the message quotes the end of its log."""


def die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the thread that started it ends."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            pr_set_pdeathsig = 1
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class Child:
    """A child process of ours, started at once, logging to `log`.

    A child started again on the same log (a restart) appends to it, after `header` when one
    is given; `fresh_log` empties the log first instead. What this start logged begins at
    `log_start`: the marker waited for and the tail quoted are looked for from there.

    The child leads a session of its own, as `make run` and systemd start a worker, so that a
    worker lowers its session's CPU share too (worker/priority.py); `own_session=False` keeps
    it in ours, leading only a process group of its own (the tests: a worker there leaves the
    session it shares with them alone).
    """

    def __init__(
        self,
        name: str,
        command: list[str],
        log: Path,
        env: dict[str, str],
        *,
        cwd: Path | None = None,
        fresh_log: bool = False,
        header: str | None = None,
        own_session: bool = True,
    ) -> None:
        self.name = name
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb" if fresh_log else "ab") as handle:
            if header:
                handle.write(f"{header}\n".encode())
                handle.flush()
            self.log_start = handle.tell()
            self.popen = subprocess.Popen(
                command,
                cwd=cwd,
                # Unbuffered: a marker waited for must not sit in the child's buffer.
                env={**env, "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=own_session,
                process_group=None if own_session else 0,
                preexec_fn=die_with_parent,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    # --- its log -------------------------------------------------------------------------------

    def _logged(self, limit: int | None = None) -> tuple[str, bool]:
        """What this start logged (its last `limit` bytes at most), and whether it was cut."""
        try:
            with self.log.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                start = self.log_start if limit is None else max(self.log_start, size - limit)
                handle.seek(start)
                return handle.read().decode(errors="replace"), start > self.log_start
        except OSError:
            return "", False

    def tail(self, lines: int = TAIL_LINES) -> str:
        """The last `lines` lines this start logged, as they are."""
        text, cut = self._logged(_TAIL_BYTES)
        kept = text.splitlines()
        if cut:
            kept = kept[1:]  # begun mid-line
        return "\n".join(kept[-lines:])

    def _failure(self, what: str) -> ChildFailed:
        return ChildFailed(f"the {self.name} {what}; last lines of {self.log}:\n{self.tail()}")

    # --- waiting -------------------------------------------------------------------------------

    def check_alive(self) -> None:
        code = self.returncode
        if code is not None:
            raise self._failure(f"exited with code {code}")

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        """Until `ready()`; ChildFailed if the child exits first or `timeout` passes, with
        `what` ("answer on URL") saying in the error what it did not do."""
        deadline = time.monotonic() + timeout
        while not ready():
            self.check_alive()
            if time.monotonic() > deadline:
                raise self._failure(f"did not {what} within {timeout:.0f} s")
            time.sleep(POLL_SECONDS)

    def wait_for_line(self, marker: str, timeout: float = START_SECONDS) -> None:
        """Until `marker` is in what this start logged."""
        self.wait_until(
            lambda: marker in self._logged()[0], f"write {marker!r} to its log", timeout
        )

    def wait_for_http(self, url: str, timeout: float = START_SECONDS) -> None:
        """Until `url` answers anything over HTTP (any status: the server is up)."""
        self.wait_until(lambda: answers_http(url), f"answer on {url}", timeout)

    # --- signals -------------------------------------------------------------------------------

    def signal(self, sig: signal.Signals) -> None:
        """Send `sig` to the child's whole process group (whatever it started too)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: no clean-up, nothing given back."""
        if self.alive:
            self.signal(signal.SIGKILL)
        self.popen.wait()

    def stop(self, grace: float = STOP_SECONDS) -> None:
        """SIGTERM, then SIGKILL if it has not ended within `grace` seconds."""
        stop_all([self], grace)


def stop_all(
    children: Iterable[Child],
    grace: float = STOP_SECONDS,
    *,
    hurry: Callable[[], bool] = lambda: False,
) -> list[Child]:
    """Stop the running children together: SIGTERM to each, then SIGKILL to those still
    running after `grace` seconds, or as soon as `hurry()` says so. The ones killed."""
    running = [child for child in children if child.alive]
    for child in running:
        # A child stopped by SIGSTOP (the chaos run, a frozen-worker test) would never see
        # the SIGTERM.
        child.signal(signal.SIGCONT)
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(child.alive for child in running):
        if time.monotonic() > deadline or hurry():
            break
        time.sleep(POLL_SECONDS)
    killed = [child for child in running if child.alive]
    for child in killed:
        child.signal(signal.SIGKILL)
    for child in running:
        child.popen.wait()
    return killed


def answers_http(url: str) -> bool:
    try:
        httpx.get(url, timeout=1.0)
    except httpx.TransportError:
        return False
    return True


def answers_tcp(host: str, port: int) -> bool:
    """Whether something accepts a connection on host:port (a server found, or up)."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


# --- the project's own processes ---------------------------------------------------------------


def api_command(port: int, *options: str) -> list[str]:
    """The API (uvicorn) on a loopback port."""
    uvicorn = [sys.executable, "-m", "uvicorn", "api.app:app", "--host", "127.0.0.1"]
    return [*uvicorn, "--port", str(port), *options]


def _celery(*words: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker.app:celery_app", *words]


def worker_command(queue: str, *options: str) -> list[str]:
    """A Celery worker on `queue`, one task at a time (the solo pool)."""
    return _celery("worker", "--pool=solo", "-Q", queue, "-l", "INFO", *options)


def beat_command(schedule: Path, *options: str) -> list[str]:
    """Beat, keeping its schedule in `schedule`."""
    return _celery("beat", "--schedule", str(schedule), "-l", "INFO", *options)


class RedisServer:
    """A private redis-server on a loopback port of its own, that its owner may flush, kill and
    start again empty (no snapshot, no append-only file: what a lost Redis leaves). It logs to
    `redis.log` in `directory`."""

    def __init__(self, directory: Path) -> None:
        from cli.embedded.common import free_port
        from cli.embedded.redis import redis_binary

        self.directory = directory
        self.binary = redis_binary()
        self.port = free_port()
        self.process: Child | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def _answers(self) -> bool:
        with contextlib.suppress(redis.RedisError):
            return bool(self.client().ping())
        return False

    def start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        self.process = Child(
            "redis-server", command, self.directory / "redis.log", dict(os.environ)
        )
        self.process.wait_until(self._answers, f"answer on port {self.port}", START_SECONDS)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.alive

    def flushall(self) -> None:
        self.client().flushall()

    def kill(self) -> None:
        """SIGKILL: what Redis held is gone, and every client's connection with it."""
        if self.process is not None:
            self.process.kill()
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        self.process = None
