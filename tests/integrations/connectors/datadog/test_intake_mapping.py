"""Datadog: envelopes to v1 events, metric points to v2 series, and the site / base URL rules (pure)."""

import time
from datetime import timedelta

import pytest

from syncplane.integrations.base import MetricPoint
from syncplane.integrations.connectors.datadog.intake import (
    DatadogConnector,
    map_event,
    map_series,
    rate_limit_wait,
)
from syncplane.integrations.errors import ConfigurationError, PermanentError, RecordError
from tests.integrations.connectors.sink_events import envelope

NOW = 1_780_000_000.0


@pytest.mark.parametrize(("event_type", "alert_type"), [
    ("sync.completed", "success"), ("sync.failed", "error"), ("vulnerability.critical", "error"),
    ("change.submitted", "info"), ("change.approved", "info"), ("change.rejected", "warning"),
    ("integration.unhealthy", "error"), ("something.new", "info"),
])
def test_alert_type_follows_the_event_type(event_type, alert_type):
    assert map_event(envelope(1, event_type))["alert_type"] == alert_type


def test_an_event_carries_its_id_as_aggregation_key_and_tag_and_seconds_as_date():
    event = envelope(3, "sync.failed")
    body = map_event(event, tags=["env:prod"], host="hub-01")
    assert body["aggregation_key"] == event["id"]
    assert f"syncplane_event_id:{event['id']}" in body["tags"]
    assert {"event_type:sync.failed", "integration:ServiceNow_CMDB", "env:prod"} <= set(body["tags"])
    assert body["title"] == "sync.failed: ServiceNow CMDB"
    assert body["host"] == "hub-01"
    assert isinstance(body["date_happened"], int) and abs(body["date_happened"] - time.time()) < 5  # not ms
    assert "records_read: 253" in body["text"] and event["correlation_id"] in body["text"]


def test_text_is_cut_to_4000_characters():
    body = map_event(envelope(1, data={"detail": "x" * 10_000}))
    assert len(body["text"]) == 4000 and body["text"].endswith("…")


def test_an_event_older_than_datadog_accepts_is_dated_now_with_its_time_in_the_text():
    event, now = envelope(1, age=timedelta(days=2)), time.time()
    body = map_event(event, now=now)
    assert body["date_happened"] == int(now)
    assert f"happened at: {event['time']}" in body["text"]


@pytest.mark.parametrize("broken", [{}, {"id": "x"}, {"id": "x", "type": "sync.completed", "time": "yesterday"}])
def test_an_unusable_envelope_is_a_record_error(broken):
    with pytest.raises(RecordError):
        map_event(broken)


def test_points_become_one_series_per_name_kind_and_tags():
    points = [
        MetricPoint("syncplane.sync.duration_seconds", 12.5, NOW - 10, {"integration": "sn"}),
        MetricPoint("syncplane.sync.duration_seconds", 14.0, NOW - 5, {"integration": "sn"}),
        MetricPoint("syncplane.sync.records", 42, NOW - 5.7, {"integration": "sn"}, kind="count"),
        MetricPoint("syncplane.assets", 30, NOW, {"status": "active"}),
        MetricPoint("syncplane.assets", 4, NOW, {"status": "retired"}),
    ]
    series = map_series(points, tags=["env:prod"], host="hub-01", interval=300, now=NOW)
    assert [s["metric"] for s in series] == ["syncplane.sync.duration_seconds", "syncplane.sync.records",
                                            "syncplane.assets", "syncplane.assets"]
    gauge, count, active, _retired = series
    assert gauge["type"] == 3 and "interval" not in gauge
    assert gauge["points"] == [{"timestamp": int(NOW - 10), "value": 12.5}, {"timestamp": int(NOW - 5), "value": 14.0}]
    assert count["type"] == 1 and count["interval"] == 300
    assert count["points"][0]["timestamp"] == int(NOW - 5.7)  # whole seconds, never milliseconds
    assert active["tags"] == ["status:active", "env:prod"]
    assert gauge["resources"] == [{"name": "hub-01", "type": "host"}] and "host" not in gauge


def test_points_older_than_an_hour_are_dropped_and_names_cleaned():
    series = map_series([MetricPoint("old", 1, NOW - 3700), MetricPoint("sync duration-s", 2, NOW)], now=NOW)
    assert [s["metric"] for s in series] == ["sync_duration_s"]
    with pytest.raises(PermanentError, match="start with a letter"):
        map_series([MetricPoint("9lives", 1, NOW)], now=NOW)
    with pytest.raises(PermanentError, match="kind"):
        map_series([MetricPoint("a.b", 1, NOW, kind="histogram")], now=NOW)


def test_rate_limit_wait_reads_the_reset_header_then_retry_after():
    assert rate_limit_wait({"X-RateLimit-Reset": "7"}) == 7.0
    assert rate_limit_wait({"Retry-After": "3"}) == 3.0
    assert rate_limit_wait({}) is None


@pytest.mark.parametrize(("url", "hint"), [
    ("https://app.datadoghq.eu", "https://api.datadoghq.eu"),
    ("https://datadoghq.eu", "https://api.datadoghq.eu"),
    ("https://us3.datadoghq.com", "https://api.us3.datadoghq.com"),
])
def test_a_datadog_host_that_is_not_an_api_host_is_refused_naming_the_right_one(url, hint):
    with pytest.raises(ConfigurationError, match=hint):
        DatadogConnector.check_base_url(url)


def test_the_base_url_must_be_the_chosen_sites_api_host():
    DatadogConnector.check_settings("https://api.datadoghq.eu", {"site": "datadoghq.eu"})
    DatadogConnector.check_settings("https://datadog-proxy.example.com", {"site": "datadoghq.eu"})  # a proxy
    with pytest.raises(ConfigurationError, match="Use https://api.datadoghq.eu, or choose site datadoghq.com"):
        DatadogConnector.check_settings("https://api.datadoghq.com", {"site": "datadoghq.eu"})
    with pytest.raises(ConfigurationError, match="no site's API host"):
        DatadogConnector.check_settings("https://api.datadoghq.de.datadoghq.com", {"site": "datadoghq.com"})


def test_an_unknown_site_is_refused_by_the_schema():
    with pytest.raises(ConfigurationError, match="site"):
        DatadogConnector.validated_config({"site": "datadoghq.de"})
