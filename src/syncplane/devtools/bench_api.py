"""`syncplane bench api --records N`: the REST API under load, served by gunicorn as in production.

The bench database is filled straight with COPY (N generated assets, each with one source, and a history of sync
logs whose last one has thousands of record outcomes): a sync of a million records would measure the engine, not
the API. Gunicorn then serves it (`gunicorn syncplane.wsgi`, the workers and threads docs/deployment.md gives for
this machine) and CLIENTS asyncio clients (httpx, loopback) request the asset list (plain, filtered, searched),
asset details and the sync log list and details, signed in with a viewer's token. Each client waits THINK seconds
between its requests (a person or a script reading what it got): the p95 target is for that load. A second phase
sends the same requests without waiting, for the throughput of the saturated server. The queries of each request
are counted in this process too, through Django's test client, at N rows and on a page of 5, so that a count that
grows with the rows shows.
"""

import asyncio
import importlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta

import httpx
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from syncplane.core import roles
from syncplane.devtools.management.commands.bench import _free_port
from syncplane.integrations.choices import AuthType, RecordAction, RecordStatus, RunStatus, SystemType
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog, SyncRecordOutcome
from syncplane.inventory.models import Asset, AssetSource

CLIENTS = 20
THINK = 1.0  # seconds a client waits between its requests: 20 clients offer up to 20 requests a second
REQUESTS_PER_CLIENT = 40
SATURATED_REQUESTS_PER_CLIENT = 15  # the second phase: the same clients without waiting, for the throughput
P95_LIMIT_MS = 100
API_TARGETS = {"p95 ms (all requests)": (P95_LIMIT_MS, "max"), "errors": (0, "max"),
               "queries that grow with rows": (0, "max")}
SYNC_LOGS = 300
OUTCOMES = 5000
TYPES = ("laptop", "desktop", "server", "virtual_machine", "mobile", "tablet")
STATUSES = ("active", "active", "active", "in_stock", "in_maintenance", "retired")
COMPLIANCE = ("compliant", "noncompliant", "unknown")
DEPARTMENTS = ("Engineering", "Finance", "Sales", "Operations", "Support", "Legal", "People")


def gunicorn_layout(cores: int) -> tuple[int, int]:
    """(workers, threads) for `cores` CPU cores, as docs/deployment.md recommends: a process per core plus one,
    four threads each (requests wait on PostgreSQL part of the time; the GIL allows one Python thread at once)."""
    return cores + 1, 4


