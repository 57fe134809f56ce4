"""The Splunk HEC connector against its simulator over real HTTP: health, batches, codes, acknowledgement."""

import httpx
import pytest

from syncplane.integrations.connectors.splunk.hec import SplunkHecConnector
from syncplane.integrations.errors import AuthenticationError, ConfigurationError, TransientError
from syncplane_simulators.splunk_hec import ACK_TOKEN, DEFAULT_TOKEN
from tests.integrations.connectors.sink_events import context, envelope

CHANNEL = "0f8e2d4c-6b1a-4e3f-9d2c-7a5b3c1e9f00"


@pytest.fixture
def splunk(simulator):
    made = []

    def make(token=DEFAULT_TOKEN, base_url=None, **config):
        connector = SplunkHecConnector(context(base_url or f"{simulator.url}/splunk", {"api_key": token}, config))
        connector.waits = []
        connector.sleep = connector.waits.append
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()


def received(simulator) -> dict:
    return httpx.get(f"{simulator.url}/splunk/_control/received", params={"limit": 1000}).json()


def test_connection_test_checks_health_and_the_token(splunk):
    result = splunk().test_connection()
    assert result.ok and result.details["token_checked"] and "HEC is healthy" in result.message
    with pytest.raises(AuthenticationError, match="code 4.*not valid"):
        splunk(token="11111111-2222-3333-4444-555555555555").test_connection()


def test_connection_test_says_when_the_token_wants_indexer_acknowledgement(splunk):
    with pytest.raises(ConfigurationError, match="indexer_acknowledgement: .* turn indexer_acknowledgement on"):
        splunk(token=ACK_TOKEN).test_connection()


def test_a_batch_is_one_request_of_concatenated_events_in_order(splunk, simulator):
    events = [envelope(i) for i in range(25)]
    results = splunk(index="itgov", host="hub-01").send_events(events)
    assert [(r.event_id, r.outcome) for r in results] == [(e["id"], "delivered") for e in events]
    assert simulator.splunk.stats["requests"] == 1
    got = received(simulator)
    assert got["ids"] == [e["id"] for e in events] and got["duplicates"] == 0
    first = got["events"][0]
    assert (first["index"], first["sourcetype"], first["host"]) == ("itgov", "syncplane:event", "hub-01")
    assert first["fields"]["event_id"] == events[0]["id"]


def test_a_busy_server_is_retried_without_duplicates(splunk, simulator):
    simulator.splunk.faults.add("status", status=503, path="/services/collector/event")
    events = [envelope(i) for i in range(5)]
    splunk_hec = splunk()
    results = splunk_hec.send_events(events)
    assert {r.outcome for r in results} == {"delivered"}
    assert simulator.splunk.stats["requests"] == 2 and len(splunk_hec.waits) == 1  # the 503, then the 200
    got = received(simulator)
    assert got["ids"] == [e["id"] for e in events] and got["duplicates"] == 0


def test_an_internal_error_is_transient_for_the_outbox_to_retry(splunk, simulator):
    simulator.splunk.faults.add("status", status=500, path="/services/collector/event")
    with pytest.raises(TransientError):
        splunk().send_events([envelope(1)])
    assert len(simulator.splunk.received) == 0


def test_an_index_the_token_may_not_write_is_a_configuration_error_naming_it(splunk, simulator):
    with pytest.raises(ConfigurationError, match="index: index security is not allowed for this token"):
        splunk(index="security").send_events([envelope(1)])
    assert len(simulator.splunk.received) == 0


def test_a_disabled_token_is_an_authentication_error(splunk, simulator):
    httpx.post(f"{simulator.url}/splunk/_control/tokens", json={"token": DEFAULT_TOKEN, "disabled": True})
    with pytest.raises(AuthenticationError, match="code 1: Token disabled"):
        splunk().send_events([envelope(1)])


def test_indexer_acknowledgement_is_polled_on_the_channel(splunk, simulator):
    httpx.post(f"{simulator.url}/splunk/_control/ack", json={"after_polls": 2})
    connector = splunk(token=ACK_TOKEN, indexer_acknowledgement=True, channel=CHANNEL, ack_poll_seconds=0.5)
    results = connector.send_events([envelope(1), envelope(2)])
    assert {r.outcome for r in results} == {"delivered"}
    assert connector.waits == [0.5, 0.5]  # two "false" answers, then true
    assert simulator.splunk.state()["pending_acks"] == 0


def test_a_batch_never_acknowledged_is_handed_back(splunk, simulator):
    httpx.post(f"{simulator.url}/splunk/_control/ack", json={"after_polls": 1000})
    connector = splunk(token=ACK_TOKEN, indexer_acknowledgement=True, ack_poll_seconds=1, ack_timeout_seconds=3)
    results = connector.send_events([envelope(1)])
    assert results[0].outcome == "retry" and "not acknowledged" in results[0].reason
    assert len(connector.waits) == 2


def test_acknowledgement_on_a_token_without_it_is_a_configuration_error(splunk):
    with pytest.raises(ConfigurationError, match="indexer_acknowledgement"):
        splunk(indexer_acknowledgement=True).send_events([envelope(1)])


def test_a_base_url_with_the_collector_path_is_refused():
    with pytest.raises(ConfigurationError, match="stop before /services/collector"):
        SplunkHecConnector.check_base_url_path("https://splunk.example.com:8088/services/collector/event")


def test_a_missing_ca_file_is_a_clear_configuration_error(simulator):
    with pytest.raises(ConfigurationError, match="ca_file: cannot read"):
        SplunkHecConnector(context(f"{simulator.url}/splunk", {"api_key": DEFAULT_TOKEN},
                                   {"ca_file": "/nonexistent/ca.pem"}))
