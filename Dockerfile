# One image for every role (migrate, api, worker, beat); docker-compose.yml picks the command.
# The Python that the lock was tested with, on a named Debian release: a tag that cannot move.
FROM python:3.12.1-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The runtime part of the lock, checked by hash and wheels only, in a layer of its own that a
# code change does not rebuild. It holds setuptools too, so the project below is built with the
# locked backend rather than whatever build isolation would fetch.
COPY requirements/runtime.txt ./requirements/
RUN pip install --require-hashes --only-binary :all: -r requirements/runtime.txt

COPY pyproject.toml README.md ./
COPY api ./api
COPY core ./core
COPY worker ./worker
COPY cli ./cli
COPY migrations ./migrations
RUN pip install --no-deps --no-build-isolation .

# Uploaded files and beat's schedule live on a volume shared by api, worker and beat.
RUN useradd --system --uid 10001 --home-dir /app bulkredeem \
    && mkdir -p /data/files \
    && chown -R bulkredeem /data
USER bulkredeem

EXPOSE 8000
CMD ["uvicorn", "api.app:app", "--host", "0.0.0.0", "--port", "8000"]
