"""`syncplane bench servicenow|reconcile|directory --records N`: the sync engine measured, in one run.

Every figure comes from the same process, database and simulator, so the ratios between them mean
something on any machine; the absolute times only describe this one.
"""

import json
import os
import platform
import socket
import subprocess
import sys
import time
import tracemalloc
from contextlib import contextmanager
from itertools import pairwise

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from syncplane.integrations.choices import AuthType, RunStatus, SystemType
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import ExternalSystem
from syncplane.integrations.registry import build_connector
from syncplane.integrations.secrets import to_reference
from syncplane.integrations.sinks import fingerprint
from syncplane.inventory.models import Asset, AssetSource

PAGE_SIZE = 1000
TARGETS = {  # ratio name -> (limit, "max" or "min")
    "naive / full": (20.0, "min"),
    "full / fetch floor": (4.0, "max"),
    "re-sync / full": (0.3, "max"),
    "incremental 1% / full": (0.05, "max"),
    "peak memory N / N/10": (1.3, "max"),
}
# The servicenow steps, all by default; `--steps full,resync,incremental,memory` skips the fetch floor and the
# naive path (at 1,000,000 the naive path, scaled from N/10, says nothing new and takes an hour).
STEPS = ("floor", "full", "resync", "incremental", "naive", "memory")
# The reconcile steps: the timed syncs (independent, then 60% shared) and the memory syncs under tracemalloc.
# Apart, the untimed memory step can run while the machine does other work; it reconciles into an inventory of
# its own either way (simulators with other devices).
RECONCILE_STEPS = ("overlap", "memory")
STEPS_OF = {"servicenow": STEPS, "reconcile": RECONCILE_STEPS}


class Command(BaseCommand):
    help = "Benchmark a connector through the sync engine against its simulator (see docs/performance.md)."

    def add_arguments(self, parser):
        parser.add_argument("target", choices=list(BENCHES))
        parser.add_argument("--records", type=int, default=None,
                            help="100,000 by default; parallel: per integration, 250,000; api: assets, 1,000,000")
        parser.add_argument("--json", dest="json_path", help="Also write the results to this JSON file")
        parser.add_argument("--steps", default=None,
                            help=f"the steps to run, comma-separated, all by default: servicenow ({', '.join(STEPS)}),"
                            f" reconcile ({', '.join(RECONCILE_STEPS)})")

    def handle(self, *args, target, records, json_path, steps, **options):
        if records is None:
            records = {"parallel": 250_000, "api": 1_000_000}.get(target, 100_000)
        if records < 100:
            raise CommandError("--records must be at least 100")
        known = STEPS_OF.get(target, ())
        if steps is None:
            steps = set(known)
        else:
            steps = {step.strip() for step in steps.split(",") if step.strip()}
            if not known:
                raise CommandError(f"--steps: {target} has no steps to choose from")
            if unknown := steps - set(known):
                raise CommandError(f"--steps: unknown {', '.join(sorted(unknown))}; the {target} steps are "
                                   f"{', '.join(known)}")
        os.environ["SYNCPLANE_ALLOW_INSECURE_OUTBOUND"] = "1"
        settings.SYNCPLANE_ALLOW_INSECURE_OUTBOUND = True
        test_db = _bench_database()
        try:
            results, targets = BENCHES[target](self.stdout, records, steps)
        finally:
            connection.creation.destroy_test_db(test_db, verbosity=0)
        self.stdout.write(render(results, targets))
        if json_path:
            with open(json_path, "w") as handle:
                json.dump(results, handle, indent=2)
            self.stdout.write(f"\nwrote {json_path}")


