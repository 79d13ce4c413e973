"""The chaos run's data: two orgs, series of every kind, and the files its jobs upload.

Everything comes from the seed. Rows race on purpose: every job of a series draws its coupons
from the same small pool, so which job redeems a coupon first is decided by the run, not here.
What the files alone decide is known exactly and checked afterwards: how many data records
each file has, and the rows that must fail with a given code whatever the order (an unknown
customer 701, an unknown coupon 702, a date that is not a number 729).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench import datagen

CUSTOMER_IDENTIFIER = "MOBILE"
COUPON_IDENTIFIER = "COUPON_CODE"
HEADER = "date,till,mobile,code,billId,billNumber"
UPLOAD_HEADERS = {key: index for index, key in enumerate(datagen.COLUMNS)}
FIRST_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z: long after 2000, long before any job
MOBILE_BASE = 7_000_000_000  # customer i of org n: MOBILE_BASE + n * 1,000,000 + i
UNKNOWN_MOBILE_BASE = 6_000_000_000  # no customer has a mobile in this range
BATCH = 10_000  # the reference API's batch limit (DESIGN.md)

UNKNOWN_CUSTOMER = 701
UNKNOWN_COUPON = 702
BAD_DATE = 729
BAD_EVERY = 50  # one row in 50 is bad by itself
REPEAT_EVERY = 40  # one row in 40 repeats an earlier row of its file: a 790 when that one won


@dataclass(frozen=True)
class SeriesKind:
    name: str
    max_per_coupon: int | None  # None: unlimited
    same_user: bool  # sameUserMultipleRedeem
    max_per_customer: int | None  # None: unlimited

    def body(self, org_index: int) -> dict[str, Any]:
        return {
            "name": f"chaos {self.name} (org {org_index})",
            "maxRedemptionsPerCoupon": self.max_per_coupon,
            "sameUserMultipleRedeem": self.same_user,
            "maxRedemptionsPerCustomer": self.max_per_customer,
            # Any customer may redeem any coupon: the jobs' rows race for the same coupons.
            "anyUser": True,
        }


KINDS = (
    SeriesKind("single-use", 1, False, None),
    SeriesKind("3-use", 3, False, None),
    SeriesKind("unlimited, same user again", None, True, None),
    SeriesKind("per-customer limit", 5, True, 3),
)


@dataclass(frozen=True)
class Series:
    id: int
    org: int  # index into Scenario.orgs
    kind: SeriesKind
    codes: tuple[str, ...]


@dataclass(frozen=True)
class Org:
    index: int
    id: int
    api_key: str
    mobiles: tuple[str, ...]


@dataclass(frozen=True)
class JobFile:
    """One file a job uploads, with what the file alone decides about its rows."""

    name: str
    series: Series
    content: bytes
    records: int  # data records (the header and blank lines are not records)
    must_fail: dict[int, int]  # row number -> the code it fails with, whatever the order

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class Request:
    """One upload request: a file under an Idempotency-Key (every upload has one, so that a
    request that got no answer can be sent again safely)."""

    key: str
    file: JobFile
    conflicting: bool = False  # the key's other request, with another file: a 409 expected


@dataclass(frozen=True)
class UploadEvent:
    """Requests sent at once at `at` seconds into the run."""

    at: float
    requests: tuple[Request, ...]
    what: str


@dataclass
class Scenario:
    orgs: list[Org] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    uploads: list[UploadEvent] = field(default_factory=list)

    @property
    def files(self) -> list[JobFile]:
        """Every distinct file uploaded (identical requests share theirs)."""
        seen: dict[str, JobFile] = {}
        for event in self.uploads:
            for request in event.requests:
                seen.setdefault(request.file.name, request.file)
        return list(seen.values())

    def series_of(self, series_id: int) -> Series:
        return next(s for s in self.series if s.id == series_id)


@dataclass(frozen=True)
class Shape:
    """How big the run's data is."""

    jobs: int  # plain jobs, each under a key of its own
    rows_per_job: int  # each job has between half this and this many data records
    customers_per_org: int
    coupons_per_series: int
    idempotent_groups: int  # each: `identical` requests at once, and one conflicting
    identical: int
    upload_window: float  # seconds over which the uploads are spread


class ReferenceDataError(RuntimeError):
    """The reference API refused the run's data: the run cannot start."""


SETUP_TRIES = 5  # the data is set up before any fault: a 5xx then is the server's load


def _post(http: httpx.Client, key: str, path: str, body: dict[str, Any]) -> Any:
    """POST reference data; sent again (a few times) when the answer is a 5xx or none, as on
    a shared Postgres out of connections: the run is about the faults that come later."""
    problem = ""
    for attempt in range(SETUP_TRIES):
        if attempt:
            time.sleep(1.0)
        try:
            response = http.post(path, json=body, headers={"Authorization": f"Bearer {key}"})
        except httpx.HTTPError as exc:
            problem = repr(exc)
            continue
        if response.status_code in (200, 201):
            return response.json()
        problem = f"{response.status_code}: {response.text[:500]}"
        if response.status_code < 500:
            break
    raise ReferenceDataError(f"POST {path} answered {problem}")


