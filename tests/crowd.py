"""Run a command on a crowded Postgres, and count the connections it takes.

    python -m tests.crowd --hold 60 -- make test
    python -m tests.crowd --fill-to 60 --watch -- .venv/bin/pytest

`--hold N` opens N idle connections to the tests' server (tests/services.py finds it) and holds
them while the command runs, as other databases' clients would on a shared machine. `--fill-to
N` is for a server that others already use, and use more or less as time goes: every 0.2 s it
holds as many as keep the connections that are not the command's at N. `--watch` says at the
end how many connections the command's processes (it and every process under it) held at the
peak, and how many everyone else did meanwhile. The exit status is the command's. Linux only:
a connection is told to be the command's by its socket in /proc.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from tests.services import find_postgres

SAMPLE_SECONDS = 0.2
_ESTABLISHED = "01"  # the state column of /proc/net/tcp


def server_url() -> str:
    """The tests' server, at its `postgres` database (always there, never dropped by a test)."""
    url = find_postgres().replace("postgresql+psycopg://", "postgresql://", 1)
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


def connections_in_use(conn: psycopg.Connection) -> int:
    """Client connections the server serves now, every database's (this one counted)."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def tcp_port(url: str) -> int | None:
    """The server's TCP port; None when the URL reaches it over a Unix socket (the embedded
    server), where a connection cannot be told to be a process's by its socket."""
    parts = urlsplit(url)
    if not parts.hostname or "host=/" in parts.query:
        return None
    return parts.port or 5432


@contextmanager
def held_connections(count: int, url: str | None = None) -> Iterator[list[psycopg.Connection]]:
    """`count` idle connections to the server, open until the block ends."""
    url = url or server_url()
    name = f"crowd {os.getpid()}"  # how they show in pg_stat_activity
    held: list[psycopg.Connection] = []
    try:
        for opened in range(count):
            try:
                held.append(psycopg.connect(url, autocommit=True, application_name=name))
            except psycopg.OperationalError as error:
                raise RuntimeError(
                    f"could hold only {opened} of {count} connections to {url}: {error}"
                ) from error
        yield held
    finally:
        for conn in held:
            conn.close()


def _children_of() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        # The command name, in parentheses, may hold spaces: the fields after it are plain.
        parent = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    return children


def process_tree(root: int) -> set[int]:
    """`root` and every process under it, now."""
    children = _children_of()
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, []))
    return tree


def _sockets_to_port(port: int) -> dict[str, int]:
    """This machine's established TCP connections to `port` (any address): inode -> the
    connection's local port (what the server's pg_stat_activity.client_port shows)."""
    sockets = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if state == _ESTABLISHED and int(remote.rpartition(":")[2], 16) == port:
                sockets[inode] = int(local.rpartition(":")[2], 16)
    return sockets


def local_ports_of(pids: set[int], port: int) -> list[int]:
    """The local ports of these processes' connections to `port`, one per connection."""
    to_port = _sockets_to_port(port)
    found = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in to_port:
                found.append(to_port[target[8:-1]])
    return found


def connections_of(pids: set[int], port: int) -> int:
    """How many of the connections to `port` belong to these processes."""
    return len(local_ports_of(pids, port))


@dataclass
class Peaks:
    samples: int = 0
    command: int = 0  # the command's own connections at their peak
    server_then: int = 0  # the server's total at that moment
    server: int = 0  # the server's total at its peak
    others_min: int | None = None  # everyone else's (the held ones included), least and most
    others_max: int = 0
    held_min: int | None = None  # what the crowd held, least and most
    held_max: int = 0


class Watch:
    """Samples, on a thread, the command's connections and the server's, until stopped. With
    `fill_to`, it also keeps everyone else's connections at that many, holding more when
    other clients leave and fewer when they come (never fewer than none)."""

    def __init__(self, root: int, url: str, fill_to: int | None) -> None:
        self.root = root
        self.url = url
        port = tcp_port(url)
        if port is None:
            raise SystemExit(f"crowd: {url} is a Unix socket: --watch and --fill-to count TCP")
        self.port = port
        self.fill_to = fill_to
        self.peaks = Peaks()
        self.held: list[psycopg.Connection] = []
        self._name = f"crowd {os.getpid()}"
        self._conn = psycopg.connect(url, autocommit=True, application_name="crowd watch")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crowd-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _refill(self, others: int) -> None:
        assert self.fill_to is not None
        wanted = max(0, len(self.held) + self.fill_to - others)
        while len(self.held) > wanted:
            self.held.pop().close()
        while len(self.held) < wanted:
            try:
                conn = psycopg.connect(self.url, autocommit=True, application_name=self._name)
            except psycopg.OperationalError:
                return  # the server is full: the command meets that as it is
            self.held.append(conn)

    def _run(self) -> None:
        peaks = self.peaks
        while not self._stop.wait(SAMPLE_SECONDS):
            ours = connections_of(process_tree(self.root), self.port)
            total = connections_in_use(self._conn)
            others = total - ours
            if self.fill_to is not None:
                self._refill(others)
            peaks.samples += 1
            if ours > peaks.command:
                peaks.command, peaks.server_then = ours, total
            peaks.server = max(peaks.server, total)
            peaks.others_max = max(peaks.others_max, others)
            peaks.others_min = others if peaks.others_min is None else min(peaks.others_min, others)
            held = len(self.held)
            peaks.held_max = max(peaks.held_max, held)
            peaks.held_min = held if peaks.held_min is None else min(peaks.held_min, held)

    def stop(self) -> Peaks:
        self._stop.set()
        self._thread.join()
        for conn in self.held:
            conn.close()
        self._conn.close()
        return self.peaks


def run(command: list[str], hold: int, fill_to: int | None, watch: bool) -> int:
    url = server_url()
    with psycopg.connect(url, autocommit=True) as probe:
        in_use = connections_in_use(probe) - 1  # not the probe itself
    say = lambda text: print(f"crowd: {text}", file=sys.stderr, flush=True)  # noqa: E731
    if fill_to is not None:
        say(f"the server serves {in_use} connections; keeping everyone else's at {fill_to}")
    else:
        say(f"the server serves {in_use} connections; holding {hold} more")
    with held_connections(hold, url):
        child = subprocess.Popen(command)
        watcher = Watch(child.pid, url, fill_to) if watch or fill_to is not None else None
        if watcher is not None:
            watcher.start()
        try:
            status = child.wait()
        except KeyboardInterrupt:
            child.terminate()
            status = child.wait()
        if watcher is not None:
            peaks = watcher.stop()
            held = f"{hold}" if fill_to is None else f"{peaks.held_min}-{peaks.held_max}"
            say(
                f"{peaks.samples} samples: the command held at most {peaks.command} connections"
                f" (the server then served {peaks.server_then}); the server's peak was"
                f" {peaks.server}; everyone else's connections (the crowd's {held} among"
                f" them) ranged {peaks.others_min}-{peaks.others_max}"
            )
    say(f"{' '.join(command)}: exit status {status}")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.crowd", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    crowd = parser.add_mutually_exclusive_group()
    crowd.add_argument("--hold", type=int, default=0, help="idle connections to hold")
    crowd.add_argument(
        "--fill-to",
        type=int,
        help="hold as many as keep everyone else's connections (the command's aside) at this",
    )
    parser.add_argument("--watch", action="store_true", help="count the command's connections")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- and the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    return run(command, args.hold, args.fill_to, args.watch)


if __name__ == "__main__":
    sys.exit(main())
