"""The revert of the benchmark's import (issue 15): POST /v1/jobs/{id}/revert on the job the
default run just imported, timed to its end as the import was, and its counts checked.

`bench/run.py` calls `measure` after the import, before the database is reset for the lower
bound. Target: no slower than the import.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

from bench import services
from bench.client import ClientError, ServiceClient
from bench.report import Report, say


class _Running(Protocol):
    client: ServiceClient


class _ImportRun(Protocol):
    @property
    def document(self) -> dict[str, Any]: ...
    @property
    def seconds(self) -> float: ...


def _job_seconds(document: dict[str, Any]) -> float | None:
    first, last = document["startedAt"], document["finishedAt"]
    if first is None or last is None:
        return None
    return (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()


def measure(
    running: AbstractContextManager[_Running],
    found: services.Services,
    imported: _ImportRun,
    report: Report,
) -> bool:
    """Revert the import in a running service, add the figures; whether its counts agree."""
    import_id = int(imported.document["jobId"])
    applied = int(imported.document["progress"]["rowsSucceeded"])
    # As before the import: none of its writes (hint bits, a checkpoint due) paid for here.
    services.settle(found, ("customers", "coupons", "redemptions", "coupon_counters"))
    with running as service:
        say(f"reverting job {import_id} ({applied} redemptions)")
        started = time.perf_counter()
        response = service.client.http.post(f"/v1/jobs/{import_id}/revert")
        if response.status_code != 202:
            raise ClientError(f"revert answered {response.status_code}: {response.text[:2000]}")
        revert_id = int(response.json()["jobId"])
        document, ended = service.client.wait_until_ended(revert_id)
    seconds = ended - started
    report.figure("revert status", document["status"])
    report.figure("revert time (request sent to terminal status)", seconds, "s")
    report.figure("revert throughput", applied / seconds if seconds else 0.0, "rows/s")
    report.figure("revert time / service time", seconds / imported.seconds, "x")
    revert_job, import_job = _job_seconds(document), _job_seconds(imported.document)
    if revert_job is not None and import_job:
        report.figure("revert job startedAt to finishedAt", revert_job, "s")
        report.figure("revert job time / import job time", revert_job / import_job, "x")

    with services.connect(found.owner_url) as conn:
        row = conn.execute(
            """
            SELECT (SELECT count(*) FROM redemptions WHERE job_id = %(job)s),
                (SELECT count(*) FROM reverted_redemptions WHERE reverted_by_job_id = %(rev)s),
                (SELECT coalesce(sum(redemption_count), 0) FROM coupon_counters)
            """,
            {"job": import_id, "rev": revert_id},
        ).fetchone()
    assert row is not None
    left, archived, counted = (int(value) for value in row)
    removed = int(document["progress"]["rowsSucceeded"])
    ok = document["status"] == "COMPLETED" and (left, archived, removed, counted) == (
        0,
        applied,
        applied,
        0,
    )
    report.figure("revert removed / archived / left", f"{removed} / {archived} / {left}")
    report.figure("revert counts as expected", "yes" if ok else "no")
    return ok
