"""What a job applied: its successes, as JSON pages and as CSV."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from api.deps import OrgTx
from api.errors import ERROR_RESPONSES
from core import successes
from core.jobs import queries
from core.limits import MAX_ID

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

JobId = Annotated[int, Path(alias="jobId", gt=0, le=MAX_ID)]


@router.get("/{jobId}/successes")
def get_successes(
    job_id: JobId,
    tx: OrgTx,
    afterRow: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The job's applied rows in file order, a page at a time: each row's uploaded cells
    (`fields`), then the redemption it made and what that recorded."""
    job = queries.get_job(tx.session, tx.org_id, job_id)
    source = successes.source_of(tx.session, tx.org_id, job)
    rows = successes.page(tx.session, source, after_row=afterRow, limit=limit)
    return {
        "items": [{"fields": cells, **row.document()} for cells, row in rows],
        "nextAfterRow": rows[-1][1].row_number if len(rows) == limit else None,
    }


@router.get("/{jobId}/successes.csv")
def get_successes_csv(job_id: JobId, tx: OrgTx) -> StreamingResponse:
    """The applied rows as CSV: the uploaded cells, then the redemption each one made."""
    job = queries.get_job(tx.session, tx.org_id, job_id)
    source = successes.source_of(tx.session, tx.org_id, job)
    stem = job.file_name.rsplit(".", 1)[0] or "upload"
    # The errors CSV's rule for a file name a header can carry.
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:100]
    return StreamingResponse(
        successes.report_lines(tx.org_id, source),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{safe}-successes-{job.id}.csv"'},
    )
