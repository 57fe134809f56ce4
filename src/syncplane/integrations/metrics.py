"""Syncplane's figures for Prometheus (`/metrics`) and for the monitoring sinks that take metrics (Datadog).

Everything is read from the database when asked (a scrape, the minute's send), in a fixed number of aggregate
queries whatever the number of integrations or runs: every web process and worker answers the same, which
counters kept in process memory would not (each gunicorn worker would count only its own requests).
- Counters are honest because what they count is never deleted: finished sync logs are immutable evidence.
  Runs by status, records by action and the duration histogram are cumulative over every finished run (dry
  runs left out), so rate() and histogram_quantile() work as on any counter.
- Gauges: each integration's health, failures in a row, last success, the duration of its last run; the
  outbox's backlog and dead letters per integration and kind; what domain apps register (assets by status).

A domain app adds a gauge of its own with `register_gauge` from its AppConfig.ready (the integrations app
knows no domain model).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from celery import shared_task
from django.conf import settings
from django.db.models import Count, OuterRef, Q, Subquery, Sum
from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from syncplane.integrations.base import MetricPoint
from syncplane.integrations.choices import FINISHED_RUN_STATUSES, Capability
from syncplane.integrations.errors import IntegrationError
from syncplane.integrations.models import (
    ExternalSystem,
    IntegrationHealth,
    IntegrationSyncLog,
    OutboxMessage,
    OutboxStatus,
)
from syncplane.integrations.registry import build_connector, get_connector_class

logger = logging.getLogger("syncplane.metrics")

# Upper bounds of the sync duration histogram, in seconds: from a small incremental poll to a big full sync.
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200)
RECORD_ACTIONS = ("read", "created", "updated", "unchanged", "deleted", "failed")
INTEGRATION_LABELS = ("integration_id", "integration", "system_type")


@dataclass
class Family:
    """One metric: `name` is dotted (sync.runs); Prometheus sees syncplane_sync_runs(_total), a sink
    syncplane.sync.runs. Samples are (labels, value); a histogram's value is (cumulative buckets, sum)."""

    name: str
    help: str
    kind: str  # gauge | counter | histogram
    labels: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], object]] = field(default_factory=list)


GaugeSource = Callable[[], Iterable[tuple[tuple[str, ...], float]]]
_gauges: dict[str, tuple[str, tuple[str, ...], GaugeSource]] = {}


def register_gauge(name: str, help_text: str, labels: tuple[str, ...], source: GaugeSource) -> None:
    """A domain app's gauge: `source` returns (label values, value) rows, in one query (assets by status)."""
    _gauges[name] = (help_text, labels, source)


def figures() -> list[Family]:
    """Every figure, in three queries plus one per registered gauge."""
    systems = list(
        ExternalSystem.objects.annotate(last_duration_ms=Subquery(
            _finished_runs().filter(external_system=OuterRef("pk")).order_by("-finished_at", "-id")
            .values("duration_ms")[:1]
        )).values("id", "name", "system_type", "health", "enabled", "archived_at", "consecutive_failures",
                  "last_success_at", "last_duration_ms")
    )
    labels = {row["id"]: (str(row["id"]), row["name"], row["system_type"]) for row in systems}
    families = [*_integration_families(systems, labels), *_run_families(labels), *_outbox_families(labels)]
    for name, (help_text, gauge_labels, source) in _gauges.items():
        families.append(Family(name, help_text, "gauge", gauge_labels, [(tuple(map(str, k)), v) for k, v in source()]))
    return families


def _finished_runs():
    return IntegrationSyncLog.objects.filter(status__in=FINISHED_RUN_STATUSES, dry_run=False)