def asset_row(number: int, now) -> tuple[list, str]:
    """One generated asset's columns (ASSET_FIELDS order) and its serial."""
    serial = f"BN{number:08d}X"
    host = f"host-{number:07d}"
    values = {
        "id": uuid.UUID(int=number + 1), "name": f"{DEPARTMENTS[number % 7].lower()}-{host}",
        # Type, status and compliance vary independently: every filter combination has its share of the rows.
        "asset_type": TYPES[number % len(TYPES)], "status": STATUSES[number // 6 % len(STATUSES)],
        "serial_number": serial, "asset_tag": f"AT-{number:07d}", "manufacturer": ("Dell", "Lenovo", "Apple", "HP")[
            number % 4], "model": f"Model {number % 50}", "hostname": host, "fqdn": f"{host}.corp.example",
        "ip_address": f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}",
        "mac_address": ":".join(f"{(number >> shift) & 255:02x}" for shift in (40, 32, 24, 16, 8, 0)),
        "operating_system": ("Windows", "macOS", "Ubuntu")[number % 3], "os_version": f"{10 + number % 5}.0",
        "owner_email": f"user{number % 50_000}@corp.example", "location": f"Site {number % 40}",
        "department": DEPARTMENTS[number % 7], "compliance_state": COMPLIANCE[number // 36 % 3],
        "compliance_score": number % 101, "last_seen_at": now, "created_at": now, "updated_at": now,
        "attribute_sources": "{}", "compliance_reasons": "[]", "is_orphaned": False,
    }
    return [values.get(name, DEFAULTS.get(name)) for name in ASSET_FIELDS], serial


ASSET_FIELDS = [f.column for f in Asset._meta.concrete_fields]
DEFAULTS = {f.column: (json.dumps(f.get_default()) if f.get_internal_type() == "JSONField" else f.get_default())
            for f in Asset._meta.concrete_fields if not f.null}
SOURCE_FIELDS = ["id", "asset_id", "external_system_id", "external_id", "attributes", "raw_payload", "fingerprint",
                 "serial_key", "mac_key", "host_key", "device_key", "first_seen_at", "last_seen_at", "updated_at"]


class ApiBench:
    def __init__(self, stdout, records: int, clients: int = CLIENTS):
        self.stdout = stdout
        self.records = records
        self.clients = clients

    def say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def run(self) -> dict:
        if connection.vendor != "postgresql":
            raise CommandError("bench api needs PostgreSQL (DATABASE_URL=postgres://...): gunicorn's processes and "
                               "this one share the database")
        n = self.records
        self.say(f"Benchmark: the API under load, {n:,} assets, PostgreSQL (load average {os.getloadavg()[0]:.1f})")
        system = ExternalSystem.objects.create(
            name="bench fill", system_type=SystemType.SERVICENOW_CMDB, category="cmdb",
            base_url="https://bench.invalid", auth_type=AuthType.BASIC,
            credentials={"username": "bench", "password": "env:SYNCPLANE_SECRET_UNUSED"},
        )
        started = time.perf_counter()
        serials = self.fill_inventory(system, n)
        logs = self.fill_sync_logs(system)
        self.say(f"  filled {n:,} assets and sources, {SYNC_LOGS} sync logs in {time.perf_counter() - started:.1f} s")
        token = self.viewer_token()
        rng = random.Random(7)
        sample_ids = [str(uuid.UUID(int=rng.randrange(n) + 1)) for _ in range(200)]
        urls = self.urls(serials, sample_ids, logs, rng)
        queries = self.count_queries(token, urls)
        cores = os.cpu_count() or 1
        workers, threads = gunicorn_layout(cores)
        with gunicorn(workers, threads) as base_url:
            self.say(f"  {self.clients} clients, {THINK} s between requests (gunicorn {workers} workers x {threads} "
                     f"threads):")
            latencies, errors, seconds = asyncio.run(self.load(base_url, token, urls, THINK, REQUESTS_PER_CLIENT))
            saturated = asyncio.run(self.load(base_url, token, urls, 0, SATURATED_REQUESTS_PER_CLIENT))
        everything = sorted(ms for values in latencies.values() for ms in values)
        results = {
            "records": n, "database": connection.vendor,
            "machine": f"{platform.machine()}, {cores} cores, Python {platform.python_version()}",
            "date": timezone.now().date().isoformat(), "load_average": round(os.getloadavg()[0], 1),
            "gunicorn": {"workers": workers, "threads": threads},
            "clients": self.clients, "think_seconds": THINK, "requests": len(everything),
            "requests_per_second": round(len(everything) / seconds, 1),
            "endpoints": {}, "queries": queries,
        }
        for name, values in latencies.items():
            values.sort()
            results["endpoints"][name] = {"requests": len(values), "p50_ms": round(statistics.median(values), 1),
                                          "p95_ms": round(percentile(values, 95), 1),
                                          "max_ms": round(values[-1], 1)}
            self.say(f"  {name:<34} p50 {statistics.median(values):7.1f} ms  p95 {percentile(values, 95):7.1f} ms  "
                     f"max {values[-1]:7.1f} ms  {queries[name]['at N']:3} queries")
        grows = [name for name, counted in queries.items() if counted["at N"] != counted["few rows"]]
        self.say(f"  {len(everything):,} requests in {seconds:.1f} s ({len(everything) / seconds:.0f}/s); errors: "
                 f"{sum(errors.values())} {dict(errors) or ''}")
        flat = sorted(ms for values in saturated[0].values() for ms in values)
        results["saturated"] = {"requests": len(flat), "requests_per_second": round(len(flat) / saturated[2], 1),
                                "p50_ms": round(statistics.median(flat), 1), "p95_ms": round(percentile(flat, 95), 1),
                                "errors": sum(saturated[1].values())}
        self.say(f"  saturated (no wait between requests): {len(flat) / saturated[2]:.0f} requests/s, p50 "
                 f"{statistics.median(flat):.1f} ms, p95 {percentile(flat, 95):.1f} ms, errors "
                 f"{sum(saturated[1].values())}")
        errors = {**errors, **{f"saturated {k}": v for k, v in saturated[1].items()}}
        results["ratios"] = {"p95 ms (all requests)": round(percentile(everything, 95), 1),
                             "errors": sum(errors.values()), "queries that grow with rows": len(grows)}
        results["errors"] = errors
        return results

    # --- the data -------------------------------------------------------------------------------------------
    def fill_inventory(self, system: ExternalSystem, n: int) -> list[str]:
        """N assets and their sources with COPY, in batches; returns a sample of serials to search for."""
        now = timezone.now()
        serials = []
        asset_sql = f"COPY {Asset._meta.db_table} ({', '.join(ASSET_FIELDS)}) FROM STDIN"
        source_sql = f"COPY {AssetSource._meta.db_table} ({', '.join(SOURCE_FIELDS)}) FROM STDIN"
        search_indexes = importlib.import_module("syncplane.inventory.migrations.0004_asset_search_trigram_indexes")
        with connection.cursor() as cursor:
            # The search indexes are built once at the end, as an upgrade builds them: much faster than updating
            # eight GIN indexes row by row during the COPY.
            for column in search_indexes.SEARCHED:
                cursor.execute(f"DROP INDEX asset_search_{column}_trgm")
            for start in range(0, n, 100_000):
                numbers = range(start, min(n, start + 100_000))
                sources = []
                with cursor.copy(asset_sql) as copy:
                    for number in numbers:
                        row, serial = asset_row(number, now)
                        copy.write_row(row)
                        sources.append((uuid.UUID(int=number + 1), serial))
                        if number % (n // 50 or 1) == 0:
                            serials.append(serial)
                with cursor.copy(source_sql) as copy:
                    for asset_id, serial in sources:
                        copy.write_row([uuid.uuid4(), asset_id, system.pk, f"sys-{asset_id.hex}",
                                        json.dumps({"serial_number": serial}), json.dumps({"serial_number": serial}),
                                        "f" * 32, serial, "", "", "", now, now, now])
        search_indexes.create_indexes(None, connection.schema_editor())
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Asset._meta.db_table}")
            cursor.execute(f"ANALYZE {AssetSource._meta.db_table}")
        return serials

    def fill_sync_logs(self, system: ExternalSystem) -> list[int]:
        """A history of finished runs; the last with OUTCOMES record outcomes (the detail shows the first 200)."""
        started = timezone.now() - timedelta(days=SYNC_LOGS)
        ids = []
        for number in range(SYNC_LOGS):
            at = started + timedelta(days=number)
            log = IntegrationSyncLog.objects.create(
                external_system=system, system_name=system.name, system_type=system.system_type,
                status=RunStatus.SUCCESS, started_at=at, finished_at=at + timedelta(minutes=5),
            )
            ids.append(log.pk)
        now = timezone.now()
        last = IntegrationSyncLog.objects.create(
            external_system=system, system_name=system.name, system_type=system.system_type,
            status=RunStatus.QUEUED,
        )
        SyncRecordOutcome.objects.bulk_create(
            (SyncRecordOutcome(sync_log=last, external_id=f"rec-{i}", action=RecordAction.UPDATE if i % 2
                               else RecordAction.NONE, status=RecordStatus.APPLIED if i % 2 else RecordStatus.FAILED,
                               changes={"status": ["active", "retired"]} if i % 2 else None,
                               reason="" if i % 2 else "serial_number too long", raw_payload=None if i % 2 else {},
                               created_at=now)
             for i in range(OUTCOMES)), batch_size=1000,
        )
        last.status, last.started_at, last.finished_at = RunStatus.PARTIAL, now, now
        last.records_failed = last.records_updated = OUTCOMES // 2
        last.save()  # finished through the model, so it joins the evidence chain like any run
        return [*ids, last.pk]

    def viewer_token(self) -> str:
        user = get_user_model().objects.create_user("bench-api-viewer", password=uuid.uuid4().hex)
        roles.grant_role(user, roles.VIEWER)
        return Token.objects.create(user=user).key

    def urls(self, serials: list[str], asset_ids: list[str], logs: list[int], rng: random.Random) -> dict:
        """name -> a function giving the next URL of that kind."""
        middle = Asset.objects.order_by("name", "id").values_list("name", flat=True)[self.records // 2]
        return {
            "asset list": lambda: "/api/v1/assets/",
            "asset list, filtered": lambda: "/api/v1/assets/?status=active&asset_type=" + rng.choice(TYPES),
            "asset list, filtered by compliance": lambda: "/api/v1/assets/?compliance_state=noncompliant"
                                                          "&is_orphaned=false",
            "asset list, search by serial": lambda: f"/api/v1/assets/?search={rng.choice(serials)[2:]}",
            "asset list, search by name part": lambda: f"/api/v1/assets/?search=host-{rng.randrange(10_000):04d}",
            "asset list, search by department": lambda: f"/api/v1/assets/?search={middle.split('-')[0]}",
            "asset detail": lambda: f"/api/v1/assets/{rng.choice(asset_ids)}/",
            "sync log list": lambda: "/api/v1/integration-sync-logs/",
            "sync log detail": lambda: f"/api/v1/integration-sync-logs/{rng.choice(logs)}/",
            "sync log detail, 5,000 outcomes": lambda: f"/api/v1/integration-sync-logs/{logs[-1]}/",
        }

    def count_queries(self, token: str, urls: dict) -> dict:
        """Queries of each kind of request, here through the test client: at N rows, and on an inventory and a
        history of a few rows (a second database is not needed: the same requests with `page_size`/`limit` 5)."""
        from django.test.utils import CaptureQueriesContext

        client = Client(SERVER_NAME="localhost", HTTP_AUTHORIZATION=f"Token {token}")
        counted = {}
        for name, next_url in urls.items():
            url = next_url()
            few_url = url + ("&" if "?" in url else "?") + ("page_size=5" if "/assets/" in url else "limit=5")
            if "detail" in name:
                few_url = url  # one object: its related rows are prefetched (tests/core/test_query_counts.py)
            client.get(url)  # warm the per-process caches
            with CaptureQueriesContext(connection) as at_n:
                response = client.get(url)
            if response.status_code != 200:
                raise CommandError(f"{url} answered {response.status_code}: {response.content[:300]!r}")
            with CaptureQueriesContext(connection) as few:
                client.get(few_url)
            counted[name] = {"at N": len(at_n), "few rows": len(few)}
        return counted

    async def load(self, base_url: str, token: str, urls: dict, think: float,
                   per_client: int) -> tuple[dict, dict, float]:
        latencies: dict[str, list[float]] = {name: [] for name in urls}
        errors: dict[str, int] = {}
        kinds = list(urls)
        limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=self.clients)
        async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Token {token}"}, limits=limits,
                                     timeout=30) as client:
            async def one_client(number: int) -> None:
                await asyncio.sleep(number * think / self.clients)  # spread the starts over one think time
                for request in range(per_client):
                    name = kinds[(number + request) % len(kinds)]
                    url = urls[name]()
                    begun = time.perf_counter()
                    try:
                        response = await client.get(url)
                        failure = None if response.status_code == 200 else f"HTTP {response.status_code}"
                    except httpx.HTTPError as exc:
                        failure = type(exc).__name__
                    latencies[name].append((time.perf_counter() - begun) * 1000)
                    if failure:  # counted by kind and reason, so the report says what went wrong
                        key = f"{name}: {failure}"
                        errors[key] = errors.get(key, 0) + 1
                    if think:
                        await asyncio.sleep(think)

            started = time.perf_counter()
            await asyncio.gather(*(one_client(number) for number in range(self.clients)))
            return latencies, errors, time.perf_counter() - started


