"""The chaos run's faults, injected on a schedule drawn from the seed.

Kinds: a worker SIGKILLed mid-job (then started again), a worker SIGSTOPped past its lease
(then SIGCONT), beat killed (then started again), Redis flushed, Redis killed and started
again empty, the workers' Postgres backends terminated, and a job's task sent again by name
(a duplicate Celery message). One thread injects them all, in order, and also does what each
leaves to do later (a restart, a SIGCONT); nothing waits for a process to be ready, so one
fault never holds up the next.
"""

from __future__ import annotations

import logging
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from celery import Celery

from bench.processes import Child, RedisServer, ServiceProcesses

log = logging.getLogger(__name__)

WORKER_KILL = "worker SIGKILLed"
WORKER_STOP = "worker SIGSTOPped past its lease"
BEAT_KILL = "beat killed"
REDIS_FLUSH = "Redis FLUSHALL"
REDIS_RESTART = "Redis killed and restarted"
PG_TERMINATE = "workers' Postgres backends terminated"
DUPLICATE = "duplicate Celery message"
KINDS = (WORKER_KILL, WORKER_STOP, BEAT_KILL, REDIS_FLUSH, REDIS_RESTART, PG_TERMINATE, DUPLICATE)

WORKER_APP = "chaos-worker-"  # PGAPPNAME prefix: how the workers' backends are found
TICK = 0.05
MID_JOB_WAIT = 2.0  # how long a kill waits for its worker to be inside a transaction
POSTPONE = 0.5  # seconds a fault waits when none of the kinds left can happen now


@dataclass(frozen=True)
class Fault:
    kind: str
    started: float  # seconds since the run began
    ended: float  # when its effect ended (the restart begun, the SIGCONT sent)
    detail: str


def plan(seed: int, first: float, last: float, every: float) -> list[float]:
    """When the faults come: gaps drawn around `every` seconds, from `first` to `last`."""
    if every <= 0:
        raise ValueError("faults must come at a positive mean gap")
    rng = random.Random(f"chaos-faults-{seed}")
    times: list[float] = []
    at = first + rng.uniform(0, every)
    while at <= last:
        times.append(round(at, 3))
        at += rng.uniform(every * 0.3, every * 1.7)
    return times


@dataclass
class Rig:
    """The running service, as the faults see it."""

    processes: ServiceProcesses
    queue: str
    redis: RedisServer
    database_url: str  # the owner's URL of the run's database
    schedule_dir: Path
    lease_seconds: float
    sweep_seconds: float
    workers: list[Child] = field(default_factory=list)
    beat: Child | None = None

    def start_worker(self, slot: int, *, wait: bool) -> Child:
        child = self.processes.start_worker(
            self.queue, f"worker-{slot}", {"PGAPPNAME": f"{WORKER_APP}{slot}"}, wait=wait
        )
        if slot < len(self.workers):
            self.workers[slot] = child
        else:
            self.workers.append(child)
        return child

    def start_beat(self, *, wait: bool) -> Child:
        self.beat = self.processes.start_beat(self.schedule_dir, wait=wait)
        return self.beat