def _integration_families(systems: list[dict], labels: dict) -> list[Family]:
    live = [row for row in systems if row["archived_at"] is None]
    health = Family("integration.health", "1 for the integration's current health (healthy, degraded, failing, "
                    "disabled).", "gauge", (*INTEGRATION_LABELS, "health"))
    failures = Family("integration.consecutive_failures", "Failed runs (or sink deliveries) in a row.", "gauge",
                      INTEGRATION_LABELS)
    success = Family("integration.last_success_timestamp_seconds", "When the last run (or sink delivery) "
                     "succeeded, Unix seconds.", "gauge", INTEGRATION_LABELS)
    last = Family("sync.last_duration_seconds", "Duration of the integration's last finished run.", "gauge",
                  INTEGRATION_LABELS)
    for row in live:
        key = labels[row["id"]]
        shown = row["health"] if row["enabled"] else IntegrationHealth.DISABLED
        health.samples.append(((*key, shown), 1))
        failures.samples.append((key, row["consecutive_failures"]))
        if row["last_success_at"] is not None:
            success.samples.append((key, row["last_success_at"].timestamp()))
        if row["last_duration_ms"] is not None:
            last.samples.append((key, row["last_duration_ms"] / 1000))
    return [health, failures, success, last]


def _run_families(labels: dict) -> list[Family]:
    aggregates = {f"status_{status}": Count("id", filter=Q(status=status)) for status in FINISHED_RUN_STATUSES}
    aggregates |= {f"le_{bound}": Count("id", filter=Q(duration_ms__lte=bound * 1000)) for bound in DURATION_BUCKETS}
    aggregates |= {f"records_{action}": Sum(f"records_{action}") for action in RECORD_ACTIONS}
    aggregates |= {"timed": Count("duration_ms"), "duration_ms": Sum("duration_ms")}
    rows = _finished_runs().order_by().values("external_system_id").annotate(**aggregates)
    runs = Family("sync.runs", "Finished runs (dry runs left out), by status.", "counter",
                  (*INTEGRATION_LABELS, "status"))
    records = Family("sync.records", "Records of finished runs, by what happened to them.", "counter",
                     (*INTEGRATION_LABELS, "action"))
    duration = Family("sync.duration_seconds", "Duration of finished runs.", "histogram", INTEGRATION_LABELS)
    for row in rows:
        key = labels[row["external_system_id"]]
        for status in FINISHED_RUN_STATUSES:
            runs.samples.append(((*key, status), row[f"status_{status}"]))
        for action in RECORD_ACTIONS:
            records.samples.append(((*key, action), row[f"records_{action}"] or 0))
        buckets = [(str(float(bound)), row[f"le_{bound}"]) for bound in DURATION_BUCKETS]
        duration.samples.append((key, ([*buckets, ("+Inf", row["timed"])], (row["duration_ms"] or 0) / 1000)))
    return [runs, records, duration]


def _outbox_families(labels: dict) -> list[Family]:
    rows = (
        OutboxMessage.objects.exclude(status=OutboxStatus.DELIVERED).order_by()
        .values("external_system_id", "kind")
        .annotate(backlog=Count("id", filter=Q(status=OutboxStatus.PENDING)),
                  dead=Count("id", filter=Q(status=OutboxStatus.FAILED)))
    )
    backlog = Family("outbox.backlog", "Outbox messages waiting to be delivered, per integration and kind.",
                     "gauge", (*INTEGRATION_LABELS, "kind"))
    dead = Family("outbox.dead_letters", "Outbox messages that failed for good (GET /api/v1/outbox/?status=dead).",
                  "gauge", (*INTEGRATION_LABELS, "kind"))
    for row in rows:
        key = (*labels[row["external_system_id"]], row["kind"])
        backlog.samples.append((key, row["backlog"]))
        dead.samples.append((key, row["dead"]))
    return [backlog, dead]


# --- Prometheus -------------------------------------------------------------------------------------------


def prometheus_name(name: str) -> str:
    return "syncplane_" + name.replace(".", "_")


class DatabaseCollector:
    """Reads the figures at scrape time; registered in a registry of its own (no process-local metrics)."""

    def collect(self):
        for family in figures():
            name = prometheus_name(family.name)
            if family.kind == "histogram":
                metric = HistogramMetricFamily(name, family.help, labels=family.labels)
                for key, (buckets, total) in family.samples:
                    metric.add_metric(list(key), buckets, total)
            else:
                kind = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
                metric = kind(name, family.help, labels=family.labels)
                for key, value in family.samples:
                    metric.add_metric(list(key), value)
            yield metric


