"""End to end: a real ServiceNow sync through the engine, its sync.completed through the outbox to the three
sink simulators, exactly once each."""

import pytest

from syncplane.integrations.choices import AuthType, RunStatus, SystemType
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import ExternalSystem, OutboxKind, OutboxMessage, OutboxStatus
from syncplane.integrations.outbox import deliver_sink_events
from syncplane.integrations.registry import build_connector
from syncplane.integrations.secrets import to_reference
from syncplane_simulators.datadog import DEFAULT_API_KEY
from syncplane_simulators.elastic import DEFAULT_ENCODED_KEY
from syncplane_simulators.splunk_hec import DEFAULT_TOKEN

pytestmark = pytest.mark.django_db

SINKS = (
    (SystemType.DATADOG, "datadog", DEFAULT_API_KEY, {"event_types": ["sync.*"]}),
    (SystemType.SPLUNK_HEC, "splunk", DEFAULT_TOKEN, {"index": "itgov"}),
    (SystemType.ELASTIC, "elastic", DEFAULT_ENCODED_KEY, {}),
)


@pytest.fixture
def sinks(simulator):
    return {
        name: ExternalSystem.objects.create(
            name=f"{name} sink", system_type=system_type, category="monitoring", base_url=f"{simulator.url}/{name}",
            auth_type=AuthType.API_KEY, credentials={"api_key": to_reference(key)}, config=config,
        )
        for system_type, name, key, config in SINKS
    }


def kept(simulator, name: str) -> list[tuple[str, str]]:
    """(event type, subject id) of everything a sink simulator accepted, in its own shape."""
    sink = getattr(simulator, name)
    events = list(sink.received.bodies)
    if name == "datadog":
        return [(next(t.split(":", 1)[1] for t in e["tags"] if t.startswith("event_type:")),
                 e["text"].split("sync_log_id: ")[1].split("\n")[0]) for e in events]
    if name == "splunk":
        return [(e["event"]["type"], str(e["event"]["data"]["sync_log_id"])) for e in events]
    return [(e["event"]["action"], str(e["syncplane"]["data"]["sync_log_id"])) for e in events]


def test_a_sync_reaches_each_sink_exactly_once(servicenow, sinks, simulator):
    log = run_sync(start_sync(servicenow).pk)
    assert log.status == RunStatus.SUCCESS
    for name, system in sinks.items():
        assert deliver_sink_events(system.pk) == 1
        assert deliver_sink_events(system.pk) == 0  # nothing left to send: nothing sent twice
        assert kept(simulator, name) == [("sync.completed", str(log.pk))], name
        assert getattr(simulator, name).received.duplicates == 0


def test_a_batch_sent_again_after_a_lost_commit_lands_once_in_elastic(servicenow, sinks, simulator):
    run_sync(start_sync(servicenow).pk)
    elastic = sinks["elastic"]
    pending = OutboxMessage.objects.get(external_system=elastic, kind=OutboxKind.EVENT)
    with build_connector(elastic) as connector:  # a worker sent it, then died before recording the outcome
        connector.send_events([pending.payload])
    assert deliver_sink_events(elastic.pk) == 1
    pending.refresh_from_db()
    assert pending.status == OutboxStatus.DELIVERED
    assert simulator.elastic.conflicts == 1 and len(simulator.elastic.received) == 1


def test_a_busy_splunk_leaves_the_event_pending_then_delivers_it_once(servicenow, sinks, simulator):
    run_sync(start_sync(servicenow).pk)
    splunk = sinks["splunk"]
    simulator.splunk.faults.add("status", status=500, path="/services/collector/event")
    assert deliver_sink_events(splunk.pk) == 0
    message = OutboxMessage.objects.get(external_system=splunk, kind=OutboxKind.EVENT)
    assert message.status == OutboxStatus.PENDING and "500" in message.last_error
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=message.created_at)  # its retry is due
    assert deliver_sink_events(splunk.pk) == 1
    assert len(simulator.splunk.received) == 1
