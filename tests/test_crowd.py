"""tests/crowd.py, the check that the suite passes on a server others already crowd: it must
hold what it says, count the command's own connections, and give back the command's status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.crowd import server_url

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
