"""Connection pools on a server that others share: nothing opened before it is needed, what
was opened kept up to the pool's size, and each pool's size a setting of its own."""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from core import db
from core.db import POLL_APPLICATION, get_engine, get_poll_engine
from core.settings import Settings, get_settings
from tests import processes
from tests.crowd import connections_of, local_ports_of, server_url, tcp_port
from tests.dbtools import admin_transaction


def _server_port() -> int:
    """The server's TCP port: a connection is told to be a process's by its TCP socket."""
    port = tcp_port(server_url())
    if port is None:
        pytest.skip("the tests' Postgres is reached over a Unix socket (the embedded one)")
    return port


def _connections_of_process(pid: int) -> int:
    return connections_of({pid}, _server_port())


def _settle(pid: int, expected: int, seconds: float = 5) -> int:
    """The process's connection count once it is `expected` or `seconds` have passed: a
    closed connection leaves the socket table a moment after the response."""
    deadline = time.monotonic() + seconds
    while (count := _connections_of_process(pid)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def test_an_api_process_opens_its_poll_connections_as_polls_come_and_keeps_them(
    database_url: str, tmp_path: Path
) -> None:
    pool_size = get_settings().db_poll_pool_size
    api, url = processes.api(processes.service_env(), tmp_path / "api.log")
    try:
        # Started, and not one of the server's connection slots taken (it opened 30 here).
        assert _settle(api.pid, 0) == 0
        nobody = {"Authorization": "Bearer br_nobody" + uuid.uuid4().hex}
        assert httpx.get(f"{url}/v1/jobs/1", headers=nobody).status_code == 401
        # The poll's connection stays open for the next poll.
        assert _settle(api.pid, 1) == 1
        burst = pool_size * 3
        with ThreadPoolExecutor(burst) as pool:
            answers = list(
                pool.map(
                    lambda _: httpx.get(f"{url}/v1/jobs/1", headers=nobody, timeout=30),
                    range(burst),
                )
            )
        assert {answer.status_code for answer in answers} == {401}
        # No more than the pool's size stays open after a burst, however many it opened.
        kept = _settle(api.pid, pool_size)
        assert 1 <= kept <= pool_size
    finally:
        api.stop()


def _poll_backends() -> int:
    """This process's poll connections, as the server sees them: those the poll pool names as
    its own, from this process's sockets (an API process of another test may poll the same
    database, and the server may not yet have seen a closed one go)."""
    ports = local_ports_of({os.getpid()}, _server_port())
    with admin_transaction() as session:
        return int(
            session.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"
                    " AND datname = current_database() AND client_port = ANY(:ports)"
                ),
                {"name": POLL_APPLICATION, "ports": ports},
            ).scalar_one()
        )


def test_the_poll_pool_keeps_its_size_and_closes_what_a_burst_opened_beyond_it(
    database_url: str,
) -> None:
    db.dispose_engine()  # a pool of this test's own, with nothing in it yet
    size = get_settings().db_poll_pool_size
    pool = get_poll_engine().pool
    assert _poll_backends() == 0
    held = [pool.connect() for _ in range(size + 2)]  # a burst: 2 beyond the pool's size
    assert _poll_backends() == size + 2
    for conn in held:
        conn.close()
    assert pool.checkedin() == size  # type: ignore[attr-defined]
    assert _poll_backends() == size
    db.dispose_engine()


def test_each_pool_has_the_size_its_setting_gives(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BULKREDEEM_DB_POLL_POOL_SIZE", "4")
    monkeypatch.setenv("BULKREDEEM_DB_MAIN_POOL_SIZE", "5")
    get_settings.cache_clear()
    db.dispose_engine()
    try:
        assert get_poll_engine().pool.size() == 4  # type: ignore[attr-defined]
        assert get_engine().pool.size() == 5  # type: ignore[attr-defined]
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        db.dispose_engine()


def test_the_poll_pool_size_is_still_read_under_its_first_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BULKREDEEM_DB_POLL_POOL_SIZE", raising=False)
    monkeypatch.setenv("BULKREDEEM_DB_POOL_SIZE", "7")
    assert Settings().db_poll_pool_size == 7
    # Where both are given, the new name wins.
    monkeypatch.setenv("BULKREDEEM_DB_POLL_POOL_SIZE", "8")
    assert Settings().db_poll_pool_size == 8
    monkeypatch.delenv("BULKREDEEM_DB_POLL_POOL_SIZE")
    monkeypatch.delenv("BULKREDEEM_DB_POOL_SIZE")
    assert Settings().db_poll_pool_size == 30
    # BULKREDEEM_DB_POOL_SIZE never sized the other pool, and does not now.
    monkeypatch.setenv("BULKREDEEM_DB_POOL_SIZE", "7")
    monkeypatch.delenv("BULKREDEEM_DB_MAIN_POOL_SIZE", raising=False)
    assert Settings().db_main_pool_size == 10
