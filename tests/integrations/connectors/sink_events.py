"""Shared pieces of the monitoring-sink tests (Datadog, Splunk HEC, Elastic): envelopes and a context."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from syncplane.integrations.base import ConnectorContext


def envelope(number: int = 0, event_type: str = "sync.completed", *, age: timedelta = timedelta(0),
             data: dict | None = None) -> dict:
    """An EventEnvelope as the outbox hands it to a sink (records.EventEnvelope), with a stable id."""
    return {
        "specversion": "1",
        "id": str(uuid.UUID(int=0x5EC0_0000_0000_4000_8000_0000_0000_0000 + number)),
        "type": event_type,
        "time": (datetime.now(UTC) - age).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "correlation_id": f"corr-{number}",
        "subject": {"type": "integration", "id": "7", "name": "ServiceNow CMDB"},
        "data": data if data is not None else {"status": "success", "records_read": 250 + number},
    }


def context(base_url: str, credentials: dict, config: dict | None = None, auth_type: str = "api_key"):
    """A connector context with plain credentials (no secret store in these tests)."""
    return ConnectorContext(base_url=base_url, auth_type=auth_type, config=config or {},
                            credentials=credentials, resolve_secret=lambda value: value, name="sink test")
