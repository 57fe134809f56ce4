"""The Elastic connector against its simulator over real HTTP: bulk creates, item outcomes, 413 splits."""

import httpx
import pytest

from syncplane.integrations.connectors.elastic.data_stream import DEFAULT_DATA_STREAM, ElasticConnector
from syncplane.integrations.errors import AuthenticationError, ConfigurationError
from syncplane_simulators.elastic import DEFAULT_API_KEY_ID, DEFAULT_ENCODED_KEY, DEFAULT_PASSWORD, DEFAULT_USER
from tests.integrations.connectors.sink_events import context, envelope


@pytest.fixture
def elastic(simulator):
    made = []

    def make(credentials=None, auth_type="api_key", **config):
        credentials = credentials or {"api_key": DEFAULT_ENCODED_KEY}
        connector = ElasticConnector(context(f"{simulator.url}/elastic", credentials, config, auth_type=auth_type))
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()


def basic():
    return {"credentials": {"username": DEFAULT_USER, "password": DEFAULT_PASSWORD}, "auth_type": "basic"}


def test_connection_test_reads_the_cluster_version(elastic):
    result = elastic(**basic()).test_connection()
    assert result.ok and result.details["version"] == "8.15.3" and result.details["product"] == "Elasticsearch"


def test_a_write_only_key_is_reachable_and_authenticated(elastic):
    result = elastic().test_connection()
    assert result.ok and result.details == {"monitor_privilege": False}


def test_a_wrong_key_is_an_authentication_error(elastic):
    with pytest.raises(AuthenticationError, match="401"):
        elastic(credentials={"api_key": f"{DEFAULT_API_KEY_ID}:wrong"}).test_connection()
    with pytest.raises(AuthenticationError, match="create_doc"):
        elastic(credentials={"api_key": f"{DEFAULT_API_KEY_ID}:wrong"}).send_events([envelope(1)])


def test_events_are_created_with_their_id_and_a_resend_is_harmless(elastic, simulator):
    events = [envelope(i) for i in range(20)]
    connector = elastic()
    first = connector.send_events(events)
    assert [(r.event_id, r.outcome, r.remote_id) for r in first] == [(e["id"], "delivered", e["id"]) for e in events]
    documents = simulator.elastic.documents(DEFAULT_DATA_STREAM)
    assert set(documents) == {e["id"] for e in events}
    assert documents[events[0]["id"]]["event"]["action"] == "sync.completed"
    again = connector.send_events(events)  # e.g. after a timeout the outbox could not tell from a failure
    assert {(r.outcome, r.reason) for r in again} == {("delivered", "already indexed")}
    received = httpx.get(f"{simulator.url}/elastic/_control/received").json()
    assert received["count"] == 20 and received["duplicates"] == 0
    assert simulator.elastic.conflicts == 20


def test_a_partial_bulk_failure_retries_one_item_and_rejects_another(elastic, simulator):
    events = [envelope(i) for i in range(5)]
    httpx.post(f"{simulator.url}/elastic/_control/item-faults", json={"faults": [
        {"id": events[1]["id"], "status": 429}, {"id": events[3]["id"], "status": 400},
    ]})
    connector = elastic()
    results = connector.send_events(events)
    assert [r.outcome for r in results] == ["delivered", "retry", "delivered", "rejected", "delivered"]
    assert "es_rejected_execution_exception" in results[1].reason
    assert results[3].reason.startswith("400 document_parsing_exception")
    [retried] = connector.send_events([events[1]])  # the outbox retries that item alone
    assert retried.outcome == "delivered"
    assert sorted(simulator.elastic.documents(DEFAULT_DATA_STREAM)) == sorted(
        e["id"] for i, e in enumerate(events) if i != 3)
    assert simulator.elastic.received.duplicates == 0


def test_a_413_halves_the_batch_until_it_fits(elastic, simulator):
    httpx.post(f"{simulator.url}/elastic/_control/config", json={"max_content_length": 2500})
    events = [envelope(i) for i in range(8)] + [envelope(99, data={"blob": "x" * 5000})]
    results = elastic().send_events(events)
    assert [r.outcome for r in results] == ["delivered"] * 8 + ["rejected"]
    assert "413" in results[-1].reason
    assert simulator.elastic.received.ids == [e["id"] for e in events[:8]]  # in order, once each


def test_a_rate_limited_cluster_is_retried_within_the_request(elastic, simulator):
    simulator.elastic.faults.add("status", status=429, retry_after=0, path="/_bulk")
    results = elastic().send_events([envelope(1), envelope(2)])
    assert {r.outcome for r in results} == {"delivered"}
    assert simulator.elastic.stats["requests"] == 2 and simulator.elastic.received.duplicates == 0


def test_a_stream_the_key_may_not_write_is_an_authentication_error(elastic, simulator):
    with pytest.raises(AuthenticationError, match="create_doc"):
        elastic(data_stream="logs-other-default").send_events([envelope(1)])


def test_a_missing_index_without_auto_create_is_a_configuration_error(elastic, simulator):
    httpx.post(f"{simulator.url}/elastic/_control/config", json={"auto_create_index": False})
    with pytest.raises(ConfigurationError, match="data_stream: syncplane-events does not exist"):
        elastic(data_stream="syncplane-events", **basic()).send_events([envelope(1)])
