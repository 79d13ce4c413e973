#!/usr/bin/env bash
# Rewrites the locks from pyproject.toml and requirements/build.in (README, "Dependencies"):
#   requirements/lock.sh                             keep every pin that still satisfies pyproject
#   requirements/lock.sh --upgrade-package ruff      move one package (and what it needs) forward
#   requirements/lock.sh --upgrade                   move everything to its newest release
# lock.txt is everything `make` installs (runtime, the dev and embedded extras, setuptools, for
# Python 3.11 and newer on any platform); runtime.txt is its runtime part, for the Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=.venv/bin/uv
if [ ! -x "$uv" ]; then
  echo "$uv is missing: run \`make install\` first." >&2
  exit 1
fi
common=(--universal --python-version 3.11 --generate-hashes --quiet
        --custom-compile-command requirements/lock.sh)
"$uv" pip compile pyproject.toml requirements/build.in --extra dev --extra embedded \
  "${common[@]}" "$@" -o requirements/lock.txt
# Constrained by lock.txt, so the image gets exactly the versions that `make test` ran.
"$uv" pip compile pyproject.toml requirements/build.in -c requirements/lock.txt \
  "${common[@]}" -o requirements/runtime.txt
