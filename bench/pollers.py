"""GET /v1/jobs/{id} latency under many concurrent pollers, while the job runs.

A bounded loop: `count` asyncio tasks over one httpx.AsyncClient, each asking for the job every
`interval` seconds (their starts spread over one interval) until the job has ended or
`max_seconds` have passed. It runs on a thread of its own, so the bench's main thread can wait
for the job meanwhile. Loopback only. `cpu_probe` (the API's CPU time) is read at the start and
the end, to tell what the polling cost the server.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

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
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.path = f"/v1/jobs/{job_id}"
        self.count = count
        self.interval = interval
        self.max_seconds = max_seconds
        self.cpu_probe = cpu_probe
        self.stats = PollStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="pollers", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> PollStats:
        """Stop (if still polling) and wait for every task to end."""
        self._stop.set()
        self._thread.join()
        return self.stats

    def _main(self) -> None:
        asyncio.run(self._poll_all())

    async def _poll_all(self) -> None:
        limits = httpx.Limits(max_connections=self.count, max_keepalive_connections=self.count)
        cpu_before = self.cpu_probe() if self.cpu_probe else 0.0
        started = time.perf_counter()
        deadline = started + self.max_seconds
        async with httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, limits=limits, timeout=30.0
        ) as client:
            await asyncio.gather(
                *(
                    self._poll(client, i * self.interval / self.count, deadline)
                    for i in range(self.count)
                )
            )
        self.stats.seconds = time.perf_counter() - started
        if self.cpu_probe:
            self.stats.server_cpu = self.cpu_probe() - cpu_before

    async def _poll(self, client: httpx.AsyncClient, delay: float, deadline: float) -> None:
        await asyncio.sleep(delay)
        while not self._stop.is_set() and time.perf_counter() < deadline:
            sent = time.perf_counter()
            try:
                response = await client.get(self.path)
            except httpx.HTTPError:
                self.stats.failures += 1
            else:
                elapsed = time.perf_counter() - sent
                if response.status_code != 200:
                    self.stats.failures += 1
                else:
                    self.stats.latencies.append(elapsed)
                    if response.json()["status"] in TERMINAL:
                        self._stop.set()
            await asyncio.sleep(self.interval)
