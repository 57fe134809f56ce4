"""The Datadog simulator follows the api note: key check, event and series validation, limits, 429 headers."""

import gzip
import time

import httpx
import pytest

from syncplane_simulators.datadog import DEFAULT_API_KEY

KEY = {"DD-API-KEY": DEFAULT_API_KEY}


@pytest.fixture
def dd(simulator):
    with httpx.Client(base_url=f"{simulator.url}/datadog") as client:
        yield client


def event(**fields):
    return {"title": "t", "text": "x", "date_happened": int(time.time()), **fields}


def test_every_request_needs_the_api_key(dd):
    assert dd.get("/api/v1/validate").status_code == 403
    answer = dd.get("/api/v1/validate", headers={"DD-API-KEY": "other-site"})
    assert (answer.status_code, answer.json()) == (403, {"errors": ["Forbidden"]})
    assert dd.get("/api/v1/validate", headers=KEY).json() == {"valid": True}


def test_an_event_answers_64_bit_ids_and_is_kept(dd, simulator):
    answer = dd.post("/api/v1/events", json=event(aggregation_key="k-1", text="y" * 5000), headers=KEY)
    assert answer.status_code == 202
    created = answer.json()["event"]
    assert created["id"] > 2**53 and created["id_str"] == str(created["id"]) and len(created["text"]) == 4000
    received = dd.get("/_control/received").json()
    assert received["ids"] == ["k-1"] and received["events"][0]["title"] == "t"


@pytest.mark.parametrize(("fields", "problem"), [
    ({"title": ""}, "title is required"),
    ({"date_happened": int(time.time() * 1000)}, "date_happened is out of range"),
    ({"date_happened": "2026-12-06"}, "integer"),
    ({"alert_type": "critical"}, "alert_type"),
    ({"aggregation_key": "k" * 101}, "aggregation_key"),
    ({"tags": "env:prod"}, "tags"),
])
def test_a_bad_event_is_a_400_with_errors(dd, fields, problem):
    answer = dd.post("/api/v1/events", json=event(**fields), headers=KEY)
    assert answer.status_code == 400 and problem in " ".join(answer.json()["errors"])


def test_series_need_integer_types_and_second_timestamps(dd, simulator):
    now = int(time.time())
    good = {"metric": "syncplane.a", "type": 3, "points": [{"timestamp": now, "value": 1.5}]}
    assert dd.post("/api/v2/series", json={"series": [good]}, headers=KEY).json() == {"errors": []}
    v1_type = dd.post("/api/v2/series", json={"series": [{**good, "type": "gauge"}]}, headers=KEY)
    assert v1_type.status_code == 400 and "integer 0-3" in v1_type.json()["errors"][0]
    millis = {**good, "points": [{"timestamp": now * 1000, "value": 1}]}
    assert dd.post("/api/v2/series", json={"series": [millis]}, headers=KEY).status_code == 202
    assert (simulator.datadog.points_accepted, simulator.datadog.points_dropped) == (1, 1)  # dropped silently


def test_compressed_series_are_read_and_oversized_bodies_are_413(dd, simulator):
    body = b'{"series":[{"metric":"a.b","type":1,"interval":60,"points":[{"timestamp":%d,"value":2}]}]}' % int(
        time.time())
    answer = dd.post("/api/v2/series", content=gzip.compress(body),
                     headers={**KEY, "Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert answer.status_code == 202 and simulator.datadog.points_accepted == 1
    too_big = dd.post("/api/v2/series", content=b" " * 512_001, headers={**KEY, "Content-Type": "application/json"})
    assert too_big.status_code == 413


def test_a_rate_limit_sends_datadogs_headers_not_retry_after(dd, simulator):
    simulator.datadog.faults.add("status", status=429, retry_after=7)
    answer = dd.post("/api/v1/events", json=event(), headers=KEY)
    assert answer.status_code == 429 and answer.headers["X-RateLimit-Reset"] == "7"
    assert answer.headers["X-RateLimit-Name"] and "Retry-After" not in answer.headers
