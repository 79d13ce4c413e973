"""Undoing an import: a revert is a job of its own (DESIGN.md, Revert).

`request.py` makes the revert job, or says why not; `run.py` runs it, chunk by chunk.
"""
