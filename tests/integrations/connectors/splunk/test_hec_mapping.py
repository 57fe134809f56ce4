"""Splunk HEC: an envelope as one HEC event object (pure)."""

import pytest

from syncplane.integrations.connectors.splunk.hec import SplunkHecConnector, map_event
from syncplane.integrations.errors import ConfigurationError, RecordError
from tests.integrations.connectors.sink_events import envelope

CONFIG = SplunkHecConnector.validated_config({"index": "itgov", "host": "hub-01"})


def test_an_envelope_becomes_a_hec_event_with_its_id_as_an_indexed_field():
    event = envelope(4, "change.approved")
    hec = map_event(event, CONFIG)
    assert hec["event"] == event
    assert hec["fields"] == {"event_id": event["id"], "event_type": "change.approved", "correlation_id": "corr-4"}
    assert all(isinstance(value, str) for value in hec["fields"].values())  # HEC: strings, never nested
    assert (hec["index"], hec["sourcetype"], hec["source"], hec["host"]) == ("itgov", "syncplane:event",
                                                                              "syncplane", "hub-01")
    assert isinstance(hec["time"], float) and hec["time"] < 10**11  # epoch seconds, not milliseconds


def test_an_empty_index_or_host_is_left_to_the_token_and_the_server():
    hec = map_event(envelope(1), SplunkHecConnector.validated_config({}))
    assert "index" not in hec and "host" not in hec


def test_an_unusable_envelope_is_a_record_error():
    with pytest.raises(RecordError):
        map_event({"type": "sync.completed"}, CONFIG)


@pytest.mark.parametrize("config", [{"index": "Main Index"}, {"channel": "not-a-guid"}, {"ca_file": "relative.pem"},
                                    {"ack_poll_seconds": 0}, {"event_types": ["sync completed"]}])
def test_bad_config_is_refused_naming_the_field(config):
    with pytest.raises(ConfigurationError, match=next(iter(config))):
        SplunkHecConnector.validated_config(config)
