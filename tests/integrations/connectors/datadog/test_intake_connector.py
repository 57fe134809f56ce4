"""The Datadog connector against its simulator over real HTTP: validate, events, series, 429, 403, 413."""

import time

import httpx
import pytest

from syncplane.integrations.base import MetricPoint
from syncplane.integrations.connectors.datadog.intake import DatadogConnector
from syncplane.integrations.errors import AuthenticationError, PermanentError
from syncplane_simulators.datadog import DEFAULT_API_KEY, FIRST_EVENT_ID
from tests.integrations.connectors.sink_events import context, envelope


@pytest.fixture
def datadog(simulator):
    def make(api_key=DEFAULT_API_KEY, **config):
        connector = DatadogConnector(context(f"{simulator.url}/datadog", {"api_key": api_key}, config))
        waits = connector.waits = []
        connector.sleep = waits.append
        return connector

    made = []
    yield lambda **kw: made.append(make(**kw)) or made[-1]
    for connector in made:
        connector.close()


def test_connection_test_validates_the_key_and_sends_no_application_key(datadog, simulator):
    result = datadog().test_connection()
    assert result.ok and "US1" in result.message and result.details["site"] == "datadoghq.com"
    assert simulator.datadog.application_key_seen == 0
    with pytest.raises(AuthenticationError, match="403.*Forbidden.*another Datadog site") as raised:
        datadog(api_key="a-key-of-the-eu-site").test_connection()
    assert "a-key-of-the-eu-site" not in str(raised.value)


def test_events_are_delivered_once_each_with_64_bit_ids_kept_as_strings(datadog, simulator):
    events = [envelope(i, "sync.completed" if i % 2 else "sync.failed") for i in range(10)]
    results = datadog(parallel_requests=4).send_events(events)
    assert [r.event_id for r in results] == [e["id"] for e in events]
    assert {r.outcome for r in results} == {"delivered"}
    remote = sorted(int(r.remote_id) for r in results)
    assert remote == list(range(FIRST_EVENT_ID, FIRST_EVENT_ID + 10))  # exact: a float would round these
    assert all(int(r.remote_id) > 2**53 for r in results)
    received = httpx.get(f"{simulator.url}/datadog/_control/received").json()
    assert sorted(received["ids"]) == sorted(e["id"] for e in events) and received["duplicates"] == 0


def test_one_request_at_a_time_keeps_the_order(datadog, simulator):
    events = [envelope(i) for i in range(6)]
    datadog(parallel_requests=1).send_events(events)
    assert simulator.datadog.received.ids == [e["id"] for e in events]


def test_a_429_waits_the_rate_limit_reset_then_delivers_once(datadog, simulator):
    simulator.datadog.faults.add("status", status=429, retry_after=2, path="/api/v1/events")
    connector = datadog()
    [result] = connector.send_events([envelope(1)])
    assert result.outcome == "delivered"
    assert connector.waits == [2.0]  # X-RateLimit-Reset, the header Datadog sends (no Retry-After)
    assert simulator.datadog.received.ids == [envelope(1)["id"]]


def test_a_long_rate_limit_hands_the_event_back_with_the_wait(datadog, simulator):
    simulator.datadog.faults.add("status", status=429, retry_after=120, path="/api/v1/events")
    connector = datadog()
    [result] = connector.send_events([envelope(1)])
    assert (result.outcome, result.retry_after) == ("retry", 120.0)
    assert "429" in result.reason and connector.waits == []
    assert len(simulator.datadog.received) == 0
    assert connector.send_events([envelope(1)])[0].outcome == "delivered"  # the later retry


def test_a_busy_intake_is_retried_within_the_request(datadog, simulator):
    simulator.datadog.faults.add("status", status=503, path="/api/v1/events")
    [result] = datadog().send_events([envelope(1)])
    assert result.outcome == "delivered" and len(simulator.datadog.received) == 1


def test_a_revoked_key_is_an_authentication_error(datadog):
    with pytest.raises(AuthenticationError):
        datadog(api_key="revoked").send_events([envelope(1), envelope(2)])


def test_an_unusable_envelope_is_rejected_alone(datadog, simulator):
    results = datadog().send_events([{"id": "broken"}, envelope(2)])
    assert [r.outcome for r in results] == ["rejected", "delivered"]
    assert "no id or type" in results[0].reason


def test_metrics_reach_the_v2_series_api(datadog, simulator):
    now = time.time()
    datadog(tags=["env:test"], host="hub-01").send_metrics([
        MetricPoint("syncplane.sync.duration_seconds", 12.5, now, {"integration": "sn"}),
        MetricPoint("syncplane.sync.records", 42, now, {"integration": "sn"}, kind="count"),
    ])
    series = httpx.get(f"{simulator.url}/datadog/_control/series").json()["series"]
    assert [(s["metric"], s["type"]) for s in series] == [("syncplane.sync.duration_seconds", 3),
                                                           ("syncplane.sync.records", 1)]
    assert simulator.datadog.points_accepted == 2 and simulator.datadog.points_dropped == 0


def test_a_413_splits_the_series_and_never_resends_the_same_body(datadog, simulator):
    simulator.datadog.faults.add("status", status=413, path="/api/v2/series")
    now = time.time()
    datadog().send_metrics([MetricPoint(f"syncplane.m{i}", i, now) for i in range(4)])
    assert simulator.datadog.stats["requests"] == 3  # the 413, then two halves
    assert simulator.datadog.points_accepted == 4
    simulator.datadog.faults.add("status", status=413, path="/api/v2/series")
    with pytest.raises(PermanentError, match="larger than Datadog accepts"):
        datadog().send_metrics([MetricPoint("syncplane.one", 1, now)])


def test_large_metric_payloads_are_split_below_the_intake_limit(datadog, simulator):
    now = time.time()
    points = [MetricPoint("syncplane.assets", i, now, {"status": f"s{i}", "pad": "p" * 150}) for i in range(3000)]
    datadog().send_metrics(points)
    assert simulator.datadog.points_accepted == 3000
    assert simulator.datadog.stats["requests"] >= 2  # 3000 series do not fit in 512,000 bytes
