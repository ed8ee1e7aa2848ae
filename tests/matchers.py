"""Shared matchers for whole-body assertions."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from dirty_equals import DirtyEquals, IsNow, IsStr

ULID = r"[0-9A-HJKMNP-TV-Z]{26}"
ISO_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
NOT_FOUND = {"error": "Job not found"}
ANY_ULID = IsStr(regex=ULID)

# The job of the contract's examples (query-jobs.txt), as a create body.
CONTRACT_EXAMPLE_JOB: dict[str, Any] = {
    "name": "process-video",
    "payload": {"url": "s3://bucket/video.mp4", "format": "720p"},
    "maxRetries": 5,
    "timeoutSeconds": 600,
    "callbackUrl": "https://example.com/webhooks/jobs",
    "callbackHeaders": {"Authorization": "Bearer your-secret"},
}
ANY_ISO_TIME = IsStr(regex=ISO_TIME)


def is_now() -> DirtyEquals[str]:
    """An ISO time in the wire format, within 10 s of now."""
    return IsStr(regex=ISO_TIME) & IsNow(iso_string=True, tz=UTC, delta=10)
