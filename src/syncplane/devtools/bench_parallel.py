"""`syncplane bench parallel --records N`: two Celery workers against one, on PostgreSQL and Redis.

Four integrations of N records each, two vendors with overlapping devices: ServiceNow and Jira Assets on one
simulator process (60% of their devices shared, serials in another case, padded or placeholders) and the same
pair on a second simulator of another seed (devices of their own). Their full syncs are queued in the order
ServiceNow A, Jira A, ServiceNow B, Jira B, so that with two workers the two syncs of one fleet reconcile the
same devices at the same time. Each run starts `celery -A syncplane worker -c 1` processes on a fresh database
of its own; the wall time is the first claim to the last finish. The inventories of both runs are compared as
sets of asset groups: each live asset is the sorted list of its sources' (integration name, external id).
"""

import hashlib
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from syncplane.integrations.choices import AuthType, RunStatus, SystemType
from syncplane.integrations.engine import start_sync
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog
from syncplane.integrations.registry import build_connector
from syncplane.integrations.secrets import to_reference
from syncplane.integrations.tasks import run_integration_sync
from syncplane.inventory.models import Asset, AssetSource

PARALLEL_TARGETS = {
    "wall two workers / one worker": (0.75, "max"),
    "asset groups that differ": (0, "max"),
    "syncs not successful": (0, "max"),
}
SN_PAGE_SIZE = 1000
JIRA_PAGE_SIZE = 500


@dataclass
class WorkerRun:
    workers: int
    wall: float = 0.0
    syncs: dict[str, dict] = field(default_factory=dict)  # integration name -> status, seconds, attempts, counts
    groups: Counter = field(default_factory=Counter)  # digest of an asset's sorted sources -> how many assets
    sources: int = 0
    assets: int = 0
    collisions: int = 0  # pages written again after a deadlock or a WriteConflict (the workers' logs)
    load_average: tuple[float, float] = (0.0, 0.0)  # before, after


def integrations(fleets: dict[str, str], prefix: str = "") -> list[ExternalSystem]:
    """ServiceNow and Jira Assets of each fleet, in the order their syncs are queued."""
    systems = []
    for label, url in fleets.items():
        systems.append(ExternalSystem.objects.create(
            name=f"{prefix}servicenow {label}", system_type=SystemType.SERVICENOW_CMDB, category="cmdb",
            base_url=f"{url}/servicenow", auth_type=AuthType.BASIC,
            credentials={"username": "syncplane.integration", "password": to_reference("demo-password")},
            config={"page_size": SN_PAGE_SIZE, "rate_limit_per_second": 1000},
        ))
        systems.append(ExternalSystem.objects.create(
            name=f"{prefix}jira {label}", system_type=SystemType.JIRA_ASSETS, category="cmdb",
            base_url=f"{url}/jira", auth_type=AuthType.BASIC,
            credentials={"username": "syncplane@acme.example", "password": to_reference("demo-jira-token")},
            config={"object_types": ["Laptop", "Desktop", "Server", "Virtual Machine", "Tablet"],
                    "page_size": JIRA_PAGE_SIZE, "assets_api_base": f"{url}/jira", "rate_limit_per_second": 1000},
        ))
    return systems


def database_url() -> str:
    """The bench database, for the worker processes."""
    s = connection.settings_dict
    return "postgres://{}:{}@{}:{}/{}".format(s["USER"], s["PASSWORD"], s["HOST"] or "127.0.0.1", s["PORT"] or 5432,
                                              s["NAME"])


