"""The Splunk HEC simulator follows the api note: Splunk auth, concatenated events, codes, acknowledgement."""

import httpx
import pytest

from syncplane_simulators.splunk_hec import ACK_TOKEN, DEFAULT_TOKEN

AUTH = {"Authorization": f"Splunk {DEFAULT_TOKEN}"}
CHANNEL = "0f8e2d4c-6b1a-4e3f-9d2c-7a5b3c1e9f00"


@pytest.fixture
def hec(simulator):
    with httpx.Client(base_url=f"{simulator.url}/splunk") as client:
        yield client


def code(answer: httpx.Response) -> tuple[int, int]:
    return answer.status_code, answer.json()["code"]


def test_health_needs_no_token(hec):
    assert code(hec.get("/services/collector/health")) == (200, 17)


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, (401, 2)),
    ({"Authorization": f"Bearer {DEFAULT_TOKEN}"}, (401, 3)),
    ({"Authorization": "Splunk 00000000-0000-0000-0000-000000000000"}, (403, 4)),
])
def test_token_errors(hec, headers, expected):
    assert code(hec.post("/services/collector/event", content=b'{"event": "x"}', headers=headers)) == expected


def test_events_one_after_another_are_indexed_and_a_json_array_is_not(hec, simulator):
    body = b'{"event": {"id": "a"}, "time": 1741943564.118}{"event": "b", "fields": {"event_id": "b"}}\n' \
           b'{"event": {"id": "c"},\n "index": "itgov"}'
    assert code(hec.post("/services/collector/event", content=body, headers=AUTH)) == (200, 0)
    assert simulator.splunk.received.ids == ["a", "b", "c"]
    array = hec.post("/services/collector/event", content=b'[{"event": "x"}]', headers=AUTH)
    assert code(array) == (400, 6) and array.json()["invalid-event-number"] == 0


@pytest.mark.parametrize(("body", "expected"), [
    (b"", (400, 5)),
    (b'{"time": 1}', (400, 12)),
    (b'{"event": ""}', (400, 13)),
    (b'{"event": "x", "fields": {"nested": {"a": "b"}}}', (400, 15)),
    (b'{"event": "x", "time": "1741943564"}', (400, 6)),
    (b'{"event": "x", "index": "security"}', (400, 7)),
])
def test_envelope_errors_index_nothing(hec, simulator, body, expected):
    good = b'{"event": "first"}\n'
    assert code(hec.post("/services/collector/event", content=good + body if body else body, headers=AUTH)) == expected
    assert len(simulator.splunk.received) == 0  # the whole request, or nothing


def test_indexer_acknowledgement_needs_a_guid_channel_and_answers_acks(hec, simulator):
    ack = {"Authorization": f"Splunk {ACK_TOKEN}"}
    assert code(hec.post("/services/collector/event", content=b'{"event": "x"}', headers=ack)) == (400, 10)
    bad = {**ack, "X-Splunk-Request-Channel": "not-a-guid"}
    assert code(hec.post("/services/collector/event", content=b'{"event": "x"}', headers=bad)) == (400, 11)
    sent = hec.post("/services/collector/event", content=b'{"event": "x"}',
                    headers={**ack, "X-Splunk-Request-Channel": CHANNEL})
    assert sent.json() == {"text": "Success", "code": 0, "ackId": 0}
    answer = hec.post("/services/collector/ack", params={"channel": CHANNEL}, json={"acks": [0, 5]}, headers=ack)
    assert answer.json() == {"acks": {"0": True, "5": False}}
    again = hec.post("/services/collector/ack", params={"channel": CHANNEL}, json={"acks": [0]}, headers=ack)
    assert again.json() == {"acks": {"0": False}}  # forgotten once it said true
    no_ack = hec.post("/services/collector/ack", params={"channel": CHANNEL}, json={"acks": [0]}, headers=AUTH)
    assert code(no_ack) == (400, 14)


def test_a_busy_server_answers_code_9_and_queues_full_on_health(hec, simulator):
    simulator.splunk.faults.add("status", status=503, path="/services/collector/event")
    assert code(hec.post("/services/collector/event", content=b'{"event": "x"}', headers=AUTH)) == (503, 9)
    simulator.splunk.faults.add("status", status=503, path="/services/collector/health")
    assert code(hec.get("/services/collector/health")) == (503, 18)
