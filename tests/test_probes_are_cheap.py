"""Unauthenticated probes come often: /readyz writes nothing to storage."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from fastapi.testclient import TestClient

from core.settings import get_settings


def _everything_under(root: Path) -> set[Path]:
    return set(root.rglob("*")) if root.exists() else set()


def test_readyz_writes_nothing_to_storage(client: TestClient) -> None:
    root = Path(urlsplit(os.environ["STORAGE_URL"]).path)
    before = _everything_under(root)
    modified = root.stat().st_mtime_ns if root.exists() else None
    for _ in range(20):
        assert client.get("/readyz").status_code == 200
    assert _everything_under(root) == before
    assert (root.stat().st_mtime_ns if root.exists() else None) == modified


def test_readyz_is_ready_before_the_first_upload_made_the_storage_folder(
    client: TestClient, tmp_path: Path
) -> None:
    settings = get_settings()
    kept = settings.storage_url
    settings.storage_url = (tmp_path / "not-yet" / "files").as_uri()
    try:
        answer = client.get("/readyz")
    finally:
        settings.storage_url = kept
    assert answer.status_code == 200, answer.text
    assert not (tmp_path / "not-yet").exists()
