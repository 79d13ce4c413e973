"""The chaos run's clients: uploads at their planned times, pollers, and a sampler of progress.

Every answer the API gives is kept (its status, and the body of any 5xx), so that "no 5xx" is
checked over all of them, not over a sample. The sampler reads Postgres a few times a second
for the stall and recovery figures.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg

from bench.chaos_scenario import Request, Scenario, UploadEvent, form_fields

UPLOAD_TRIES = 4  # a request with no definitive answer is sent again, same key, same bytes
RETRY_PAUSE = 1.0
TIMEOUT = 120.0
POLL_PAUSE = 0.5
SAMPLE_PAUSE = 0.25


@dataclass
class Answers:
    """Every answer of the API during the run, by status, and the 5xx (and no-answer) ones."""

    statuses: Counter[int] = field(default_factory=Counter)
    no_answer: int = 0
    bad: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, what: str, response: httpx.Response | None, error: str = "") -> None:
        with self.lock:
            if response is None:
                self.no_answer += 1
                if len(self.bad) < 50:
                    self.bad.append(f"{what}: no answer ({error})")
                return
            self.statuses[response.status_code] += 1
            if response.status_code >= 500 and len(self.bad) < 50:
                self.bad.append(f"{what}: {response.status_code} {response.text[:300]}")

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + self.no_answer

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


@dataclass
class Outcome:
    """What one upload request finally got: its job, a 409, or nothing definitive."""

    request: Request
    answers: list[int | str] = field(default_factory=list)  # status per try, or the error
    job_id: int | None = None
    conflict: bool = False


class Uploader:
    """Sends each planned event's requests at its time, all at once (a barrier), each in a
    thread of its own with a client of its own."""

    def __init__(
        self,
        base_url: str,
        scenario: Scenario,
        answers: Answers,
        clock: Callable[[], float],
    ) -> None:
        self.base_url = base_url
        self.scenario = scenario
        self.answers = answers
        self.clock = clock
        self.outcomes: list[Outcome] = []
        self._threads: list[threading.Thread] = []
        self._scheduler = threading.Thread(target=self._schedule, name="chaos-uploads", daemon=True)

    def start(self) -> None:
        self._scheduler.start()

    def join(self, timeout: float) -> bool:
        """Wait for every request to end; False if some are still going at `timeout`."""
        deadline = time.monotonic() + timeout
        self._scheduler.join(max(0.0, deadline - time.monotonic()))
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not self._scheduler.is_alive() and not any(t.is_alive() for t in self._threads)

    def _schedule(self) -> None:
        for event in self.scenario.uploads:
            wait = event.at - self.clock()
            if wait > 0:
                time.sleep(wait)
            self._fire(event)

    def _fire(self, event: UploadEvent) -> None:
        barrier = threading.Barrier(len(event.requests))
        for request in event.requests:
            outcome = Outcome(request)
            self.outcomes.append(outcome)
            thread = threading.Thread(
                target=self._send, args=(outcome, barrier), name="chaos-upload", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _send(self, outcome: Outcome, barrier: threading.Barrier) -> None:
        request = outcome.request
        series = request.file.series
        org = self.scenario.orgs[series.org]
        headers = {"Authorization": f"Bearer {org.api_key}", "Idempotency-Key": request.key}
        path = f"/coupon/api/v1/upload/redeemFile/{series.id}"
        with httpx.Client(base_url=self.base_url, timeout=TIMEOUT) as http:
            for attempt in range(UPLOAD_TRIES):
                if attempt == 0:
                    barrier.wait(timeout=TIMEOUT)
                else:
                    time.sleep(RETRY_PAUSE)
                try:
                    response = http.post(
                        path,
                        headers=headers,
                        data=form_fields(),
                        files={"file": (request.file.name, request.file.content, "text/csv")},
                    )
                except httpx.HTTPError as exc:
                    self.answers.record(f"POST {path} ({request.key})", None, repr(exc))
                    outcome.answers.append(type(exc).__name__)
                    continue
                self.answers.record(f"POST {path} ({request.key})", response)
                outcome.answers.append(response.status_code)
                if response.status_code == 200:  # Capillary's answer: the job in `result`
                    statuses = response.json()["result"]["redeemUploadJobStatuses"]
                    outcome.job_id = int(statuses[0]["jobId"])
                    return
                if response.status_code == 409:
                    outcome.conflict = True
                    return
                if response.status_code < 500:
                    return  # refused for good: reported by the checks, not sent again


class Poller(threading.Thread):
    """A client watching its jobs: the list of each org's jobs and one job's document, every
    half second, as a dashboard would."""

    def __init__(
        self, base_url: str, scenario: Scenario, answers: Answers, job_ids: Callable[[], list[int]]
    ) -> None:
        super().__init__(name="chaos-poller", daemon=True)
        self.base_url = base_url
        self.scenario = scenario
        self.answers = answers
        self.job_ids = job_ids
        self.rng = random.Random(0)
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=TIMEOUT)

    def _get(self, http: httpx.Client, path: str, key: str) -> None:
        try:
            response = http.get(path, headers={"Authorization": f"Bearer {key}"})
        except httpx.HTTPError as exc:
            self.answers.record(f"GET {path}", None, repr(exc))
            return
        self.answers.record(f"GET {path}", response)

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=TIMEOUT) as http:
            while not self._halt.wait(POLL_PAUSE):
                for org in self.scenario.orgs:
                    self._get(http, "/v1/jobs?limit=100", org.api_key)
                known = self.job_ids()
                if known:
                    # Whichever org the job is of: another org's job is a 404, an answer too.
                    org = self.rng.choice(self.scenario.orgs)
                    self._get(http, f"/v1/jobs/{self.rng.choice(known)}", org.api_key)


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the run began
    waiting: int  # jobs QUEUED or RUNNING
    processed: int  # rows processed over all jobs
    running: dict[int, int]  # each RUNNING job's rows processed


class Sampler(threading.Thread):
    """Progress as Postgres has it, a few times a second, on a connection of its own."""

    def __init__(self, database_url: str, clock: Callable[[], float]) -> None:
        super().__init__(name="chaos-sampler", daemon=True)
        self.database_url = database_url
        self.clock = clock
        self.samples: list[Sample] = []
        self.failures = 0
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)

    def run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._halt.wait(SAMPLE_PAUSE):
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=5)
                rows = conn.execute("SELECT id, status, rows_processed FROM upload_jobs").fetchall()
            except psycopg.Error:
                self.failures += 1
                conn = None
                continue
            waiting = sum(1 for row in rows if row[1] in ("QUEUED", "RUNNING"))
            processed = sum(int(row[2]) for row in rows)
            running = {int(row[0]): int(row[2]) for row in rows if row[1] == "RUNNING"}
            self.samples.append(Sample(self.clock(), waiting, processed, running))
        if conn is not None:
            conn.close()


@dataclass(frozen=True)
class Stall:
    seconds: float
    began: float  # when the last progress before it was seen


def longest_stall(samples: list[Sample]) -> Stall:
    """The longest stretch in which jobs were waiting and no row was processed."""
    best = Stall(0.0, 0.0)
    since: float | None = None  # when progress was last seen while jobs waited
    last = -1
    for sample in samples:
        if sample.waiting == 0:
            since, last = None, sample.processed
            continue
        if since is None or sample.processed != last:
            since, last = sample.at, sample.processed
            continue
        if sample.at - since > best.seconds:
            best = Stall(sample.at - since, since)
    return best


def recovery_after(samples: list[Sample], moment: float) -> float | None:
    """Seconds from `moment` until every job RUNNING then has processed a row again or ended:
    0 when none was running, None when one never moved again."""
    before = [s for s in samples if s.at <= moment]
    if not before:
        return None
    stuck = dict(before[-1].running)
    for sample in samples:
        if sample.at <= moment:
            continue
        for job_id, processed in list(stuck.items()):
            if sample.running.get(job_id, processed + 1) != processed:
                del stuck[job_id]  # it moved, or it is no longer RUNNING (it ended)
        if not stuck:
            return sample.at - moment
    return None if stuck else 0.0


def fetch_json(http: httpx.Client, answers: Answers, path: str, key: str) -> Any:
    """A GET whose answer the checks need; None when there was none (recorded as such)."""
    response = _fetch(http, answers, path, key)
    return None if response is None else response.json()


def fetch_text(http: httpx.Client, answers: Answers, path: str, key: str) -> str | None:
    response = _fetch(http, answers, path, key)
    return None if response is None else response.text


def _fetch(http: httpx.Client, answers: Answers, path: str, key: str) -> httpx.Response | None:
    """The GET's answer when it was a 200; every answer, or its absence, is recorded."""
    try:
        response = http.get(path, headers={"Authorization": f"Bearer {key}"})
    except httpx.HTTPError as exc:
        answers.record(f"GET {path}", None, repr(exc))
        return None
    answers.record(f"GET {path}", response)
    return response if response.status_code == 200 else None
