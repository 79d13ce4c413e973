"""Undoing an import: a revert is a job of its own (DESIGN.md, Revert).

`request.py` makes the revert job, or says why not; `run.py` runs it, chunk by chunk.
"""

from core.reverts.request import refuse_cancel, request_revert
from core.reverts.run import is_revert, run_revert

__all__ = ["is_revert", "refuse_cancel", "request_revert", "run_revert"]
