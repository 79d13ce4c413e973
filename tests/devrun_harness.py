"""Run `bulkredeem dev` (what `make run` runs) as a person would, and paste what it prints.

Shared by tests/test_make_run.py (local services) and tests/test_make_run_embedded.py.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cli.devrun import PASTE_HEADING, STOP_LINE

STOP_SECONDS = 40.0
PASTE_SECONDS = 180.0
# The last line `bulkredeem dev` prints.
STOPPED_LINE = "bulkredeem dev stopped."


@contextmanager
def embedded_workdir() -> Iterator[Path]:
    """A scratch directory for embedded Postgres data, outside pytest's temporary directories.

    Run as root, Postgres runs as the `pgserver` user, which must reach its data directory;
    every pytest session on the machine takes group and other access away from
    /tmp/pytest-of-<user> again, so a data directory under tmp_path may become unreachable
    in the middle of a test.
    """
    path = Path(tempfile.mkdtemp(prefix="bulkredeem-embedded-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bulkredeem_command() -> list[str]:
    script = Path(sys.executable).with_name("bulkredeem")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]


@dataclass
class DevRun:
    process: subprocess.Popen[str]
    port: int
    workdir: Path
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def read_until(self, predicate: str, seconds: float) -> list[str]:
        """Lines printed so far, once one starts with `predicate`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if line.startswith(predicate):
                return self.seen
        raise AssertionError(f"no line starting {predicate!r}; printed:\n{self.report()}")

    def report(self) -> str:
        logs = self.workdir / ".data" / "logs"
        parts = ["".join(self.seen)]
        for log in sorted(logs.glob("*.log")) if logs.exists() else []:
            parts.append(f"--- {log.name} ---\n{log.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def interrupt(self) -> list[str]:
        """Ctrl-C, as the terminal sends it; the lines it printed while stopping."""
        already = len(self.seen)
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(timeout=STOP_SECONDS) == 0, self.report()
        self.read_until(STOPPED_LINE, 10)
        return [line.rstrip("\n") for line in self.seen[already:]]


@contextmanager
def dev_running(env: Mapping[str, str], workdir: Path) -> Iterator[DevRun]:
    """`bulkredeem dev` in `workdir` (its .data/ is there), stopped with Ctrl-C at the end."""
    port = free_port()
    process = subprocess.Popen(
        [*bulkredeem_command(), "dev"],
        cwd=workdir,
        env={**env, "BULKREDEEM_PORT": str(port)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    run = DevRun(process=process, port=port, workdir=workdir)

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            run.lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        yield run
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def pasted_lines(printed: list[str]) -> list[str]:
    """The lines the banner says to paste into another terminal, as printed."""
    text = [line.rstrip("\n") for line in printed]
    start = text.index(PASTE_HEADING) + 1
    return text[start : text.index(STOP_LINE, start)]


@dataclass(frozen=True)
class Ran:
    command: str
    exit_code: int
    output: str  # stdout and stderr, as a terminal shows them


def terminal_environment() -> dict[str, str]:
    """What a fresh terminal has: no service URLs, no key, no test settings."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER")
    return {name: os.environ[name] for name in keep if name in os.environ}


def paste(lines: list[str], cwd: Path) -> list[Ran]:
    """Run the lines in one bash, in order, as pasted; each command's exit code and output.

    Only a marker line is added after each command, to tell their outputs apart.
    """
    script = ["exec 2>&1"]
    commands: list[str] = []
    for line in lines:
        script.append(line)
        if line.strip() and not line.lstrip().startswith("#"):
            script.append(f'printf "\\n@@@ {len(commands)} %d @@@\\n" "$?"')
            commands.append(line)
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=cwd,
        env=terminal_environment(),
        capture_output=True,
        text=True,
        timeout=PASTE_SECONDS,
    )
    outputs: list[Ran] = []
    rest = done.stdout
    for index, command in enumerate(commands):
        found = re.search(rf"\n@@@ {index} (-?\d+) @@@\n", rest)
        assert found, f"the paste stopped before {command!r}:\n{done.stdout}"
        outputs.append(Ran(command, int(found.group(1)), rest[: found.start()].strip("\n")))
        rest = rest[found.end() :]
    return outputs


def processes_mentioning(text: str) -> list[int]:
    """Pids of the processes whose command line contains `text`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(int(cmdline.parent.name))
    return found
