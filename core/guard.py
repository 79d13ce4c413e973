"""The error-rate guard: when a job's failed share says its upload is wrong, and what to say.

DESIGN.md, "Guards against a wrong upload". The first chunk is judged before anything of it
is applied (core/apply.py); after each later chunk, the job's share so far. The reasons are
written for the person who made the upload: the share, the leading codes and what to check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.codes import error_name

LEADING_CODES = 3  # more is a list nobody reads in a failureReason


def percent(rate: float) -> str:
    """0.05 as "5%", 0.125 as "12.5%": how a person writes a share."""
    return f"{rate * 100:.4g}%"


@dataclass(frozen=True)
class Guard:
    rate: float  # 0..1: the failed share above which the job stops

    def trips(self, failed: int, processed: int) -> bool:
        # Above, not at: a rate of 0.05 lets 1 failed row in 20 through; 0 lets none.
        return processed > 0 and failed / processed > self.rate

    def refused_first_chunk(
        self, failed: int, processed: int, counts: Mapping[int, int], example: str | None
    ) -> str:
        """Why the job failed on its first chunk, with nothing applied."""
        reason = (
            f"stopped by maxErrorRate {percent(self.rate)} before anything was applied: "
            f"{failed} of the first {processed} rows failed ({percent(failed / processed)}). "
            f"{_leading(counts)}"
        )
        if example:
            reason += f" First: {example}."
        return (
            reason + f" {_hint(counts)} Nothing of the file was applied: fix the upload and "
            "send it again."
        )

    def stopped_later(
        self,
        job_id: int,
        *,
        failed: int,
        processed: int,
        succeeded: int,
        last_row: int,
        counts: Mapping[str, int] | Mapping[int, int],
    ) -> str:
        """Why the job failed after a later chunk: what stays applied, and how to undo it."""
        by_code = {int(code): int(count) for code, count in counts.items()}
        return (
            f"stopped by maxErrorRate {percent(self.rate)} after row {last_row}: {failed} of "
            f"{processed} rows failed so far ({percent(failed / processed)}). "
            f"{_leading(by_code)} {_hint(by_code)} The {succeeded} rows applied so far (the "
            f"rows up to row {last_row} that did not fail; GET /v1/jobs/{job_id}/successes "
            f"lists them) stay applied: POST /v1/jobs/{job_id}/revert undoes them."
        )


def _leading(counts: Mapping[int, int]) -> str:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:LEADING_CODES]
    listed = ", ".join(f"{code} {error_name(code)} x{count}" for code, count in ranked)
    return f"Leading codes: {listed}."


# What a code most often means when most rows get it: a mapping or a series that is wrong.
_MAPPING_CODES = {801, 802, 804, 805, 729}
_REFERENCE_CODES = {701, 702, 703}


def _hint(counts: Mapping[int, int]) -> str:
    top = max(counts.items(), key=lambda kv: (kv[1], -kv[0]))[0] if counts else None
    if top in _REFERENCE_CODES:
        return (
            "Check the coupon series (couponSeriesId), customerIdentifier and couponIdentifier, "
            "and that uploadHeaders points each key at the right column."
        )
    if top == 790:
        return "The rows were recorded before: was this file uploaded already?"
    if top in _MAPPING_CODES:
        return (
            "Check uploadHeaders: two columns swapped or shifted? (POST /v1/uploads/preview "
            "shows the first records as they are read.)"
        )
    return "Check uploadHeaders and the coupon series."