def percentile(ordered: list[float], pct: int) -> float:
    return ordered[max(0, int(len(ordered) * pct / 100) - 1)]


class gunicorn:  # noqa: N801 - used as `with gunicorn(...)`, like the command
    """Gunicorn serving this (bench) database on a free loopback port, as docs/deployment.md starts it."""

    def __init__(self, workers: int, threads: int):
        self.workers, self.threads = workers, threads

    def __enter__(self) -> str:
        self.errors = tempfile.TemporaryFile()
        s = connection.settings_dict
        port = _free_port()
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "syncplane.settings", "SYNCPLANE_ALLOWED_HOSTS": "127.0.0.1",
               "SYNCPLANE_LOG_LEVEL": "warning", "SYNCPLANE_DEVTOOLS": "0", "SYNCPLANE_DEMO": "0",
               "DATABASE_URL": f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST'] or '127.0.0.1'}:"
                               f"{s['PORT'] or 5432}/{s['NAME']}"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "syncplane.wsgi", "--bind", f"127.0.0.1:{port}",
             "--workers", str(self.workers), "--threads", str(self.threads)],
            env=env, stdout=subprocess.DEVNULL, stderr=self.errors,
        )
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                httpx.get(f"{url}/api/v1/", timeout=1)
                return url
            except httpx.HTTPError:
                if self.process.poll() is not None:
                    self.errors.seek(0)
                    raise CommandError(f"gunicorn exited: {self.errors.read().decode()[-2000:]}") from None
                time.sleep(0.2)
        raise CommandError("gunicorn did not start")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.errors.close()
