"""GET /api/v1/outbox/: what Syncplane sends out, dead letters visible with their reason, filters; resend for
admins only."""

import pytest

from syncplane.integrations.events import emit_event
from syncplane.integrations.models import OutboxKind, OutboxMessage, OutboxStatus
from syncplane.integrations.outbox import deliver_sink_events
from tests.integrations.eventsink import make_sink, recording_sink_fixture  # noqa: F401 (the fixture)

pytestmark = pytest.mark.django_db

URL = "/api/v1/outbox/"


@pytest.fixture
def dead_letter(recording_sink):
    sink = make_sink()
    other = make_sink("Other")
    emit_event("change.approved", subject={"type": "change", "id": "3", "name": "Patch"}, data={})
    event_id = OutboxMessage.objects.first().payload["id"]
    recording_sink.script = [{event_id: "rejected"}]
    deliver_sink_events(sink.pk)
    message = OutboxMessage.objects.get(external_system=sink)
    assert message.status == OutboxStatus.FAILED
    return message, other


def test_dead_letters_are_listed_with_their_reason(dead_letter, api_as):
    message, other = dead_letter
    viewer = api_as("viewer")
    [row] = viewer.get(URL, {"status": "dead"}).json()["results"]
    assert row["id"] == message.pk and row["dead_letter"] is True and row["status"] == "failed"
    assert row["last_error"] == "Recording sink rejected the event: sink says rejected"
    assert row["kind"] == "event" and row["integration"] == message.external_system_id
    assert row["payload"]["type"] == "change.approved" and row["attempts"] == 1
    assert viewer.get(URL, {"status": "failed"}).json()["count"] == 1
    assert viewer.get(URL, {"status": "pending", "integration": other.pk}).json()["count"] == 1
    assert viewer.get(URL, {"kind": OutboxKind.CHANGE_CREATE}).json()["count"] == 0
    assert viewer.get(URL, {"kind": "event"}).json()["count"] == 2
    assert viewer.get(URL, {"status": "lost"}).status_code == 400
    assert viewer.get(f"{URL}{message.pk}/").json()["idempotency_key"] == message.idempotency_key
    assert api_as("anonymous").get(URL).status_code == 401


def test_only_an_admin_resends_a_dead_letter(dead_letter, api_as, recording_sink):
    message, _ = dead_letter
    assert api_as("viewer").post(f"{URL}{message.pk}/resend/").status_code == 403
    assert api_as("operator").post(f"{URL}{message.pk}/resend/").status_code == 403
    admin = api_as("admin")
    response = admin.post(f"{URL}{message.pk}/resend/")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "pending" and response.json()["attempts"] == 0
    deliver_sink_events(message.external_system_id)
    message.refresh_from_db()
    assert message.status == OutboxStatus.DELIVERED and message.attempts == 1
    assert list(recording_sink.received) == [message.payload["id"]]  # the same event, the same id
    again = admin.post(f"{URL}{message.pk}/resend/")
    assert again.status_code == 409 and "only a dead letter" in again.json()["detail"]
    assert admin.post(f"{URL}{message.pk}/resend/", {"force": True}, format="json").status_code == 400
