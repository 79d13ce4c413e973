"""Reverting an import: a job of its own, answered at once, run by the workers."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Path, Request
from fastapi.responses import JSONResponse

from api.deps import OrgTx, presented_key
from api.doorbell import enqueue_job
from api.errors import ERROR_RESPONSES
from api.uploading import idempotency_key
from core import keys
from core.jobs import documents
from core.limits import MAX_ID
from core.reverts import request as revert_request

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

JobId = Annotated[int, Path(alias="jobId", gt=0, le=MAX_ID)]


@router.post(
    "/{jobId}/revert",
    status_code=202,
    responses={202: {"description": "The revert job (kind REVERT), queued"}},
)
def revert_job(
    job_id: JobId, tx: OrgTx, request: Request, background: BackgroundTasks
) -> JSONResponse:
    """Undo what an import applied, as a job of its own; 409 when the job cannot be reverted
    (not ended, a dry run, a revert, reverted already: the answer names that revert)."""
    key = idempotency_key(request)
    who = keys.identify(tx.session, presented_key(request))  # admitted already: only its id
    job, created = revert_request.request_revert(
        tx.session,
        tx.org_id,
        job_id,
        idempotency_key=key,
        key_id=None if who is None else who.key_id,
    )
    if created:
        # After the commit (background tasks run after the response, the request's transaction
        # before it): a worker must find the job it is told about.
        background.add_task(_ring, job.id)
    location = f"/v1/jobs/{job.id}"
    return JSONResponse(
        documents.job_document(job), status_code=202, headers={"Location": location}
    )


def _ring(job_id: int) -> None:
    try:
        enqueue_job(job_id)
    except Exception:
        log.warning("job %s: could not enqueue; the sweeper will", job_id, exc_info=True)
