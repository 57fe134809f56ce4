"""Elastic: an envelope as a data-stream document, and the API key forms (pure)."""

import base64

import pytest

from syncplane.integrations.connectors.elastic.data_stream import ElasticConnector, encoded_api_key, map_document
from syncplane.integrations.errors import ConfigurationError, RecordError
from tests.integrations.connectors.sink_events import envelope


def test_an_envelope_becomes_an_ecs_shaped_document():
    event = envelope(2, "vulnerability.critical")
    event["time"] = "2026-12-06T09:12:44.118+00:00"
    document = map_document(event)
    assert document["@timestamp"] == "2026-12-06T09:12:44.118Z"
    assert document["event"] == {"id": event["id"], "kind": "alert", "action": "vulnerability.critical",
                                 "dataset": "syncplane.events"}
    assert document["message"] == "vulnerability.critical: ServiceNow CMDB"
    assert document["syncplane"]["data"] == event["data"]
    assert map_document(envelope(1, "sync.completed"))["event"]["kind"] == "event"


def test_an_unusable_envelope_is_a_record_error():
    with pytest.raises(RecordError):
        map_document({"id": "x", "type": "sync.completed", "time": "not a date"})


def test_the_api_key_is_the_encoded_form_or_id_colon_key():
    encoded = base64.b64encode(b"key-id:key-secret").decode()
    assert encoded_api_key(encoded) == encoded
    assert encoded_api_key("key-id:key-secret") == encoded
    for wrong in ("key-secret", base64.b64encode(b"key-secret").decode()):
        with pytest.raises(ConfigurationError, match="encoded") as raised:
            ElasticConnector.check_credential("api_key", "api_key", wrong)
        assert wrong not in str(raised.value)


@pytest.mark.parametrize("name", ["Logs-Upper", "logs events", "-logs", "logs:x", "logs/x", "_logs"])
def test_a_bad_data_stream_name_is_refused(name):
    with pytest.raises(ConfigurationError, match="data_stream"):
        ElasticConnector.validated_config({"data_stream": name})