class Injector:
    """Injects the planned faults at their times; `finish` undoes what is still pending.

    It runs on the main thread, which lives as long as the run: the children it starts again
    die with the thread that started them (PR_SET_PDEATHSIG, cli/supervisor.py), and a
    Redis or worker restarted from a thread of its own was SIGTERMed when that thread ended.
    """

    def __init__(self, rig: Rig, seed: int, times: list[float], clock: Callable[[], float]) -> None:
        self.rig = rig
        self.rng = random.Random(f"chaos-targets-{seed}")
        self.times = list(times)
        self.clock = clock
        self.faults: list[Fault] = []
        self.skipped: Counter[str] = Counter()
        self.errors: list[str] = []  # the harness's own failures, reported, never hidden
        self._bag: list[str] = []
        self._later: list[tuple[float, str, Callable[[], None]]] = []
        self._down: set[int] = set()  # worker slots killed or stopped, not yet back
        self._redis_down = False
        self._conn: psycopg.Connection[Any] | None = None
        self._broker = Celery(broker=rig.redis.url)
        self._broker.conf.broker_connection_timeout = 2

    # --- the loop ------------------------------------------------------------------------------

    def run(self, until: float) -> None:
        """Inject the faults due before `until` (the run's clock), each at its time."""
        try:
            while (now := self.clock()) < until:
                self._run_due(now)
                if self.times and self.times[0] <= now:
                    self.times.pop(0)
                    self._inject(now)
                time.sleep(TICK)
        except Exception as exc:  # reported in the summary: a harness that broke says so
            log.exception("fault injector")
            self.errors.append(f"fault injector stopped: {type(exc).__name__}: {exc}")

    def finish(self) -> None:
        """Do at once what the faults left pending (restarts, SIGCONT)."""
        for _, what, action in sorted(self._later, key=lambda item: item[0]):
            self._attempt(what, action)
        self._later.clear()
        if self._conn is not None:
            self._conn.close()
        self._broker.close()

    def _run_due(self, now: float) -> None:
        due = [item for item in self._later if item[0] <= now]
        for item in due:
            self._later.remove(item)
            self._attempt(item[1], item[2])

    def _attempt(self, what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:
            self.errors.append(f"{what}: {type(exc).__name__}: {exc}")

    def _later_at(self, at: float, what: str, action: Callable[[], None]) -> None:
        self._later.append((at, what, action))

    # --- choosing ------------------------------------------------------------------------------

    def _applicable(self, kind: str) -> bool:
        if kind in (WORKER_KILL, WORKER_STOP):
            # One worker stays up: the stall then measures recovery, not a total outage.
            return len(self._up_workers()) >= 2
        if kind == BEAT_KILL:
            return self.rig.beat is not None and self.rig.beat.alive
        if kind in (REDIS_FLUSH, REDIS_RESTART, DUPLICATE):
            return not self._redis_down
        return True

    def _next_kind(self) -> str | None:
        """The next kind from a shuffled bag of all of them (each comes as often as the
        others), skipping those that cannot happen now (no Redis to flush)."""
        if not self._bag:
            self._bag = list(KINDS)
            self.rng.shuffle(self._bag)
        for kind in list(self._bag):
            if self._applicable(kind):
                self._bag.remove(kind)
                return kind
        return None

    def _up_workers(self) -> list[int]:
        return [
            slot
            for slot, child in enumerate(self.rig.workers)
            if slot not in self._down and child.alive
        ]

    def _db(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.rig.database_url, autocommit=True, connect_timeout=5)
        return self._conn

    def _workers_in_transaction(self) -> list[int]:
        rows = (
            self._db()
            .execute(
                """
                SELECT DISTINCT application_name FROM pg_stat_activity
                WHERE datname = current_database() AND application_name LIKE %s
                  AND xact_start IS NOT NULL
                  -- A job's statements (claim, heartbeat, chunk), not a sweep's or a ping's.
                  AND (query ILIKE '%%upload_jobs%%' OR query ILIKE '%%br_stage%%'
                       OR query ILIKE '%%redemptions%%' OR query ILIKE '%%coupon%%'
                       OR query ILIKE '%%customer%%')
                """,
                (WORKER_APP + "%",),
            )
            .fetchall()
        )
        return sorted(int(str(row[0])[len(WORKER_APP) :]) for row in rows)

    def _target_worker(self) -> tuple[int, str]:
        """A worker that is inside a transaction (mid-job), waiting a little for one; else any
        worker that is up."""
        deadline = time.monotonic() + MID_JOB_WAIT
        while True:
            up = self._up_workers()
            busy = [slot for slot in self._workers_in_transaction() if slot in up]
            if busy:
                return self.rng.choice(busy), "mid-job"
            if time.monotonic() > deadline or not up:
                return self.rng.choice(up), "idle"
            time.sleep(0.02)

    # --- the faults ----------------------------------------------------------------------------

    def _inject(self, now: float) -> None:
        kind = self._next_kind()
        if kind is None:
            # Only worker faults are left in the bag and a worker is down: a little later.
            self.times.insert(0, now + POSTPONE)
            return
        try:
            detail, ended = self._do(kind)
        except Exception as exc:
            self.skipped[kind] += 1
            self.errors.append(f"{kind} at {now:.1f} s: {type(exc).__name__}: {exc}")
            return
        self.faults.append(Fault(kind, now, ended, detail))

    def _do(self, kind: str) -> tuple[str, float]:
        rig = self.rig
        if kind == WORKER_KILL:
            slot, state = self._target_worker()
            rig.workers[slot].kill()
            self._down.add(slot)
            back = self.clock() + self.rng.uniform(0.5, 3.0)

            def restart_worker() -> None:
                self._down.discard(slot)
                rig.start_worker(slot, wait=False)

            self._later_at(back, f"restart worker-{slot}", restart_worker)
            return f"worker-{slot} ({state}), started again at {back:.1f} s", back
        if kind == WORKER_STOP:
            slot, state = self._target_worker()
            child = rig.workers[slot]
            child.signal(signal.SIGSTOP)
            self._down.add(slot)
            # Past the lease and the sweep that hands its job to the other worker.
            pause = rig.lease_seconds + rig.sweep_seconds + self.rng.uniform(1.0, 3.0)
            back = self.clock() + pause

            def resume() -> None:
                child.signal(signal.SIGCONT)
                self._down.discard(slot)

            self._later_at(back, f"SIGCONT worker-{slot}", resume)
            return f"worker-{slot} ({state}) for {pause:.1f} s", back
        if kind == BEAT_KILL:
            assert rig.beat is not None
            rig.beat.kill()
            back = self.clock() + self.rng.uniform(0.5, 3.0)

            def restart_beat() -> None:
                rig.start_beat(wait=False)

            self._later_at(back, "restart beat", restart_beat)
            return f"started again at {back:.1f} s", back
        if kind == REDIS_FLUSH:
            rig.redis.flushall()
            return "", self.clock()
        if kind == REDIS_RESTART:
            rig.redis.kill()
            self._redis_down = True
            back = self.clock() + self.rng.uniform(0.5, 3.0)

            def restart_redis() -> None:
                rig.redis.start()
                self._redis_down = False

            self._later_at(back, "restart Redis", restart_redis)
            return f"down until {back:.1f} s", back
        if kind == PG_TERMINATE:
            row = (
                self._db()
                .execute(
                    """
                    SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
                    WHERE datname = current_database() AND application_name LIKE %s
                    """,
                    (WORKER_APP + "%",),
                )
                .fetchone()
            )
            return f"{row[0] if row else 0} backends", self.clock()
        if kind == DUPLICATE:
            rows = self._db().execute("SELECT id, status FROM upload_jobs ORDER BY id").fetchall()
            if not rows:
                raise RuntimeError("no job to send twice yet")
            active = [row for row in rows if row[1] in ("QUEUED", "RUNNING")]
            job_id, status = self.rng.choice(active or rows)
            self._broker.send_task(
                "bulkredeem.process_job",
                args=[int(job_id)],
                queue=rig.queue,
                retry=True,
                retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
            )
            return f"job {job_id} ({status})", self.clock()
        raise AssertionError(f"unknown fault kind {kind}")
