"""The Elasticsearch simulator follows the api note: auth, NDJSON framing, data stream rules, item outcomes."""

import base64

import httpx
import pytest

from syncplane_simulators.elastic import DEFAULT_API_KEY, DEFAULT_ENCODED_KEY

AUTH = {"Authorization": f"ApiKey {DEFAULT_ENCODED_KEY}", "Content-Type": "application/x-ndjson"}
STREAM = "logs-syncplane.events-default"


@pytest.fixture
def es(simulator):
    with httpx.Client(base_url=f"{simulator.url}/elastic") as client:
        yield client


def bulk(es, body: bytes, target: str = STREAM, headers=None) -> httpx.Response:
    return es.post(f"/{target}/_bulk", content=body, headers=headers or AUTH)


@pytest.mark.parametrize("header", [
    f"ApiKey {base64.b64encode(DEFAULT_API_KEY.encode()).decode()}",  # the key alone: the classic mistake
    f"Bearer {DEFAULT_ENCODED_KEY}", "",
])
def test_wrong_credentials_are_401_with_a_challenge(es, header):
    answer = es.get("/", headers={"Authorization": header})
    assert answer.status_code == 401 and "ApiKey" in answer.headers["WWW-Authenticate"]
    assert answer.json()["error"]["type"] == "security_exception"


def test_cluster_info_needs_monitor_and_every_answer_names_the_product(es):
    limited = es.get("/", headers=AUTH)
    assert limited.status_code == 403 and limited.headers["X-Elastic-Product"] == "Elasticsearch"
    info = es.get("/", auth=("elastic", "changeme")).json()
    assert info["version"]["number"] == "8.15.3"


def test_creates_into_a_data_stream_answer_the_backing_index_and_409_on_a_repeat(es, simulator):
    body = b'{"create":{"_id":"e1"}}\n{"@timestamp":"2026-12-06T09:00:00Z","a":1}\n'
    first = bulk(es, body).json()
    item = first["items"][0]["create"]
    assert not first["errors"] and item["status"] == 201 and item["_index"].startswith(f".ds-{STREAM}-")
    again = bulk(es, body).json()
    assert again["errors"] and again["items"][0]["create"]["status"] == 409
    assert again["items"][0]["create"]["error"]["type"] == "version_conflict_engine_exception"
    assert simulator.elastic.received.ids == ["e1"]


def test_data_streams_take_only_creates_with_a_timestamp(es):
    body = (b'{"index":{"_id":"i1"}}\n{"@timestamp":"2026-12-06T09:00:00Z"}\n'
            b'{"create":{"_id":"i2"}}\n{"no":"timestamp"}\n')
    items = bulk(es, body).json()["items"]
    assert [i[next(iter(i))]["status"] for i in items] == [400, 400]
    assert "op_type of create" in items[0]["index"]["error"]["reason"]
    assert "@timestamp" in items[1]["create"]["error"]["reason"]


def test_framing_and_media_type_errors_refuse_the_whole_request(es):
    unterminated = bulk(es, b'{"create":{}}\n{"@timestamp":"2026-12-06T09:00:00Z"}')
    assert unterminated.status_code == 400 and "terminated by a newline" in unterminated.text
    half_compat = bulk(es, b'{"create":{}}\n{"@timestamp":"x"}\n', headers={
        **AUTH, "Content-Type": "application/vnd.elasticsearch+x-ndjson; compatible-with=8"})
    assert half_compat.status_code == 400 and "both Content-Type and Accept" in half_compat.text
    too_new = bulk(es, b'{"create":{}}\n{"@timestamp":"x"}\n', headers={
        **AUTH, "Content-Type": "application/vnd.elasticsearch+x-ndjson; compatible-with=9",
        "Accept": "application/vnd.elasticsearch+json; compatible-with=9"})
    assert too_new.status_code == 400
    assert bulk(es, b'{"create":{}}\n{"@timestamp":"x"}\n', target="Logs-Upper").status_code == 400


def test_item_faults_and_privileges(es, simulator):
    es.post("/_control/item-faults", json={"id": "slow", "status": 429})
    body = (b'{"create":{"_id":"slow"}}\n{"@timestamp":"2026-12-06T09:00:00Z"}\n'
            b'{"create":{"_id":"ok"}}\n{"@timestamp":"2026-12-06T09:00:00Z"}\n')
    items = bulk(es, body).json()["items"]
    assert [i["create"]["status"] for i in items] == [429, 201]
    forbidden = bulk(es, body, target="logs-other-default").json()["items"][0]["create"]
    assert forbidden["status"] == 403 and forbidden["error"]["type"] == "security_exception"


def test_a_body_over_max_content_length_is_413(es):
    es.post("/_control/config", json={"max_content_length": 100})
    assert bulk(es, b'{"create":{}}\n{"@timestamp":"2026-12-06T09:00:00Z","pad":"' + b"x" * 200 + b'"}\n'
                ).status_code == 413