def exposition() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    return generate_latest(registry)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics: for a bearer token (SYNCPLANE_METRICS_TOKEN) or a client address in
    SYNCPLANE_METRICS_ALLOW_NETWORKS (default: loopback only). A wrong token is refused wherever it comes from."""
    refusal = access_refused(request)
    if refusal is not None:
        return refusal
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


def access_refused(request: HttpRequest) -> HttpResponse | None:
    token = settings.SYNCPLANE_METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    if given:
        scheme, _, value = given.partition(" ")
        if token and scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode()):
            return None
        return _refuse(401, "wrong metrics token")
    if _address_allowed(request.META.get("REMOTE_ADDR", "")):
        return None
    if token:
        return _refuse(401, "a bearer token is required")
    return _refuse(403, "this address may not read the metrics (SYNCPLANE_METRICS_ALLOW_NETWORKS)")


def _address_allowed(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in metrics_networks())


def metrics_networks() -> list:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in settings.SYNCPLANE_METRICS_ALLOW_NETWORKS]


def _refuse(status: int, reason: str) -> HttpResponse:
    response = HttpResponse(reason + "\n", status=status, content_type="text/plain")
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="syncplane-metrics"'
    return response


# --- the sinks (Datadog) ----------------------------------------------------------------------------------


def metric_points(now: float | None = None) -> list[MetricPoint]:
    """The same figures as MetricPoints. The totals go as gauges of their running value (a sink's
    monotonic difference turns them into rates); the histogram as its count and sum."""
    now = now or time.time()
    points = []
    for family in figures():
        name = "syncplane." + family.name
        for key, value in family.samples:
            tags = dict(zip(family.labels, key, strict=True))
            if family.kind == "histogram":
                buckets, total = value
                points.append(MetricPoint(f"{name}.count", float(buckets[-1][1]), now, tags))
                points.append(MetricPoint(f"{name}.sum", float(total), now, tags))
            else:
                points.append(MetricPoint(name, float(value), now, tags))
    return points


def metric_sinks() -> list[int]:
    types = [system_type for system_type in ExternalSystem.objects.live().filter(enabled=True)
             .values_list("system_type", flat=True).distinct() if _sends_metrics(system_type)]
    return list(ExternalSystem.objects.live().filter(enabled=True, system_type__in=types)
                .order_by("id").values_list("id", flat=True))


def _sends_metrics(system_type: str) -> bool:
    try:
        return get_connector_class(system_type).supports(Capability.SEND_METRICS)
    except KeyError:
        return False


@shared_task(name="syncplane.integrations.tasks.send_metrics_to_sinks")
def send_metrics_to_sinks() -> int:
    """The beat job (every minute): one task per sink that takes metrics, so a slow one delays no other."""
    sinks = metric_sinks()
    for system_id in sinks:
        send_metrics_to_sink.delay(system_id)
    return len(sinks)


@shared_task(name="syncplane.integrations.tasks.send_metrics_to_sink")
def send_metrics_to_sink(system_id: int) -> int:
    """This minute's figures to one sink. Not retried: the next minute sends fresher ones."""
    system = ExternalSystem.objects.get(pk=system_id)
    points = metric_points()
    try:
        with build_connector(system) as connector:
            connector.send_metrics(points)
    except IntegrationError as exc:
        logger.warning("metrics not sent", extra={"integration_id": system_id, "error": str(exc),
                                                  "error_kind": exc.kind})
        return 0
    return len(points)


__all__ = [
    "DURATION_BUCKETS",
    "DatabaseCollector",
    "Family",
    "exposition",
    "figures",
    "metric_points",
    "metric_sinks",
    "metrics_view",
    "prometheus_name",
    "register_gauge",
    "send_metrics_to_sink",
    "send_metrics_to_sinks",
]