class ParallelBench:
    def __init__(self, stdout, records: int, fresh_database: Callable[[], None]):
        self.stdout = stdout
        self.records = records
        self.fresh_database = fresh_database
        self.queue = f"bench-parallel-{os.getpid()}"
        self.logs_dir = Path(tempfile.mkdtemp(prefix="bench-parallel-"))

    def say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def run(self, fleets: dict[str, str]) -> dict:
        if connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
            raise CommandError("bench parallel needs PostgreSQL and Redis: set DATABASE_URL=postgres://... and "
                               "CELERY_BROKER_URL=redis://...")
        n = self.records
        self.say(f"Benchmark: parallel workers, 4 integrations x {n:,} records, PostgreSQL + Redis "
                 f"(load average {os.getloadavg()[0]:.1f}); worker logs in {self.logs_dir}")
        self.warm_up(fleets)
        one = self.run_workers(1, fleets)
        self.fresh_database()
        two = self.run_workers(2, fleets)
        differ = sum(((one.groups - two.groups) + (two.groups - one.groups)).values())
        failed = sum(1 for run in (one, two) for sync in run.syncs.values() if sync["status"] != RunStatus.SUCCESS)
        self.say(f"  inventories: one worker {one.assets:,} assets / {one.sources:,} sources, two workers "
                 f"{two.assets:,} / {two.sources:,}; asset groups that differ: {differ}")
        return {
            "records": n,
            "integrations": 4,
            "database": connection.vendor,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "date": timezone.now().date().isoformat(),
            "seconds": {"one worker": round(one.wall, 2), "two workers": round(two.wall, 2)},
            "syncs": {"one worker": one.syncs, "two workers": two.syncs},
            "load_average": {"one worker": one.load_average, "two workers": two.load_average},
            "inventory": {
                "one worker": {"assets": one.assets, "sources": one.sources},
                "two workers": {"assets": two.assets, "sources": two.sources},
            },
            "pages written again after a collision": {"one worker": one.collisions, "two workers": two.collisions},
            "ratios": {
                "wall two workers / one worker": round(two.wall / one.wall, 3),
                "asset groups that differ": differ,
                "syncs not successful": failed,
            },
        }

    def warm_up(self, fleets: dict[str, str]) -> None:
        """Every page fetched once, so that each simulator has rendered (and keeps) its records before the runs:
        both runs then measure Syncplane, not the simulators' data generation."""
        started = time.perf_counter()
        read = 0
        for system in integrations(fleets, prefix="warm-up "):
            with build_connector(system) as connector:
                read += sum(len(page.records) for page in connector.fetch("full"))
        self.say(f"  simulator warm-up (not used)   {time.perf_counter() - started:8.2f} s  (read {read:,})")

    def run_workers(self, count: int, fleets: dict[str, str]) -> WorkerRun:
        run = WorkerRun(count, load_average=(round(os.getloadavg()[0], 1), 0.0))
        systems = integrations(fleets)
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "syncplane.settings", "DATABASE_URL": database_url(),
               "CELERY_BROKER_URL": settings.CELERY_BROKER_URL, "SYNCPLANE_ALLOW_INSECURE_OUTBOUND": "1",
               "SYNCPLANE_LOG_FORMAT": "json", "SYNCPLANE_LOG_LEVEL": "info"}
        log_paths = [self.logs_dir / f"{count}-workers-{number}.log" for number in range(count)]
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "syncplane", "worker", "-c", "1", "-Q", self.queue,
                 "-n", f"bench{number}-{os.getpid()}@%h", "--without-heartbeat", "--without-mingle",
                 "--without-gossip"],
                env=env, stdout=path.open("w"), stderr=subprocess.STDOUT,
            )
            for number, path in enumerate(log_paths)
        ]
        try:
            log_ids = []
            for system in systems:
                log = start_sync(system)
                run_integration_sync.apply_async(args=[log.pk], queue=self.queue)
                log_ids.append(log.pk)
            logs = self.wait(log_ids, workers)
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)  # a warm shutdown: nothing is running any more
            for worker in workers:
                try:
                    worker.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    worker.kill()
        run.wall = (max(log.finished_at for log in logs) - min(log.started_at for log in logs)).total_seconds()
        run.load_average = (run.load_average[0], round(os.getloadavg()[0], 1))
        for log in logs:
            run.syncs[log.system_name] = {
                "status": log.status, "seconds": round((log.finished_at - log.started_at).total_seconds(), 2),
                "attempts": log.attempts, "read": log.records_read, "created": log.records_created,
                "failed": log.records_failed, "error": log.error_summary[:300],
            }
        run.collisions = sum(path.read_text().count("page collided with another sync") for path in log_paths)
        run.groups, run.assets, run.sources = inventory_groups()
        self.say(f"  {count} worker{'s' if count > 1 else ' '} {run.wall:8.2f} s wall  (load average "
                 f"{run.load_average[0]} -> {run.load_average[1]}; {run.assets:,} assets, {run.sources:,} sources, "
                 f"{run.collisions} pages written again after a collision)")
        for name, sync in run.syncs.items():
            self.say(f"    {name:<16} {sync['status']:<8} {sync['seconds']:8.2f} s  attempts {sync['attempts']}  "
                     f"read {sync['read']:,}  created {sync['created']:,}  failed {sync['failed']}")
        return run

    def wait(self, log_ids: list[int], workers: list[subprocess.Popen]) -> list[IntegrationSyncLog]:
        # Generous: about 20 ms a record on a loaded two-core machine, plus the workers' start.
        deadline = time.monotonic() + 120 + self.records * 4 * 0.02
        while time.monotonic() < deadline:
            logs = list(IntegrationSyncLog.objects.filter(pk__in=log_ids).order_by("pk"))
            if all(log.is_finished for log in logs):
                return logs
            if any(worker.poll() is not None for worker in workers):
                raise CommandError(f"a worker exited; see its log in {self.logs_dir}")
            time.sleep(0.5)
        raise CommandError(f"the syncs did not finish in time; see the worker logs in {self.logs_dir}")


def inventory_groups() -> tuple[Counter, int, int]:
    """(digest of each live asset's sorted sources -> how many assets, live assets, sources), streamed."""
    groups: Counter = Counter()
    sources = assets = 0
    sql = (f"SELECT string_agg(e.name || '/' || s.external_id, ',' ORDER BY e.name, s.external_id), "  # noqa: S608
           f"count(*) FROM {AssetSource._meta.db_table} s "
           f"JOIN {ExternalSystem._meta.db_table} e ON e.id = s.external_system_id "
           f"JOIN {Asset._meta.db_table} a ON a.id = s.asset_id AND a.merged_into_id IS NULL "
           f"GROUP BY s.asset_id")
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql)
        while rows := cursor.fetchmany(10_000):
            for members, size in rows:
                groups[hashlib.blake2b(members.encode(), digest_size=16).digest()] += 1
                sources += size
                assets += 1
    return groups, assets, sources
