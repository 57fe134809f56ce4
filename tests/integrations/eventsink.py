"""A monitoring sink for the tests of events, health, metrics and the outbox API: no vendor, no socket.

It keeps what it received by event id, as a real sink's idempotency key does (Elastic's _id): an event sent
twice is stored once, and `calls` (`calls_by_sink`, by integration name) shows every batch as it came.
`script` holds what the next calls do: an exception to raise, or {event_id: EventResult outcome} (events not
named are delivered).
"""

import pytest

from syncplane.integrations import registry
from syncplane.integrations.base import Connector, EventResult
from syncplane.integrations.choices import Capability, RecordKind
from syncplane.integrations.models import ExternalSystem
from syncplane.integrations.records import EVENT_TYPES_SCHEMA


class RecordingSink(Connector):
    system_type = "test_event_sink"
    category = "monitoring"
    display_name = "Recording sink"
    record_kind = RecordKind.EVENT
    auth_types = ("none",)
    capabilities = frozenset({Capability.SEND_EVENTS, Capability.SEND_METRICS})
    config_schema = {"type": "object", "properties": {"event_types": EVENT_TYPES_SCHEMA},
                     "additionalProperties": False}
    max_batch_events = 3
    max_batch_bytes = 4000
    max_event_bytes = 1500

    received: dict[str, dict] = {}
    calls: list[list[str]] = []
    calls_by_sink: dict[str, list[list[str]]] = {}
    script: list = []
    metrics: list = []

    def send_events(self, events):
        ids = [event["id"] for event in events]
        type(self).calls.append(ids)
        type(self).calls_by_sink.setdefault(self.context.name, []).append(ids)
        step = type(self).script.pop(0) if type(self).script else {}
        if isinstance(step, Exception):
            raise step
        results = []
        for event in events:
            outcome = step.get(event["id"], "delivered")
            if outcome == "delivered":
                type(self).received.setdefault(event["id"], event)
            results.append(EventResult(event["id"], outcome, reason=f"sink says {outcome}",
                                       retry_after=90 if outcome == "retry" else None))
        return results

    def send_metrics(self, points):
        type(self).metrics.append(points)


@pytest.fixture(name="recording_sink")
def recording_sink_fixture(monkeypatch):
    """The sink class, registered for this test, with empty memories (import this to use `recording_sink`)."""
    monkeypatch.setitem(registry._connectors, RecordingSink.system_type, RecordingSink)
    monkeypatch.setattr(RecordingSink, "received", {})
    monkeypatch.setattr(RecordingSink, "calls", [])
    monkeypatch.setattr(RecordingSink, "calls_by_sink", {})
    monkeypatch.setattr(RecordingSink, "script", [])
    monkeypatch.setattr(RecordingSink, "metrics", [])
    return RecordingSink


def make_sink(name="Sink", **fields) -> ExternalSystem:
    return ExternalSystem.objects.create(
        name=name, system_type=RecordingSink.system_type, category="monitoring",
        base_url="https://sink.example", auth_type="none", **fields,
    )
