"""tests/crowd.py, the check that the suite passes on a server others already crowd: it must
hold what it says, count the command's own connections, and give back the command's status."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.conftest import HOLD_CONNECTIONS
from tests.crowd import connections_in_use, server_url, tcp_port

ROOT = Path(__file__).resolve().parent.parent

# Counts the crowd's connections, opens two of its own for a moment, and exits 3.
COMMAND = f"""
import os, sys, time, psycopg
url = {server_url()!r}
with psycopg.connect(url, autocommit=True) as first, psycopg.connect(url) as second:
    held = first.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
        [f"crowd {{os.getppid()}}"],
    ).fetchone()[0]
    print("held", held, flush=True)
    time.sleep(1.0)
sys.exit(3)
"""


CHILD = [sys.executable, "-c", COMMAND]

needs_tcp = pytest.mark.skipif(
    tcp_port(server_url()) is None, reason="the crowd counts connections by their TCP sockets"
)


@needs_tcp
def test_the_crowd_holds_its_connections_counts_the_commands_and_passes_its_status_on() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tests.crowd", "--hold", "4", "--watch", "--", *CHILD],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 3, run.stderr
    assert run.stdout.split() == ["held", "4"], run.stdout
    assert "holding 4 more" in run.stderr
    assert "the command held at most 2 connections" in run.stderr, run.stderr
    assert "exit status 3" in run.stderr


# Waits for the crowd to fill the server, then counts what it holds.
FILLED = f"""
import os, time, psycopg
time.sleep(1.5)
with psycopg.connect({server_url()!r}, autocommit=True) as conn:
    held = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
        [f"crowd {{os.getppid()}}"],
    ).fetchone()[0]
print("held", held, flush=True)
"""


@needs_tcp
def test_the_crowd_fills_the_server_up_to_what_it_is_asked() -> None:
    with psycopg.connect(server_url(), autocommit=True) as conn:
        in_use = connections_in_use(conn)
    filled = [sys.executable, "-c", FILLED]
    # 20 more than the server serves now: others on a shared server come and go, never as
    # many in a second or two.
    run = subprocess.run(
        [sys.executable, "-m", "tests.crowd", "--fill-to", str(in_use + 20), "--", *filled],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    held = int(run.stdout.split()[-1])
    assert 10 <= held <= 30, run.stdout
    assert "the crowd's" in run.stderr, run.stderr


HELD_BY_THE_SESSION = f"""
import os, psycopg


def test_held() -> None:
    with psycopg.connect({server_url()!r}, autocommit=True) as conn:
        held = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            [f"crowd {{os.getpid()}}"],
        ).fetchone()[0]
    assert held == 5
"""


def test_a_pytest_session_holds_what_bulkredeem_test_hold_connections_says(
    tmp_path: Path,
) -> None:
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F403\n")
    (tmp_path / "test_held.py").write_text(HELD_BY_THE_SESSION)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), HOLD_CONNECTIONS: "5"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{HOLD_CONNECTIONS}: holding 5 idle connections" in run.stdout
