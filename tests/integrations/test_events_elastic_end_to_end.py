"""End to end over real HTTP: a sync of ServiceNow (simulator) emits sync.completed, which the outbox delivers
after commit to the Elastic simulator, exactly once in effect, even when a worker dies after the send."""

from datetime import timedelta

import pytest
from django.utils import timezone

from syncplane.integrations import outbox
from syncplane.integrations.connectors.elastic.data_stream import DEFAULT_DATA_STREAM
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import ExternalSystem, OutboxMessage, OutboxStatus
from syncplane.integrations.outbox import deliver_due_outbox_messages
from syncplane.integrations.secrets import to_reference
from syncplane_simulators.elastic import DEFAULT_ENCODED_KEY

pytestmark = pytest.mark.django_db


@pytest.fixture
def elastic(simulator, db):
    return ExternalSystem.objects.create(
        name="Elastic", system_type="elastic", category="monitoring", base_url=f"{simulator.url}/elastic",
        auth_type="api_key", credentials={"api_key": to_reference(DEFAULT_ENCODED_KEY)},
        config={"event_types": ["sync.*"]},
    )


def test_a_sync_lands_in_elastic_once(elastic, servicenow, simulator, django_capture_on_commit_callbacks):
    # The run commits its log and the event together; the delivery task goes after commit (eager in tests).
    with django_capture_on_commit_callbacks(execute=True):
        log = run_sync(start_sync(servicenow).pk)
    message = OutboxMessage.objects.get(external_system=elastic)
    assert message.status == OutboxStatus.DELIVERED and message.attempts == 1
    event_id = message.payload["id"]
    assert simulator.elastic.received.ids == [event_id]
    document = simulator.elastic.documents(DEFAULT_DATA_STREAM)[event_id]
    assert document["event"]["action"] == "sync.completed"
    assert document["syncplane"]["correlation_id"] == log.correlation_id
    assert document["syncplane"]["data"]["records"]["created"] == 250
    assert deliver_due_outbox_messages() == 0  # nothing left to send


def test_a_worker_killed_after_the_send_sends_again_and_elastic_keeps_one(elastic, servicenow, simulator,
                                                                         monkeypatch):
    run_sync(start_sync(servicenow).pk)  # no commit callbacks here: the event waits in the outbox

    class WorkerKilled(BaseException):
        pass

    def killed(*args):
        raise WorkerKilled

    with monkeypatch.context() as patch:
        patch.setattr(outbox, "_record_results", killed)
        with pytest.raises(WorkerKilled):
            outbox.deliver_sink_events(elastic.pk)
    ExternalSystem.objects.filter(pk=elastic.pk).update(outbox_leased_until=timezone.now() - timedelta(seconds=1))
    assert deliver_due_outbox_messages() == 1
    message = OutboxMessage.objects.get(external_system=elastic)
    assert message.status == OutboxStatus.DELIVERED and message.attempts == 2
    assert simulator.elastic.stats["bulk_items"] == 2  # sent twice: the second create answered 409 ...
    assert simulator.elastic.received.ids == [message.payload["id"]]  # ... and Elastic holds it once
    assert list(simulator.elastic.documents(DEFAULT_DATA_STREAM)) == [message.payload["id"]]
