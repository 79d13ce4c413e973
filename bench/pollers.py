"""GET /v1/jobs/{id} latency under many concurrent pollers, while the job runs.

A bounded loop: `count` asyncio tasks over one httpx.AsyncClient, each asking for the job every
`interval` seconds (their starts spread over one interval) until the job has ended or
`max_seconds` have passed. They run in a process of their own, as clients would: on a thread of
the bench's, they shared its GIL with the bench's own waiter, and their p99 was that of the
bench's process as much as the server's (bench/README.md). Loopback only. `cpu_probe` (the
API's CPU time) is read at the start and the end, to tell what the polling cost the server.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

import httpx

from bench.client import TERMINAL


@dataclass
class PollStats:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    failures: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0  # CPU seconds the server spent meanwhile (see `cpu_probe`)

    @property
    def requests(self) -> int:
        return len(self.latencies) + self.failures

    def percentile_ms(self, fraction: float) -> float:
        """Nearest-rank percentile, in milliseconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
        return 1000 * ordered[rank - 1]


class ConcurrentPollers:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        job_id: int,
        *,
        count: int,
        interval: float,
        max_seconds: float,
        cpu_probe: Callable[[], float] | None = None,
    ) -> None:
        self.cpu_probe = cpu_probe
        # spawn: a fresh interpreter, nothing of the bench's threads or sockets.
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._results, self._sender = context.Pipe(duplex=False)
        poll = _Polling(base_url, api_key, job_id, count, interval, max_seconds)
        self._process = context.Process(
            target=poll.run, args=(self._stop, self._sender), name="pollers", daemon=True
        )
        self._cpu_before = 0.0

    def start(self) -> None:
        self._cpu_before = self.cpu_probe() if self.cpu_probe else 0.0
        self._process.start()
        self._sender.close()  # the child's copy remains: if it dies, recv() ends at once

    def finish(self) -> PollStats:
        """Stop (if still polling) and wait for every task to end."""
        self._stop.set()
        try:
            stats: PollStats = self._results.recv()
        except EOFError:
            raise RuntimeError("the pollers' process ended without its figures") from None
        finally:
            self._process.join()
        if self.cpu_probe:
            stats.server_cpu = self.cpu_probe() - self._cpu_before
        return stats


@dataclass(frozen=True)
class _Polling:
    """What the pollers' process runs (picklable, for spawn)."""

    base_url: str
    api_key: str
    job_id: int
    count: int
    interval: float
    max_seconds: float

    def run(self, stop: Event, results: Connection) -> None:
        stats = PollStats()
        try:
            asyncio.run(self._poll_all(stop, stats))
        finally:
            results.send(stats)

    async def _poll_all(self, stop: Event, stats: PollStats) -> None:
        limits = httpx.Limits(max_connections=self.count, max_keepalive_connections=self.count)
        headers = {"Authorization": f"Bearer {self.api_key}"}
        started = time.perf_counter()
        deadline = started + self.max_seconds
        async with httpx.AsyncClient(
            base_url=self.base_url, headers=headers, limits=limits, timeout=30.0
        ) as client:
            await asyncio.gather(
                *(
                    self._poll(client, i * self.interval / self.count, deadline, stop, stats)
                    for i in range(self.count)
                )
            )
        stats.seconds = time.perf_counter() - started

    async def _poll(
        self,
        client: httpx.AsyncClient,
        delay: float,
        deadline: float,
        stop: Event,
        stats: PollStats,
    ) -> None:
        path = f"/v1/jobs/{self.job_id}"
        await asyncio.sleep(delay)
        while not stop.is_set() and time.perf_counter() < deadline:
            sent = time.perf_counter()
            try:
                response = await client.get(path)
            except httpx.HTTPError:
                stats.failures += 1
            else:
                elapsed = time.perf_counter() - sent
                if response.status_code != 200:
                    stats.failures += 1
                else:
                    stats.latencies.append(elapsed)
                    if response.json()["status"] in TERMINAL:
                        stop.set()
            await asyncio.sleep(self.interval)
