"""Settings, read once from the environment (prefix BULKREDEEM_ for the service's own)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BULKREDEEM_", extra="ignore")

    # Conventional names, without the prefix.
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/bulkredeem",
        validation_alias=AliasChoices("DATABASE_URL", "BULKREDEEM_DATABASE_URL"),
    )
    database_admin_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_ADMIN_URL", "BULKREDEEM_DATABASE_ADMIN_URL"),
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "BULKREDEEM_REDIS_URL"),
    )
    storage_url: str = Field(
        default_factory=lambda: (Path.cwd() / ".data" / "files").as_uri(),
        validation_alias=AliasChoices("STORAGE_URL", "BULKREDEEM_STORAGE_URL"),
    )

    # The role the service connects as (DATABASE_URL's user), made by the migrations: no
    # superuser, no BYPASSRLS, owner of nothing. Its password, where the server wants one.
    app_db_role: str = "bulkredeem_app"
    app_db_password: str | None = None

    # The Celery queue the service's jobs travel on (tests use their own).
    queue_name: str = "bulkredeem"

    # Upload limits.
    max_upload_bytes: int = 1024**3
    max_rows: int = 10_000_000
    max_multipart_parts: int = 32
    max_field_bytes: int = 64 << 10  # each non-file form field

    # Per-org limits, shared by every API process through Redis (0 turns one off). The prefix
    # keeps deployments (or test runs) that share a Redis apart.
    redis_prefix: str = "bulkredeem"
    uploads_per_minute: int = 60
    # Every other authenticated request, polls or not. Its first name,
    # BULKREDEEM_POLLS_PER_MINUTE, said less than it limits: still read, after the new one.
    requests_per_minute: int = Field(
        default=6000,
        validation_alias=AliasChoices(
            "BULKREDEEM_REQUESTS_PER_MINUTE", "BULKREDEEM_POLLS_PER_MINUTE"
        ),
    )
    # Jobs of one org running at once; the rest wait QUEUED, oldest first.
    max_running_jobs_per_org: int = 2

    # Postgres connections a process keeps open once it has opened them, in two pools; each
    # opens up to as many again (at most 10) beyond its size under a burst, and closes those.
    # Polls (GET /v1/jobs/{id}) have their own (core/db.py says why 30). Its first name,
    # BULKREDEEM_DB_POOL_SIZE, said nothing of polls: still read, after the new one.
    db_poll_pool_size: int = Field(
        default=30,
        ge=1,
        validation_alias=AliasChoices("BULKREDEEM_DB_POLL_POOL_SIZE", "BULKREDEEM_DB_POOL_SIZE"),
    )
    # Every other request, and a worker's chunks (2 or 3 connections at once per worker).
    db_main_pool_size: int = Field(default=10, ge=1)

    # Worker. Chunks of 5,000, 10,000 and 20,000 rows applied a million in 27.0, 27.4 and
    # 27.2 s (bench/README.md): 10,000 commits progress every ~0.3 s and keeps a chunk small.
    chunk_rows: int = 10_000
    # Workers run as batch work this many steps below normal (nice), so that a job leaves
    # the API a core when it wants one (worker/priority.py); 0 keeps them at normal priority.
    worker_nice: int = 10
    # A worker renews its lease every quarter of this; a crashed worker's job resumes elsewhere
    # once the lease has lapsed and beat has swept it.
    lease_seconds: int = 60
    # A task processes at most this long before handing the rest of the job to a new message,
    # so a long job never holds a worker (or a broker message) for its whole run, and a small
    # upload queued behind it starts within seconds.
    slice_seconds: float = 5.0
    max_attempts: int = 5

    # Beat.
    sweep_interval_seconds: float = 15.0
    queued_requeue_seconds: int = 60
    file_retention_days: int = 30

    # API.
    # A job's event stream closes after this long even if the job goes on (reconnect to
    # follow it further): no connection lives for ever.
    events_max_seconds: float = 3600.0

    # Completion webhooks (callbackUrl). Targets in private, loopback and link-local ranges
    # are refused unless allowed (tests allow loopback for their own receiver).
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = 10.0
    # Deliveries are retried with exponential backoff for at most this long after the job's end.
    webhook_retry_seconds: float = 3600.0

    # Storage: STORAGE_URL=s3://bucket/prefix goes through boto3; an endpoint for MinIO or
    # any S3-compatible store (unset: AWS's), and the region.
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"

    # Metrics and logs. A worker serves its own /metrics on this port (0: none); the API
    # serves /metrics itself. Logs are JSON lines unless log_format is "text".
    worker_metrics_port: int = 0
    log_format: str = "json"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