def _bench_database() -> str:
    """A fresh database of its own, so a benchmark never touches real data (created like a test database)."""
    if connection.vendor == "sqlite":
        connection.settings_dict.setdefault("TEST", {})["NAME"] = str(settings.DATA_DIR / "bench.sqlite3")
    else:  # a name of its own: a test run (test_<name>) or another benchmark may be using the server meanwhile
        connection.settings_dict.setdefault("TEST", {})["NAME"] = f"bench_{os.getpid()}"
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    return old_name


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def _simulator_process(command: list[str], port: int, ready_path: str):
    """The simulators in a process of their own (their work and memory are not the sync's), until done."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{url}{ready_path}", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise CommandError("the simulator did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def simulator(records: int, *, overlap: float = 0.6, seed: int = 1):
    port = _free_port()
    command = [sys.executable, "-m", "syncplane", "simulate", "--port", str(port), "--records", str(records),
               "--seed", str(seed), "--cache-records", str(records + records // 50), "--overlap", str(overlap)]
    with _simulator_process(command, port, "/servicenow/_control/state") as url:
        yield url


@contextmanager
def graph_simulator(users: int, domain: str):
    """The Graph simulator with `users` users and users // 4 devices (the CMDB simulators next to it empty)."""
    port = _free_port()
    graph = {"users": users, "devices": users // 4, "page_size": GRAPH_PAGE_SIZE, "domain": domain}
    code = ("from syncplane_simulators.server import serve_forever; "
            f"serve_forever(port={port}, records=0, graph={graph!r})")
    with _simulator_process([sys.executable, "-c", code], port, "/graph/_control/faults") as url:
        yield url


RECONCILE_TARGETS = {
    "overlapping / independent": (1.5, "max"),
    "peak memory N / N/10": (1.3, "max"),
}
CMDBS = (
    (SystemType.SERVICENOW_CMDB, "servicenow", AuthType.BASIC,
     {"username": "syncplane.integration", "password": "demo-password"}, {"page_size": PAGE_SIZE}),
    (SystemType.JIRA_ASSETS, "jira", AuthType.BASIC,
     {"username": "syncplane@acme.example", "password": "demo-jira-token"},
     {"object_types": ["Laptop", "Desktop", "Server", "Virtual Machine", "Tablet"], "page_size": 500}),
    (SystemType.FRESHSERVICE_CMDB, "freshservice", AuthType.API_KEY, {"api_key": "demo-freshservice-key"},
     {"page_size": 100}),
)


class ReconcileBench:
    """Three CMDBs of N records each: with 60% of the devices shared (reconciliation merges them) against
    three whose devices are all distinct (nothing to merge). Reconciliation must not dominate the syncs."""

    def __init__(self, stdout, records: int):
        self.stdout = stdout
        self.records = records
        self.count = 0

    def integrations(self, simulator_url: str) -> list[ExternalSystem]:
        systems = []
        for system_type, path, auth_type, credentials, config in CMDBS:
            self.count += 1
            extra = {"assets_api_base": f"{simulator_url}/jira"} if path == "jira" else {}
            secret = {name: to_reference(value) if name in ("password", "api_key") else value
                      for name, value in credentials.items()}
            systems.append(ExternalSystem.objects.create(
                name=f"bench {self.count}", system_type=system_type, category="cmdb",
                base_url=f"{simulator_url}/{path}", auth_type=auth_type, credentials=secret,
                config={**config, **extra, "rate_limit_per_second": 1000},
            ))
        return systems

    def three_syncs(self, simulator_url: str, label: str, *, trace_last: bool = False) -> float:
        total = 0.0
        systems = self.integrations(simulator_url)
        for system in systems:
            if trace_last and system is systems[-1]:
                tracemalloc.start()
            started = time.perf_counter()
            log = run_sync(start_sync(system).pk)
            seconds = time.perf_counter() - started
            if log.status != RunStatus.SUCCESS:
                raise CommandError(f"{label}: {system.system_type} sync ended {log.status}: {log.error_summary}")
            self.stdout.write(f"  {label + ' ' + system.system_type:<40} {seconds:8.2f} s  "
                              f"(read {log.records_read}, created {log.records_created})")
            total += seconds
        return total

    def peak(self, simulator_url: str, label: str) -> float:
        """Peak Python memory of the last of the three syncs, the one that reconciles the most."""
        try:
            self.three_syncs(simulator_url, label, trace_last=True)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return peak / 2**20

    def run(self, shared: str, apart: str, small: str, fresh: str, steps=RECONCILE_STEPS) -> dict:
        n = self.records
        self.stdout.write(f"Benchmark: reconciliation of three CMDBs, N = {n:,} each, {connection.vendor}")
        results = {
            "records": n,
            "database": connection.vendor,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "date": timezone.now().date().isoformat(),
            "ratios": {},
        }
        if "overlap" in steps:
            independent = self.three_syncs(apart, "independent")
            overlapping = self.three_syncs(shared, "60% shared")
            live = Asset.objects.filter(merged_into__isnull=True, sources__external_system__name__startswith="bench")
            merged = live.distinct().count()
            self.stdout.write(f"  assets after both runs: {merged:,} (of {6 * n:,} sources)")
            results["seconds"] = {"independent": round(independent, 3), "overlapping": round(overlapping, 3)}
            results["ratios"]["overlapping / independent"] = round(overlapping / independent, 2)
        if "memory" in steps:
            peak_small = self.peak(small, "memory N/10")
            # Memory at N and N/10 on simulators of their own, so both runs reconcile into an inventory of the
            # same shape (syncing the shared simulator again would give every asset twice the sources).
            peak_big = self.peak(fresh, "memory N")
            self.stdout.write(f"  peak memory: {peak_big:.1f} MiB at N, {peak_small:.1f} MiB at N/10")
            results["peak_memory_mib"] = {"N": round(peak_big, 1), "N/10": round(peak_small, 1)}
            results["ratios"]["peak memory N / N/10"] = round(peak_big / peak_small, 2)
        return results


class Bench:
    def __init__(self, stdout, records: int, steps=STEPS):
        self.stdout = stdout
        self.records = records
        self.steps = set(steps)
        self.count = 0

    def say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def integration(self, simulator_url: str) -> ExternalSystem:
        self.count += 1
        return ExternalSystem.objects.create(
            name=f"bench {self.count}",
            system_type=SystemType.SERVICENOW_CMDB,
            category="cmdb",
            base_url=f"{simulator_url}/servicenow",
            auth_type=AuthType.BASIC,
            credentials={"username": "syncplane.integration", "password": to_reference("demo-password")},
            config={"page_size": PAGE_SIZE, "rate_limit_per_second": 1000},
        )

    def timed_sync(self, system, label: str, **kwargs) -> tuple[float, object]:
        started = time.perf_counter()
        log = run_sync(start_sync(system, **kwargs).pk)
        seconds = time.perf_counter() - started
        if log.status != RunStatus.SUCCESS:
            raise CommandError(f"{label}: sync ended {log.status}: {log.error_summary}")
        self.say(f"  {label:<28} {seconds:8.2f} s  (read {log.records_read}, created {log.records_created}, "
                 f"updated {log.records_updated}, unchanged {log.records_unchanged})")
        return seconds, log

    def run(self, big: str, small: str) -> dict:
        n, steps = self.records, self.steps
        self.say(f"Benchmark: ServiceNow CMDB, N = {n:,}, page size {PAGE_SIZE}, {connection.vendor} "
                 f"(load average {os.getloadavg()[0]:.1f})")
        seconds, memory = {}, {}
        system = self.integration(big)
        self.fetch_floor(system, "simulator warm-up (not used)")  # the simulator renders each record once
        if "floor" in steps:
            seconds["fetch floor"] = self.fetch_floor(system)
        if "full" in steps:
            seconds["full sync"], _ = self.timed_sync(system, "full sync")
        if "resync" in steps:
            seconds["re-sync"], _ = self.timed_sync(system, "re-sync, nothing changed")
        if "incremental" in steps:
            httpx.post(f"{big}/servicenow/_control/touch", json={"count": n // 100}, timeout=60).raise_for_status()
            seconds["incremental 1%"], _ = self.timed_sync(system, "incremental after 1% changed",
                                                           mode="incremental")
        if "naive" in steps:
            seconds["naive (scaled)"] = self.naive(self.integration(big), n // 10) * 10
            self.say(f"  {'naive update_or_create (x10)':<28} {seconds['naive (scaled)']:8.2f} s")
        if "memory" in steps:
            memory["N/10"] = self.peak_memory(self.integration(small), "peak memory at N/10")
            memory["N"] = self.peak_memory(self.integration(big), "peak memory at N")
        ratios = {}
        for name, (top, bottom), digits in (
            ("naive / full", ("naive (scaled)", "full sync"), 2),
            ("full / fetch floor", ("full sync", "fetch floor"), 2),
            ("re-sync / full", ("re-sync", "full sync"), 3),
            ("incremental 1% / full", ("incremental 1%", "full sync"), 4),
        ):
            if top in seconds and bottom in seconds:
                ratios[name] = round(seconds[top] / seconds[bottom], digits)
        if memory:
            ratios["peak memory N / N/10"] = round(memory["N"] / memory["N/10"], 2)
        return {
            "records": n,
            "database": connection.vendor,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}",
            "date": timezone.now().date().isoformat(),
            "load_average": round(os.getloadavg()[0], 1),
            "seconds": {name: round(value, 3) for name, value in seconds.items()},
            "peak_memory_mib": {name: round(value, 1) for name, value in memory.items()},
            "ratios": ratios,
        }

    def fetch_floor(self, system, label: str = "fetch-only floor") -> float:
        """The same pages fetched and parsed, nothing mapped or written: what any sync must at least pay."""
        started = time.perf_counter()
        read = 0
        with build_connector(system) as connector:
            for page in connector.fetch("full"):
                read += len(page.records)
        seconds = time.perf_counter() - started
        self.say(f"  {label:<28} {seconds:8.2f} s  (read {read})")
        return seconds

    def naive(self, system, limit: int) -> float:
        """The obvious way: one update_or_create per record (on the first `limit` records, then scaled)."""
        started = time.perf_counter()
        done = 0
        now = timezone.now()
        with build_connector(system) as connector:
            for page in connector.fetch("full"):
                for raw in page.records:
                    record = connector.map_record(raw)
                    source = AssetSource.objects.filter(external_system=system,
                                                        external_id=record.external_id).first()
                    attributes = {k: v for k, v in record.attributes.items() if k != "last_seen_at"}
                    values = {**attributes, "updated_at": now, "created_at": now}
                    if source:
                        asset, _ = Asset.objects.update_or_create(id=source.asset_id, defaults=values)
                    else:
                        asset = Asset.objects.create(**values)
                    AssetSource.objects.update_or_create(
                        external_system=system, external_id=record.external_id,
                        defaults={"asset": asset, "attributes": record.attributes, "raw_payload": raw,
                                  "fingerprint": fingerprint(record.attributes), "first_seen_at": now,
                                  "last_seen_at": now, "updated_at": now},
                    )
                    done += 1
                    if done >= limit:
                        return time.perf_counter() - started
        return time.perf_counter() - started

    def peak_memory(self, system, label: str) -> float:
        tracemalloc.start()
        try:
            log = run_sync(start_sync(system).pk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        if log.status != RunStatus.SUCCESS:  # a peak of part of a run says nothing
            raise CommandError(f"{label}: sync ended {log.status}: {log.error_summary}")
        mib = peak / 2**20
        self.say(f"  {label:<28} {mib:8.1f} MiB (read {log.records_read})")
        return mib


GRAPH_PAGE_SIZE = 100  # Graph's default page size for directory objects
DIRECTORY_TARGETS = {
    "full per user N / N/10": (1.5, "max"),
    "peak memory N / N/10": (1.3, "max"),
    "incremental 1% / full": (0.1, "max"),
    "queries per page N / N/10": (1.0, "max"),
}


class QueryCounter:
    """Counts the queries of the database connection (executemany is one), page by page through the engine's
    progress callback; what comes after the last page (reconciliation, memberships, roles) is `after_pages`."""

    def __init__(self):
        self.count = 0
        self.marks = [0]

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)

    def page_done(self, log) -> None:
        self.marks.append(self.count)

    @property
    def per_page(self) -> list[int]:
        return [b - a for a, b in pairwise(self.marks)]

    @property
    def after_pages(self) -> int:
        return self.count - self.marks[-1]


class DirectoryBench(Bench):
    """Entra ID (Graph simulator) into the directory: users, groups with their memberships, devices; N users,
    N/4 devices, the simulator's groups (everyone in "All Staff", a third in "Engineering", ...)."""

    def integration(self, simulator_url: str, domain: str = "") -> ExternalSystem:
        from syncplane_simulators import entra_id as graph_sim

        self.count += 1
        return ExternalSystem.objects.create(
            name=f"bench {self.count}", system_type=SystemType.ENTRA_ID, category="identity",
            base_url=f"{simulator_url}/graph/v1.0", auth_type=AuthType.OAUTH2_CLIENT_CREDENTIALS,
            credentials={"client_id": graph_sim.DEFAULT_CLIENT_ID,
                         "client_secret": to_reference(graph_sim.DEFAULT_CLIENT_SECRET)},
            config={"tenant_id": graph_sim.DEFAULT_TENANT, "authority_url": f"{simulator_url}/graph/login",
                    "role_mapping": {"Syncplane Operators": "operator"}},
        )

    def counted_sync(self, system, label: str, **kwargs) -> tuple[float, object, QueryCounter]:
        counter = QueryCounter()
        started = time.perf_counter()
        with connection.execute_wrapper(counter):
            log = run_sync(start_sync(system, **kwargs).pk, progress=counter.page_done)
        seconds = time.perf_counter() - started
        if log.status != RunStatus.SUCCESS:
            raise CommandError(f"{label}: sync ended {log.status}: {log.error_summary}")
        self.say(f"  {label:<30} {seconds:8.2f} s  (read {log.records_read} in {log.pages} pages, created "
                 f"{log.records_created}, updated {log.records_updated}, unchanged {log.records_unchanged}; "
                 f"queries per page <= {max(counter.per_page)}, after the pages {counter.after_pages})")
        return seconds, log, counter

    def touch_users(self, simulator_url: str, count: int) -> None:
        """`count` users, spread over the directory, get a new display name (through the control API)."""
        with httpx.Client(base_url=f"{simulator_url}/graph/_control", timeout=60) as client:
            users = client.get("/state").raise_for_status().json()["users"]
            step = max(1, len(users) // count)
            for number, user in enumerate(users[::step][:count]):
                client.post("/users/update", json={"id": user["id"], "fields": {"displayName": f"Renamed {number}"}}) \
                    .raise_for_status()

    def run(self, big: str, small: str, memory_big: str, memory_small: str) -> dict:
        n = self.records
        self.say(f"Benchmark: Entra ID directory, N = {n:,} users ({n // 4:,} devices), page size "
                 f"{GRAPH_PAGE_SIZE}, {connection.vendor}")
        full_small, _, queries_small = self.counted_sync(self.integration(small), "full sync at N/10")
        system = self.integration(big)
        full, log, queries_big = self.counted_sync(system, "full sync at N")
        records_small = n // 10
        self.touch_users(big, n // 100)
        incremental, _, _ = self.counted_sync(system, "incremental after 1% changed", mode="incremental")
        peak_small = self.peak_memory(self.integration(memory_small), "peak memory at N/10")
        peak_big = self.peak_memory(self.integration(memory_big), "peak memory at N")
        per_page = {"N": max(queries_big.per_page), "N/10": max(queries_small.per_page)}
        return {
            "records": n,
            "database": connection.vendor,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}",
            "date": timezone.now().date().isoformat(),
            "records_read": {"N": log.records_read},
            "seconds": {
                "full sync N/10": round(full_small, 3),
                "full sync N": round(full, 3),
                "incremental 1%": round(incremental, 3),
            },
            "peak_memory_mib": {"N": round(peak_big, 1), "N/10": round(peak_small, 1)},
            "queries": {
                "per page max N": per_page["N"], "per page max N/10": per_page["N/10"],
                "after the pages N": queries_big.after_pages, "after the pages N/10": queries_small.after_pages,
            },
            "ratios": {
                "full per user N / N/10": round((full / n) / (full_small / records_small), 2),
                "peak memory N / N/10": round(peak_big / peak_small, 2),
                "incremental 1% / full": round(incremental / full, 3),
                "queries per page N / N/10": round(per_page["N"] / per_page["N/10"], 2),
            },
        }


def render(results: dict, targets: dict) -> str:
    lines = ["", f"{'ratio':<30}{'measured':>10}{'target':>12}  verdict"]
    for name, measured in results["ratios"].items():
        limit, kind = targets[name]
        ok = measured >= limit if kind == "min" else measured <= limit
        target = f"{'>=' if kind == 'min' else '<='} {limit}"
        lines.append(f"{name:<30}{measured:>10}{target:>12}  {'ok' if ok else 'MISSED'}")
    return "\n".join(lines)


# --- the benchmarks: each runs in the fresh database and returns (results, {ratio: (limit, "max" or "min")}) ----
# The larger ones live in modules of their own (devtools/bench_*.py), imported only when asked for.


def _servicenow(stdout, records, steps):
    with simulator(records) as big, simulator(records // 10) as small:
        return Bench(stdout, records, steps).run(big, small), TARGETS


def _reconcile(stdout, records, steps):
    # Different seeds: the devices of one simulator never match those of another.
    with simulator(records, overlap=0.6, seed=1) as shared, simulator(records, overlap=0.0, seed=2) as apart, \
            simulator(records // 10, overlap=0.6, seed=3) as small, simulator(records, overlap=0.6, seed=4) as fresh:
        return ReconcileBench(stdout, records).run(shared, apart, small, fresh, steps), RECONCILE_TARGETS


def _directory(stdout, records, steps):
    # Each directory its own domain: user names never meet, so every sync creates its users.
    with graph_simulator(records, "big.example") as big, \
            graph_simulator(records // 10, "small.example") as small, \
            graph_simulator(records, "memory-big.example") as memory_big, \
            graph_simulator(records // 10, "memory-small.example") as memory_small:
        return DirectoryBench(stdout, records).run(big, small, memory_big, memory_small), DIRECTORY_TARGETS


def _mdm(stdout, records, steps):  # Apple Business Manager over a CMDB inventory
    from syncplane.devtools.bench_mdm import MDM_TARGETS, run_mdm_bench

    return run_mdm_bench(stdout, records), MDM_TARGETS


def _events(stdout, records, steps):  # the monitoring sinks
    from syncplane.devtools.bench_events import EVENTS_TARGETS, EventsBench, sync_records

    # Two simulators with other devices, so the sync without sinks and the one with them both create.
    with simulator(sync_records(records), seed=1) as plain, simulator(sync_records(records), seed=2) as with_sinks:
        return EventsBench(stdout, records).run(plain, with_sinks), EVENTS_TARGETS


def _findings(stdout, records, steps):  # Trivy reports into the findings app; records: vulnerabilities
    from syncplane.devtools.bench_findings import TARGETS as FINDINGS_TARGETS
    from syncplane.devtools.bench_findings import FindingsBench

    return FindingsBench(stdout, records).run(), FINDINGS_TARGETS


def _parallel(stdout, records, steps):  # two Celery workers against one (PostgreSQL, Redis)
    from syncplane.devtools.bench_parallel import PARALLEL_TARGETS, ParallelBench

    def fresh_database():
        connection.creation.destroy_test_db(connection.settings_dict["NAME"], verbosity=0)
        _bench_database()

    # Two fleets of other seeds: ServiceNow and Jira Assets of one fleet share 60% of their devices.
    with simulator(records, seed=1) as fleet_a, simulator(records, seed=2) as fleet_b:
        return ParallelBench(stdout, records, fresh_database).run({"A": fleet_a, "B": fleet_b}), PARALLEL_TARGETS


def _api(stdout, records, steps):  # the REST API under gunicorn with N assets
    from syncplane.devtools.bench_api import API_TARGETS, ApiBench

    return ApiBench(stdout, records).run(), API_TARGETS


def _ui(stdout, records, steps):  # the web pages over an inventory of N assets
    from syncplane.devtools.bench_ui import UI_TARGETS, run_ui_bench

    with simulator(records) as filled:
        return run_ui_bench(stdout, records, filled, Bench(stdout, records).integration), UI_TARGETS


BENCHES = {
    "servicenow": _servicenow, "reconcile": _reconcile, "directory": _directory, "mdm": _mdm, "events": _events,
    "findings": _findings, "ui": _ui, "parallel": _parallel, "api": _api,
}
