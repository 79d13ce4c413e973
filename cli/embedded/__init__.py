"""Embedded Postgres and Redis for `bulkredeem dev`, the admin commands, the bench and the tests.

`postgres` (and the rule of which database a command uses), `redis`, and what both share in
`common`. Each keeps its data under `.data/`.
"""
