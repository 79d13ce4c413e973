"""Schemathesis against the service's own OpenAPI document: no 5xx, no answer outside its schema.

Bounded here (BULKREDEEM_FUZZ_EXAMPLES per operation, 25 by default); `make fuzz` runs longer.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app

EXAMPLES = int(os.environ.get("BULKREDEEM_FUZZ_EXAMPLES", "25"))


# Importing the app configures Celery: tests/conftest.py set its environment before this.
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())


@pytest.fixture(scope="module")
def fuzz_auth(database_url: str) -> Iterator[dict[str, str]]:
    from core import keys
    from core.settings import get_settings
    from tests.dbtools import admin_transaction

    with admin_transaction() as session:
        _, issued = keys.create_org(session, f"fuzz-{uuid.uuid4().hex[:8]}")
    limits = get_settings()
    saved = (limits.uploads_per_minute, limits.requests_per_minute, limits.events_max_seconds)
    # The fuzzer would trip the rate limits long before it found anything interesting.
    limits.uploads_per_minute = limits.requests_per_minute = 0
    # A job the fuzzer made may never run here: its event stream must not wait for its end.
    limits.events_max_seconds = 1.0
    yield {"Authorization": f"Bearer {issued.key}"}
    limits.uploads_per_minute, limits.requests_per_minute, limits.events_max_seconds = saved


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_api_never_answers_5xx_nor_outside_its_schema(
    case: schemathesis.Case, fuzz_auth: dict[str, str]
) -> None:
    case.call_and_validate(
        headers=fuzz_auth,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
