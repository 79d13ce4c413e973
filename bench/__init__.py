"""The benchmark of issue 3: the service against a hand-written SQL lower bound and a naive loop.

`python -m bench --rows N` (or `make bench ROWS=N`); see bench/README.md.
"""