def create_reference(
    http: httpx.Client, orgs: list[tuple[int, str]], shape: Shape, seed: int
) -> Scenario:
    """Customers, series and coupons over the real reference API, for each org."""
    scenario = Scenario()
    for index, (org_id, key) in enumerate(orgs):
        base = MOBILE_BASE + index * 1_000_000
        mobiles = tuple(str(base + i) for i in range(shape.customers_per_org))
        for start in range(0, len(mobiles), BATCH):
            batch = [{"mobile": m} for m in mobiles[start : start + BATCH]]
            _post(http, key, "/v1/customers", {"customers": batch})
        scenario.orgs.append(Org(index, org_id, key, mobiles))
        for kind_index, kind in enumerate(KINDS):
            series_id = int(_post(http, key, "/v1/coupon-series", kind.body(index))["id"])
            prefix = f"S{seed}O{index}K{kind_index}-"
            codes = tuple(f"{prefix}{i:05d}" for i in range(shape.coupons_per_series))
            for start in range(0, len(codes), BATCH):
                batch = [{"code": c} for c in codes[start : start + BATCH]]
                _post(http, key, f"/v1/coupon-series/{series_id}/coupons", {"coupons": batch})
            scenario.series.append(Series(series_id, index, kind, codes))
    return scenario


class _Rows:
    """Unique redemption times and bills across the whole run: two rows share a natural key
    only where a file repeats a row on purpose."""

    def __init__(self) -> None:
        self.next = 0

    def take(self) -> int:
        self.next += 1
        return self.next


def make_file(
    name: str, series: Series, org: Org, records: int, rng: random.Random, counter: _Rows
) -> JobFile:
    lines = [HEADER]
    must_fail: dict[int, int] = {}
    written: list[tuple[str, int | None]] = []  # each row and the code it must fail with
    for i in range(records):
        row_number = i + 2  # the header is row 1
        n = counter.take()
        line = ",".join(
            (
                str(FIRST_MS + n * 1000),
                f"T{n % 7}",
                rng.choice(org.mobiles),
                rng.choice(series.codes),
                f"B{n}",
                f"N{n}",
            )
        )
        roll = rng.randrange(BAD_EVERY * REPEAT_EVERY)
        code: int | None = None
        if roll % BAD_EVERY == 0:
            bad = (UNKNOWN_CUSTOMER, UNKNOWN_COUPON, BAD_DATE)[rng.randrange(3)]
            cells = line.split(",")
            if bad == UNKNOWN_CUSTOMER:
                cells[2] = str(UNKNOWN_MOBILE_BASE + n)
            elif bad == UNKNOWN_COUPON:
                cells[3] = f"NO-SUCH-{n}"
            else:
                cells[0] = f"yesterday-{n}"
            line, code = ",".join(cells), bad
        elif roll % REPEAT_EVERY == 1 and written:
            # The same redemption again: a 790 if the first one was applied, else it races
            # like any row (the first may have lost its coupon to another job).
            line, code = rng.choice(written)
        if code is not None:
            must_fail[row_number] = code
        written.append((line, code))
        lines.append(line)
    content = ("\r\n".join(lines) + "\r\n").encode()
    return JobFile(name, series, content, records, must_fail)


def plan_uploads(scenario: Scenario, shape: Shape, seed: int) -> None:
    """The run's uploads and when they go: plain jobs, a file uploaded twice at once under two
    keys (its rows race each other), and groups of identical requests under one key sent at
    the same moment with one conflicting request among them."""
    rng = random.Random(f"chaos-uploads-{seed}")
    counter = _Rows()

    def any_series() -> tuple[Series, Org]:
        series = rng.choice(scenario.series)
        return series, scenario.orgs[series.org]

    def records() -> int:
        return rng.randint(max(1, shape.rows_per_job // 2), max(1, shape.rows_per_job))

    def at() -> float:
        return round(rng.uniform(0.0, shape.upload_window), 3)

    # Plain jobs go round the series in a seeded order, so that every kind gets jobs even in
    # a short run, and several jobs share each series' coupons in a long one.
    order = list(scenario.series)
    rng.shuffle(order)
    events: list[UploadEvent] = []
    for j in range(shape.jobs):
        series = order[j % len(order)]
        org = scenario.orgs[series.org]
        job_file = make_file(f"job-{j}.csv", series, org, records(), rng, counter)
        request = Request(f"chaos-{seed}-job-{j}", job_file)
        if j == 1:
            # The same file as two jobs at once, under two keys: every row of it is applied by
            # at most one of them; the other reports it as a duplicate (790).
            twin = Request(f"chaos-{seed}-job-{j}-twin", job_file)
            events.append(UploadEvent(at(), (request, twin), f"job {j} and its twin"))
        else:
            events.append(UploadEvent(at(), (request,), f"job {j}"))
    for g in range(shape.idempotent_groups):
        series, org = any_series()
        job_file = make_file(f"idem-{g}.csv", series, org, records(), rng, counter)
        other = make_file(f"idem-{g}-conflicting.csv", series, org, records(), rng, counter)
        key = f"chaos-{seed}-idem-{g}"
        same = tuple(Request(key, job_file) for _ in range(shape.identical))
        events.append(
            UploadEvent(
                at(),
                (*same, Request(key, other, conflicting=True)),
                f"{shape.identical} identical requests and a conflicting one under {key}",
            )
        )
    scenario.uploads = sorted(events, key=lambda e: e.at)


def form_fields() -> dict[str, str]:
    return {
        "customerIdentifier": CUSTOMER_IDENTIFIER,
        "couponIdentifier": COUPON_IDENTIFIER,
        "uploadHeaders": json.dumps(UPLOAD_HEADERS),
        "hasHeader": "true",
    }
