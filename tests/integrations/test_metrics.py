"""GET /metrics: figures read from the database at scrape time (the same in every process), parsed as
Prometheus parses them; its access rule; the same figures as MetricPoints for the sinks that take metrics."""

import pytest
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from syncplane.integrations import metrics
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.events import emit_event
from syncplane.integrations.secrets import to_reference
from syncplane.inventory.models import Asset
from tests.integrations.eventsink import RecordingSink, make_sink, recording_sink_fixture  # noqa: F401 (the fixture)

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-tests-0123456789"


def scrape(client, **headers):
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return {family.name: family for family in text_string_to_metric_families(response.content.decode())}


def samples(family, name=None, **labels):
    return [sample.value for sample in family.samples
            if (name is None or sample.name == name) and all(sample.labels.get(k) == v for k, v in labels.items())]


def test_the_figures(recording_sink, servicenow, client):
    sink = make_sink()
    run_sync(start_sync(servicenow).pk)
    servicenow.refresh_from_db()
    servicenow.credentials = {**servicenow.credentials, "password": to_reference("wrong-password")}
    servicenow.save()
    run_sync(start_sync(servicenow).pk)
    run_sync(start_sync(servicenow, dry_run=True).pk)  # left out
    families = scrape(client)
    mine = {"integration_id": str(servicenow.pk), "integration": servicenow.name,
            "system_type": servicenow.system_type}
    runs = families["syncplane_sync_runs"]
    assert runs.type == "counter"
    assert samples(runs, "syncplane_sync_runs_total", status="success", **mine) == [1]
    assert samples(runs, "syncplane_sync_runs_total", status="failed", **mine) == [1]
    records = families["syncplane_sync_records"]
    assert samples(records, "syncplane_sync_records_total", action="created", **mine) == [250]
    duration = families["syncplane_sync_duration_seconds"]
    assert duration.type == "histogram"
    assert samples(duration, "syncplane_sync_duration_seconds_count", **mine) == [2]
    assert samples(duration, "syncplane_sync_duration_seconds_bucket", le="+Inf", **mine) == [2]
    assert samples(duration, "syncplane_sync_duration_seconds_bucket", le="7200.0", **mine) == [2]
    assert samples(families["syncplane_integration_health"], health="degraded", **mine) == [1]
    assert samples(families["syncplane_integration_consecutive_failures"], **mine) == [1]
    last_success = samples(families["syncplane_integration_last_success_timestamp_seconds"], **mine)
    servicenow.refresh_from_db()
    assert last_success == [pytest.approx(servicenow.last_success_at.timestamp())]
    assert len(samples(families["syncplane_sync_last_duration_seconds"], **mine)) == 1
    # Two sync events wait for the sink; assets by status come from the inventory's registered gauge.
    assert samples(families["syncplane_outbox_backlog"], integration=sink.name, kind="event") == [2]
    assert samples(families["syncplane_outbox_dead_letters"], integration=sink.name, kind="event") == [0]
    by_status = {s.labels["status"]: s.value for s in families["syncplane_assets"].samples}
    assert sum(by_status.values()) == Asset.objects.count() > 0


def test_a_scrape_costs_the_same_few_queries_however_many_integrations(recording_sink, client,
                                                                      django_assert_max_num_queries):
    for number in range(3):
        make_sink(f"Sink {number}")
        emit_event("sync.completed", subject={"type": "integration", "id": "1", "name": "x"}, data={})
    with django_assert_max_num_queries(4):  # integrations, runs, outbox, assets
        scrape(client)
    for number in range(3, 10):
        make_sink(f"Sink {number}")
    with django_assert_max_num_queries(4):
        scrape(client)


def test_access_is_loopback_only_by_default(client):
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200


@override_settings(SYNCPLANE_METRICS_TOKEN=TOKEN, SYNCPLANE_METRICS_ALLOW_NETWORKS=["10.0.0.0/8"])
def test_access_with_a_token_or_from_an_allowed_network(client):
    refused = client.get("/metrics", REMOTE_ADDR="192.0.2.7")
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 401  # loopback is not in the list now
    assert client.get("/metrics", REMOTE_ADDR="10.9.8.7").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    wrong = client.get("/metrics", REMOTE_ADDR="10.9.8.7", HTTP_AUTHORIZATION="Bearer not-the-token")
    assert wrong.status_code == 401  # a wrong token is refused wherever it comes from
    assert TOKEN not in wrong.content.decode()


def test_the_same_figures_go_to_the_sinks_that_take_metrics(recording_sink, servicenow):
    sink = make_sink()
    make_sink("Disabled", enabled=False)
    run_sync(start_sync(servicenow).pk)
    points = {(p.name, tuple(sorted(p.tags.items()))): p for p in metrics.metric_points(now=1_800_000_000.0)}
    key = (("integration", servicenow.name), ("integration_id", str(servicenow.pk)), ("status", "success"),
           ("system_type", servicenow.system_type))
    assert points[("syncplane.sync.runs", key)].value == 1
    assert any(name == "syncplane.sync.duration_seconds.count" for name, _ in points)
    assert {p.timestamp for p in points.values()} == {1_800_000_000.0}
    assert metrics.send_metrics_to_sinks() == 1  # the enabled sink only (tasks run eagerly in the tests)
    [sent] = RecordingSink.metrics
    assert {p.name for p in sent} >= {"syncplane.sync.runs", "syncplane.outbox.backlog", "syncplane.assets"}
    assert metrics.metric_sinks() == [sink.pk]


def test_the_grafana_dashboard_plots_metrics_that_exist():
    import json
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).parents[2] / "docs/grafana/syncplane-dashboard.json").read_text())
    exposed = {metrics.prometheus_name(family.name) for family in metrics.figures()}
    used = {re.sub(r"_(total|bucket)$", "", name) for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"syncplane_[a-z_]+", target["expr"])}
    assert used and used <= exposed
