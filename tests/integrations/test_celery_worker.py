"""A real Celery worker process, on Redis, runs a queued sync into the (PostgreSQL) test database."""

import os
import subprocess
import sys
import time

import pytest
from django.db import connection

from syncplane.celery import app as celery_app
from syncplane.integrations.choices import RunStatus
from syncplane.integrations.engine import start_sync
from syncplane.integrations.models import IntegrationSyncLog
from syncplane.integrations.tasks import run_integration_sync
from syncplane.inventory.models import AssetSource
from tests.conftest import redis_url, require_service


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_a_queued_sync(servicenow):
    url = redis_url()
    require_service("Redis", url is not None, "set CELERY_BROKER_URL=redis://...")
    # The worker is another process: it needs a database server both can reach (SQLite test data is not
    # committed where it could see it, and the evidence triggers forbid SQLite's flush between tests).
    require_service("PostgreSQL", connection.vendor == "postgresql", "set DATABASE_URL=postgres://...")

    log = start_sync(servicenow)
    settings_dict = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "syncplane.settings",
        "DATABASE_URL": "postgres://{USER}:{PASSWORD}@{HOST}:{PORT}/{NAME}".format(**{
            key: settings_dict[key] or "" for key in ("USER", "PASSWORD", "HOST", "PORT", "NAME")
        }),
        "CELERY_BROKER_URL": url,
        "SECRET_KEY": os.environ.get("SECRET_KEY", ""),
        "SYNCPLANE_ALLOW_INSECURE_OUTBOUND": "1",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "syncplane", "worker", "-Q", "integrations", "--pool", "solo",
         "--loglevel", "INFO", "--without-heartbeat", "--without-mingle", "--without-gossip"],
        env=env,
    )
    try:
        celery_app.conf.task_always_eager = False
        with celery_app.connection_for_write(url) as broker:
            run_integration_sync.apply_async(args=[log.pk], connection=broker, queue="integrations")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            log.refresh_from_db()
            if log.is_finished:
                break
            assert worker.poll() is None, "the worker exited"
            time.sleep(0.5)
    finally:
        celery_app.conf.task_always_eager = True
        worker.terminate()
        worker.wait(timeout=30)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert AssetSource.objects.count() == 250
    assert IntegrationSyncLog.objects.get(pk=log.pk).attempts == 1
