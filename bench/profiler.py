"""`--profile`: py-spy attached to the running worker, writing a speedscope file."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench.report import say

ATTACH_SECONDS = 1.0


def find_py_spy() -> str | None:
    """py-spy on PATH, or beside the interpreter (installed into the virtualenv)."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file():
        return str(beside)
    return shutil.which("py-spy")


@contextlib.contextmanager
def profiling(enabled: bool, pid: int, output: Path, log: Path) -> Iterator[None]:
    """`py-spy record --pid --idle` around the block.

    Attached rather than launching the worker, so the worker starts and runs as it would
    without it (its RSS stays its own). `--idle` keeps the samples of waiting threads: the
    profile shows wall-clock time, with the waits for Postgres under the statement that waited.
    SIGINT at the end makes py-spy write its file.
    """
    binary = find_py_spy() if enabled else None
    if binary is None:
        if enabled:
            say("--profile: py-spy is not installed (pip install py-spy); running without it")
        yield
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as handle:
        command = [binary, "record", "--pid", str(pid), "--rate", "100", "--idle"]
        popen = subprocess.Popen(
            [*command, "--format", "speedscope", "--output", str(output)],
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        time.sleep(ATTACH_SECONDS)
        try:
            yield
        finally:
            if popen.poll() is None:
                popen.send_signal(signal.SIGINT)
            try:
                popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
    say(f"worker profile: {output} (see {log.name} in {log.parent})")
