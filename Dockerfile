# One image for every role (migrate, api, worker, beat); docker-compose.yml picks the command.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY pyproject.toml README.md ./
COPY api ./api
COPY core ./core
COPY worker ./worker
COPY cli ./cli
COPY migrations ./migrations
RUN pip install .

# Uploaded files and beat's schedule live on a volume shared by api, worker and beat.
RUN useradd --system --uid 10001 --home-dir /app bulkredeem \
    && mkdir -p /data/files \
    && chown -R bulkredeem /data
USER bulkredeem

EXPOSE 8000
CMD ["uvicorn", "api.app:app", "--host", "0.0.0.0", "--port", "8000"]
