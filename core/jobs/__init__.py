"""Upload jobs once created (core/uploads/create.py makes them), one idea a module:

- `queries`: one job, a page of them, its row errors, its org (the ORM's reads).
- `poll`: GET /v1/jobs/{id}'s fast path, the key and the job in one message to Postgres.
- `documents`: a job as the API and the webhook show it, and Capillary's status entry.
- `cancel`: a cancel's request and the end it brings; a dry run's would-be redemptions dropped.
- `lease`: a worker's hold on a job: claim, renew, hand on, finish, let go, fail.
- `sweep`: the sweeper: lapsed leases counted as losses, frozen copies ended, jobs re-sent.

Import each name from its module; this package re-exports nothing.
"""
