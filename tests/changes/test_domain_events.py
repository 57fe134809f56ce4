"""The change events the monitoring sinks receive (change.submitted / approved / rejected / implemented /
cancelled), written with the state they report."""

import pytest

from syncplane.changes import actions
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import OutboxMessage
from tests.integrations.eventsink import make_sink, recording_sink_fixture  # noqa: F401 (the fixture)

pytestmark = pytest.mark.django_db


def change_events(sink):
    return list(OutboxMessage.objects.filter(external_system=sink, subject_type="change").order_by("id")
                .values_list("payload__type", flat=True))


def test_each_state_reached_is_one_event(recording_sink, fake_system, fake_itsm, draft, make_user,
                                         django_capture_on_commit_callbacks):
    sink = make_sink(config={"event_types": ["change.*"]})
    change = draft(risk_score=60)
    with django_capture_on_commit_callbacks(execute=True):
        actions.submit(change, user=make_user("operator", "olivia"), external_system=fake_system)
    assert change_events(sink) == ["change.submitted"]
    submitted = OutboxMessage.objects.get(external_system=sink, payload__type="change.submitted").payload
    change.refresh_from_db()
    assert submitted["subject"] == {"type": "change", "id": str(change.pk), "name": "Rotate TLS certificates"}
    assert submitted["data"]["actor"] == "olivia" and submitted["data"]["risk_score"] == 60
    assert submitted["data"]["from_state"] == "draft" and submitted["data"]["state"] == "submitted"
    assert submitted["data"]["change_correlation_id"] == change.correlation_id
    # The CAB approves, then the change is implemented, as polls see it (assess and implementing: no event).
    fake_itsm.move("ext-1", "approved")
    run_sync(start_sync(fake_system).pk)
    fake_itsm.move("ext-1", "completed")
    run_sync(start_sync(fake_system).pk)
    assert change_events(sink) == ["change.submitted", "change.approved", "change.implemented"]
    implemented = OutboxMessage.objects.get(external_system=sink, payload__type="change.implemented").payload
    assert implemented["data"]["source"] == "poll" and implemented["data"]["external_change_request_id"] == "FAKE-1"


def test_rejected_and_cancelled(recording_sink, fake_system, fake_itsm, draft, django_capture_on_commit_callbacks):
    sink = make_sink()
    first, second = draft(), draft(title="Second")
    with django_capture_on_commit_callbacks(execute=True):
        actions.submit(first, external_system=fake_system)
    fake_itsm.move("ext-1", "rejected")
    run_sync(start_sync(fake_system).pk)
    actions.cancel(second, reason="not needed")
    assert change_events(sink) == ["change.submitted", "change.rejected", "change.cancelled"]
    cancelled = OutboxMessage.objects.get(external_system=sink, payload__type="change.cancelled").payload
    assert cancelled["subject"]["id"] == str(second.pk) and cancelled["data"]["detail"] == "not needed"
