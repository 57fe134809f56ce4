"""`syncplane bench events --records N`: the monitoring sinks (Datadog, Splunk HEC, Elastic) measured in one run,
against their simulators (in a process of their own, started by `bench`) and a fresh database.

For each sink, N events twice, with fresh ids each time:
- direct: `send_events` in batches of the connector's `max_batch_events`: what the connector and its simulator
  can carry;
- outbox: the path events take in production: `emit_events` writes the outbox rows (timed apart, as "emit"),
  then `outbox.deliver_sink_events` drains the sink's backlog batch by batch (reads, sends, records the outcomes).
After each, the simulator's `_control/received` list is compared with what was sent: lost, duplicated, and out
of order (an event received before one sent earlier; within one batch of a sink that sends it in parallel, as
Datadog's `parallel_requests` does, that is not counted).
Then a ServiceNow full sync of M records without any sink and one with the three sinks enabled (each on a
simulator of its own with other devices, so both create every asset): enabling sinks must leave the sync's
time unchanged within noise (the sync only writes one outbox row per sink; delivery happens elsewhere), and
each sink must receive that sync's `sync.completed` exactly once.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from itertools import islice

import httpx
from celery import current_app
from django.db import connection, transaction
from django.utils import timezone

from syncplane.integrations.choices import AuthType, Category, RunStatus, SystemType
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.events import DomainEvent, emit_events, envelope_for
from syncplane.integrations.models import ExternalSystem, OutboxKind, OutboxMessage, OutboxStatus
from syncplane.integrations.outbox import deliver_sink_events
from syncplane.integrations.registry import build_connector
from syncplane.integrations.secrets import to_reference
from syncplane_simulators.datadog import DEFAULT_API_KEY as DATADOG_API_KEY
from syncplane_simulators.elastic import DEFAULT_ENCODED_KEY as ELASTIC_KEY
from syncplane_simulators.splunk_hec import DEFAULT_TOKEN as SPLUNK_TOKEN

EMIT_CHUNK = 1000
RESEND_ROUNDS = 3
SINKS = (  # system_type, simulator prefix, API key, config
    (SystemType.DATADOG, "datadog", DATADOG_API_KEY, {"parallel_requests": 8}),
    (SystemType.SPLUNK_HEC, "splunk", SPLUNK_TOKEN, {"index": "itgov"}),
    (SystemType.ELASTIC, "elastic", ELASTIC_KEY, {}),
)
EVENTS_PER_SECOND = 5000
EVENTS_TARGETS = {
    **{f"{name} {path} events/s": (EVENTS_PER_SECOND, "min") for _, name, _, _ in SINKS
       for path in ("direct", "outbox")},
    "lost + duplicated": (0, "max"),
    "out of order": (0, "max"),
    "sync with / without sinks": (1.15, "max"),
}


def sync_records(events: int) -> int:
    """Records of the ServiceNow sync that is timed with and without sinks."""
    return max(500, events // 20)


class EventsBench:
    def __init__(self, stdout, records: int):
        self.stdout = stdout
        self.records = records
        self.checks = {"lost": 0, "duplicated": 0, "out of order": 0}
        self.resent: dict[str, int] = {}  # direct path: events a sink said to retry, per sink

    def say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def run(self, plain_url: str, sinks_url: str) -> dict:
        # Delivery tasks are queued nowhere: this process drains the outbox itself, and timing a sync must not
        # include a delivery run inline (production delivers in another worker).
        current_app.conf.update(broker_url="memory://", task_always_eager=False)
        n = self.records
        self.say(f"Benchmark: monitoring sinks, N = {n:,} events per sink and path, {connection.vendor}")
        load_before = os.getloadavg()  # the machine may be shared: the figures mean little without it
        without, with_sinks, systems = self.sync_with_and_without_sinks(plain_url, sinks_url)
        per_second, seconds = {}, {"sync without sinks": round(without, 3), "sync with 3 sinks": round(with_sinks, 3)}
        for system, (_, name, _, _) in zip(systems, SINKS, strict=True):
            url = f"{sinks_url}/{name}"
            took = self.direct(system, url)
            per_second[f"{name} direct events/s"], seconds[f"{name} direct"] = round(n / took), round(took, 3)
            emitted, took = self.outbox(system, systems, url)
            per_second[f"{name} outbox events/s"], seconds[f"{name} outbox"] = round(n / took), round(took, 3)
            seconds[f"{name} emit"] = round(emitted, 3)
        return {
            "records": n,
            "sync_records": sync_records(n),
            "database": connection.vendor,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}",
            "date": timezone.now().date().isoformat(),
            "load_average": {"start": round(load_before[0], 1), "end": round(os.getloadavg()[0], 1)},
            "seconds": seconds,
            "checks": dict(self.checks),
            "resent": dict(self.resent),
            "ratios": {
                **per_second,
                "lost + duplicated": self.checks["lost"] + self.checks["duplicated"],
                "out of order": self.checks["out of order"],
                "sync with / without sinks": round(with_sinks / without, 3),
            },
        }

    # --- the sync, with and without sinks -------------------------------------------------------------------

    def servicenow(self, url: str, name: str) -> ExternalSystem:
        return ExternalSystem.objects.create(
            name=name, system_type=SystemType.SERVICENOW_CMDB, category=Category.CMDB,
            base_url=f"{url}/servicenow", auth_type=AuthType.BASIC,
            credentials={"username": "syncplane.integration", "password": to_reference("demo-password")},
            config={"page_size": 1000, "rate_limit_per_second": 1000},
        )

    def sinks(self, url: str) -> list[ExternalSystem]:
        return [
            ExternalSystem.objects.create(
                name=f"bench {name}", system_type=system_type, category=Category.MONITORING,
                base_url=f"{url}/{name}", auth_type=AuthType.API_KEY, credentials={"api_key": to_reference(key)},
                config=config,
            )
            for system_type, name, key, config in SINKS
        ]

    def timed_sync(self, system: ExternalSystem, label: str) -> float:
        with build_connector(system) as connector:  # warm-up: the simulator renders its records once
            for _page in connector.fetch("full"):
                pass
        started = time.perf_counter()
        log = run_sync(start_sync(system).pk)
        seconds = time.perf_counter() - started
        if log.status != RunStatus.SUCCESS:
            raise RuntimeError(f"{label}: sync ended {log.status}: {log.error_summary}")
        self.say(f"  {label:<36} {seconds:8.2f} s  (created {log.records_created})")
        return seconds

    def sync_with_and_without_sinks(self, plain_url: str, sinks_url: str):
        m = sync_records(self.records)
        without = self.timed_sync(self.servicenow(plain_url, "bench plain"), f"sync of {m:,}, no sink")
        systems = self.sinks(sinks_url)
        cmdb = self.servicenow(sinks_url, "bench with sinks")
        with_sinks = self.timed_sync(cmdb, f"sync of {m:,}, three sinks")
        for system, (_, name, _, _) in zip(systems, SINKS, strict=True):
            self.drain(system)
            received = httpx.get(f"{sinks_url}/{name}/_control/received", params={"limit": 10}, timeout=60).json()
            completed = [event for event in received["events"]
                         if received_event(name, event) == ("sync.completed", cmdb.name)]
            if received["count"] != 1 or len(completed) != 1:
                raise RuntimeError(f"{name} received {received['count']} events, {len(completed)} sync.completed "
                                   f"of the sync: expected exactly one")
            httpx.post(f"{sinks_url}/{name}/_control/reset", timeout=60).raise_for_status()
        self.say("  each sink received the sync's sync.completed exactly once")
        return without, with_sinks, systems

    # --- N events per sink ----------------------------------------------------------------------------------

    def envelopes(self, label: str) -> Iterator[DomainEvent]:
        subject = {"type": "integration", "id": "bench", "name": label}
        for i in range(self.records):
            yield DomainEvent("sync.completed", subject, {"sequence": i, "records": {"read": 1000, "created": 3}})

    def direct(self, system: ExternalSystem, url: str) -> float:
        sent, took = [], 0.0
        with build_connector(system) as connector:
            events = self.envelopes("direct")
            for _ in range(0, self.records, connector.max_batch_events):
                batch = [envelope_for(e.type, subject=e.subject, data=e.data)
                         for e in islice(events, connector.max_batch_events)]
                took += self.send_all(connector, batch, system.system_type)
                sent += [envelope["id"] for envelope in batch]
            batch_size = connector.max_batch_events
        self.check(system, url, sent, batch_size, "direct", took)
        return took

    def send_all(self, connector, batch: list[dict], sink: str) -> float:
        """Send a batch, then at once what the sink said to retry (a dropped connection under load), a few times
        at most, as the outbox would later; the check after the run counts a resent event that had arrived as
        a duplicate. A rejected event stops the run. Returns the seconds spent sending."""
        took, pending = 0.0, batch
        for _ in range(RESEND_ROUNDS):
            started = time.perf_counter()
            results = connector.send_events(pending)
            took += time.perf_counter() - started
            if rejected := [r for r in results if r.outcome == "rejected"]:
                raise RuntimeError(f"{sink}: {len(rejected)} events rejected: {rejected[0]}")
            retried = [r for r in results if r.outcome != "delivered"]
            if not retried:
                return took
            retry = {r.event_id for r in retried}
            self.resent[sink] = self.resent.get(sink, 0) + len(retry)
            self.say(f"  {sink}: {len(retry)} events to retry ({retried[0].reason}); sent again")
            pending = [event for event in pending if event["id"] in retry]
        raise RuntimeError(f"{sink}: {len(pending)} events still not delivered after {RESEND_ROUNDS} tries")

    def outbox(self, system: ExternalSystem, systems: list[ExternalSystem], url: str) -> tuple[float, float]:
        """Only this sink enabled; N events emitted into the outbox, then its backlog drained."""
        for other in systems:
            other.enabled = other.pk == system.pk
            other.save(update_fields=["enabled"])
        started = time.perf_counter()
        events = self.envelopes("outbox")
        for _ in range(0, self.records, EMIT_CHUNK):
            with transaction.atomic():
                emit_events(list(islice(events, EMIT_CHUNK)))
        emitted = time.perf_counter() - started
        started = time.perf_counter()
        self.drain(system)
        took = time.perf_counter() - started
        messages = OutboxMessage.objects.filter(external_system=system, kind=OutboxKind.EVENT)
        sent = [payload["id"] for payload in messages.order_by("id").values_list("payload", flat=True).iterator()
                if payload["data"].get("sequence") is not None]
        with build_connector(system) as connector:
            batch_size = connector.max_batch_events
        self.check(system, url, sent[-self.records:], batch_size, "outbox", took, emitted)
        return emitted, took

    def drain(self, system: ExternalSystem) -> None:
        pending = OutboxMessage.objects.filter(external_system=system, kind=OutboxKind.EVENT,
                                               status=OutboxStatus.PENDING)
        for _ in range(self.records):  # bounded: every call delivers at least one batch or the sink failed
            if deliver_sink_events(system.pk) is None or not pending.exists():
                break
        left = pending.count()
        failed = OutboxMessage.objects.filter(external_system=system, kind=OutboxKind.EVENT,
                                              status=OutboxStatus.FAILED).count()
        if left or failed:
            raise RuntimeError(f"{system.system_type}: {left} events still pending, {failed} dead letters")

    def check(self, system, url: str, sent: list[str], batch_size: int, path: str, took: float,
              emitted: float | None = None) -> None:
        received = httpx.get(f"{url}/_control/received", params={"limit": 0}, timeout=120).json()["ids"]
        httpx.post(f"{url}/_control/reset", timeout=60).raise_for_status()
        lost = len(set(sent) - set(received))
        duplicated = len(received) - len(set(received))
        order = out_of_order(sent, received, batch_size)
        self.checks["lost"] += lost
        self.checks["duplicated"] += duplicated
        self.checks["out of order"] += order
        emit = f", emit {emitted:.2f} s" if emitted is not None else ""
        self.say(f"  {system.system_type + ' ' + path:<36} {took:8.2f} s  ({len(sent) / took:,.0f} events/s{emit}; "
                 f"received {len(received):,}, lost {lost}, duplicated {duplicated}, out of order {order}; "
                 f"load average {os.getloadavg()[0]:.1f})")


def out_of_order(sent: list[str], received: list[str], batch_size: int) -> int:
    """Received events that arrived after one sent a whole batch later (order within a batch is free)."""
    position = {event_id: index for index, event_id in enumerate(sent)}
    late, furthest = 0, -1
    for event_id in received:
        index = position.get(event_id)
        if index is None:
            continue
        if index // batch_size < furthest // batch_size:
            late += 1
        furthest = max(furthest, index)
    return late


def received_event(sink: str, stored: dict) -> tuple[str, str]:
    """(event type, subject name) of what a sink simulator kept, in that sink's shape."""
    if sink == "datadog":
        event_type, _, name = stored["title"].partition(": ")
        return event_type, name
    if sink == "splunk":
        return stored["event"]["type"], stored["event"]["subject"]["name"]
    return stored["event"]["action"], stored["syncplane"]["subject"]["name"]
