"""Domain events: one envelope per fact, written to the outbox of each sink that wants it, in the transaction of
the fact; sync.completed / sync.failed where a run finishes."""

import uuid
from datetime import datetime

import pytest
from django.db import transaction

from syncplane.core.context import reset_correlation_id, set_correlation_id
from syncplane.integrations import events
from syncplane.integrations.choices import RunStatus
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.events import DomainEvent, emit_event, emit_events, type_matches
from syncplane.integrations.models import OutboxKind, OutboxMessage, OutboxStatus
from syncplane.integrations.secrets import to_reference
from tests.integrations.eventsink import make_sink, recording_sink_fixture  # noqa: F401 (the fixture)

pytestmark = pytest.mark.django_db

SUBJECT = {"type": "integration", "id": "7", "name": "ServiceNow"}


def event_types_of(sink):
    return sorted(OutboxMessage.objects.filter(external_system=sink).values_list("payload__type", flat=True))


def test_the_envelope(recording_sink):
    sink = make_sink()
    token = set_correlation_id("req-42")
    try:
        emit_event("sync.failed", subject=SUBJECT, data={"error_kind": "permanent"})
    finally:
        reset_correlation_id(token)
    message = OutboxMessage.objects.get()
    envelope = message.payload
    assert set(envelope) == {"specversion", "id", "type", "time", "correlation_id", "subject", "data"}
    assert envelope["specversion"] == "1" and envelope["type"] == "sync.failed"
    assert str(uuid.UUID(envelope["id"])) == envelope["id"]
    assert envelope["time"].endswith("Z") and datetime.fromisoformat(envelope["time"]).utcoffset().total_seconds() == 0
    assert envelope["correlation_id"] == "req-42"  # the work in progress, unless the caller says otherwise
    assert (envelope["subject"], envelope["data"]) == (SUBJECT, {"error_kind": "permanent"})
    assert (message.kind, message.external_system, message.status) == (OutboxKind.EVENT, sink, OutboxStatus.PENDING)
    assert (message.subject_type, message.subject_id) == ("integration", "7")
    assert message.idempotency_key == f"event:{sink.pk}:{envelope['id']}"
    emit_event("sync.failed", subject=SUBJECT, data={}, correlation_id="given")
    assert OutboxMessage.objects.latest("id").payload["correlation_id"] == "given"


def test_an_event_is_written_in_the_facts_transaction_and_rolled_back_with_it(recording_sink):
    make_sink()
    with pytest.raises(RuntimeError), transaction.atomic():
        emit_event("sync.completed", subject=SUBJECT, data={})
        assert OutboxMessage.objects.count() == 1
        raise RuntimeError("the fact's own write failed")
    assert OutboxMessage.objects.count() == 0


def test_each_sink_gets_the_types_it_asked_for(recording_sink):
    everything = make_sink("All")  # no event_types: all of them
    syncs = make_sink("Syncs", config={"event_types": ["sync.*"]})
    approvals = make_sink("Approvals", config={"event_types": ["change.approved", "integration.*"]})
    make_sink("Disabled", enabled=False)
    archived = make_sink("Archived")
    archived.archived_at = archived.created_at
    archived.save()
    for event_type in ("sync.completed", "change.approved", "change.rejected", "integration.unhealthy"):
        emit_event(event_type, subject=SUBJECT, data={})
    assert event_types_of(everything) == sorted(
        ["sync.completed", "change.approved", "change.rejected", "integration.unhealthy"])
    assert event_types_of(syncs) == ["sync.completed"]
    assert event_types_of(approvals) == ["change.approved", "integration.unhealthy"]
    assert OutboxMessage.objects.count() == 7  # nothing for the disabled or the archived sink


@pytest.mark.parametrize(("event_type", "patterns", "expected"), [
    ("sync.completed", ["*"], True),
    ("sync.completed", ["sync.*"], True),
    ("sync.completed", ["sync.failed"], False),
    ("syncx.completed", ["sync.*"], False),  # a prefix is a whole first part
    ("change.approved", [], False),
])
def test_type_matching(event_type, patterns, expected):
    assert type_matches(event_type, patterns) is expected


def test_without_a_sink_an_event_costs_one_cached_query(recording_sink, django_assert_num_queries):
    with django_assert_num_queries(1):
        emit_event("sync.completed", subject=SUBJECT, data={})
    with django_assert_num_queries(0):
        emit_event("sync.completed", subject=SUBJECT, data={})
    assert OutboxMessage.objects.count() == 0
    make_sink()  # saving an integration drops the cached list
    emit_event("sync.completed", subject=SUBJECT, data={})
    assert OutboxMessage.objects.count() == 1


def test_many_events_are_one_insert_and_one_task_per_sink(recording_sink, django_assert_num_queries,
                                                           django_capture_on_commit_callbacks):
    first, second = make_sink("One"), make_sink("Two")
    events.event_sinks()  # cached
    batch = [DomainEvent("change.approved", {"type": "change", "id": str(n), "name": "c"}, {}) for n in range(20)]
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        with django_assert_num_queries(1):
            emit_events(batch)
        emit_event("sync.completed", subject=SUBJECT, data={})  # the same transaction: no second task
    assert OutboxMessage.objects.filter(external_system=first).count() == 21
    assert OutboxMessage.objects.filter(external_system=second).count() == 21
    assert sorted(callback.system_id for callback in callbacks) == [first.pk, second.pk]


def test_an_unknown_type_is_refused_even_without_a_sink():
    with pytest.raises(ValueError, match="unknown event type 'sync.complete'"):
        emit_event("sync.complete", subject=SUBJECT, data={})


# --- where a run finishes ---------------------------------------------------------------------------------


def test_a_sync_emits_sync_completed_with_its_counts(recording_sink, servicenow):
    sink = make_sink()
    log = run_sync(start_sync(servicenow).pk)
    assert log.status == RunStatus.SUCCESS
    message = OutboxMessage.objects.get(external_system=sink)
    envelope = message.payload
    assert envelope["type"] == "sync.completed" and envelope["correlation_id"] == log.correlation_id
    assert envelope["subject"] == {"type": "integration", "id": str(servicenow.pk), "name": servicenow.name,
                                   "system_type": servicenow.system_type}
    assert envelope["data"] == {
        "sync_log_id": log.pk, "status": "success", "mode": "full", "trigger": "manual",
        "duration_ms": log.duration_ms,
        "records": {"read": 250, "created": 250, "updated": 0, "unchanged": 0, "deleted": 0, "failed": 0},
    }


def test_a_failed_sync_emits_sync_failed_and_a_dry_run_nothing(recording_sink, servicenow):
    sink = make_sink()
    run_sync(start_sync(servicenow, dry_run=True).pk)
    assert OutboxMessage.objects.count() == 0
    servicenow.credentials = {**servicenow.credentials, "password": to_reference("wrong-password")}
    servicenow.save()
    log = run_sync(start_sync(servicenow).pk)
    assert log.status == RunStatus.FAILED
    envelope = OutboxMessage.objects.get(external_system=sink).payload
    assert envelope["type"] == "sync.failed"
    assert envelope["data"]["error_kind"] == "permanent" and envelope["data"]["status"] == "failed"
    assert envelope["data"]["error_summary"] == log.error_summary
    assert "wrong-password" not in str(envelope)
