"""`syncplane bench parallel` at a tiny N: two real `celery worker` processes on Redis and PostgreSQL sync four
integrations with overlapping devices, and the inventory they build is the one a single worker builds.

Needs PostgreSQL (DATABASE_URL=postgres://...) and Redis (CELERY_BROKER_URL=redis://...): skipped without them,
failed instead with SYNCPLANE_REQUIRE_SERVICES=1. The timings mean nothing at this size (docs/performance.md)."""

import json
import os
import subprocess
import sys

import pytest

from syncplane.devtools.bench_parallel import PARALLEL_TARGETS
from tests.conftest import postgres_url, redis_url, require_service

RECORDS = 300


def run_bench(target: str, records: int, tmp_path, database: str, broker: str = "") -> tuple[dict, str]:
    out = tmp_path / f"{target}.json"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "syncplane.settings", "SYNCPLANE_DATA_DIR": str(tmp_path),
           "SYNCPLANE_DEVTOOLS": "1", "DATABASE_URL": database, "SYNCPLANE_LOG_FORMAT": "console"}
    if broker:
        env["CELERY_BROKER_URL"] = broker
    done = subprocess.run(
        [sys.executable, "-m", "syncplane", "bench", target, "--records", str(records), "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


@pytest.mark.services
def test_two_workers_build_the_inventory_one_worker_builds(tmp_path):
    database, broker = postgres_url(), redis_url()
    require_service("PostgreSQL", database is not None, "set DATABASE_URL=postgres://...")
    require_service("Redis", broker is not None, "set CELERY_BROKER_URL=redis://...")
    results, stdout = run_bench("parallel", RECORDS, tmp_path, database, broker)
    assert set(results["ratios"]) == set(PARALLEL_TARGETS)
    for run in ("one worker", "two workers"):
        syncs = results["syncs"][run]
        assert sorted(syncs) == ["jira A", "jira B", "servicenow A", "servicenow B"]
        assert all(sync["status"] == "success" and sync["created"] == RECORDS for sync in syncs.values()), syncs
        assert results["inventory"][run]["sources"] == 4 * RECORDS  # none lost, none twice
    # The fleets share devices between their two vendors: fewer assets than sources, the same in both runs.
    assert results["inventory"]["one worker"]["assets"] < 4 * RECORDS
    assert results["inventory"]["one worker"] == results["inventory"]["two workers"]
    assert results["ratios"]["asset groups that differ"] == 0
    assert results["ratios"]["syncs not successful"] == 0
    assert "wall two workers / one worker" in stdout


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_two_syncs_writing_the_same_device_at_once_make_one_asset():
    """What the bench relies on, step by step: while one sync's page holds a device's serial (not committed yet),
    another sync's page with that serial waits for it, then joins its asset instead of creating a second one."""
    import threading
    import time

    from django.db import connection, transaction
    from django.utils import timezone

    from syncplane.integrations.base import MappedRecord
    from syncplane.integrations.models import ExternalSystem
    from syncplane.inventory.models import Asset
    from syncplane.inventory.sink import AssetSink

    require_service("PostgreSQL", connection.vendor == "postgresql", "set DATABASE_URL=postgres://...")
    systems = [ExternalSystem.objects.create(name=f"cmdb {n}", system_type="servicenow_cmdb", category="cmdb",
                                             base_url="https://cmdb.invalid", credentials={}) for n in (1, 2)]
    first_written, release, second_done = threading.Event(), threading.Event(), threading.Event()
    errors = []

    def write(system, external_id: str, hold: bool) -> None:
        try:
            sink = AssetSink(system.pk)
            record = MappedRecord(external_id, {"name": external_id, "serial_number": " ser-0042 "})
            with transaction.atomic():
                sink.apply(sink.plan([record]), timezone.now())
                if hold:
                    first_written.set()
                    release.wait(10)
        except Exception as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            if not hold:
                second_done.set()
            connection.close()

    holder = threading.Thread(target=write, args=(systems[0], "a-1", True))
    holder.start()
    assert first_written.wait(10)
    waiter = threading.Thread(target=write, args=(systems[1], "b-1", False))
    waiter.start()
    # Until PostgreSQL shows the second page waiting for a lock (or it ends): on a slow machine a fixed pause
    # would pass before the second page had even started.
    deadline = time.monotonic() + 30
    with connection.cursor() as cursor:
        while not second_done.is_set() and time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            if cursor.fetchone()[0]:
                break
            time.sleep(0.05)
    assert not second_done.is_set(), "the second page did not wait for the first one's serial"
    assert time.monotonic() < deadline, "the second page neither waited for a lock nor ended"
    release.set()
    holder.join(10)
    waiter.join(10)
    assert not errors, errors
    assets = Asset.objects.filter(merged_into__isnull=True)
    assert assets.count() == 1 and assets.get().sources.count() == 2
