"""The fault suite's machinery: real `celery worker` processes on PostgreSQL and Redis, a simulator with enough
records that a fault lands mid-run, the beat's jobs sent on its schedule, and the restarts CI can do.

The suite runs where services are required (SYNCPLANE_REQUIRE_SERVICES=1: CI's run on PostgreSQL and Redis) and is
skipped elsewhere: it kills workers and restarts the database and the broker under everyone's feet. There a missing
PostgreSQL or Redis fails it; a restart this machine cannot do (not root, no pg_ctlcluster, a remote server)
skips the one test that needs it, saying why."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import InterfaceError, OperationalError, connection

from syncplane.celery import app as celery_app
from syncplane.integrations.choices import AuthType, SystemType
from syncplane.integrations.models import ExternalSystem
from syncplane.integrations.secrets import to_reference
from tests.conftest import redis_answers, require_service

RECORDS = 10_000
PAGE_SIZE = 50
# The suite's own database number on the broker's server: a task a killed worker leaves unacknowledged (Redis gives
# it back after its visibility timeout, an hour later) must not reach anyone else's worker.
BROKER_DB = 15
# Dead after three missed beats of one second: a lost worker is found in seconds, not in the default 30 s.
WORKER_ENV = {"SYNCPLANE_HEARTBEAT_SECONDS": "1", "SYNCPLANE_HEARTBEAT_DEAD_AFTER": "3"}


def pytest_configure(config):
    config.addinivalue_line("markers", "faults: kills workers and restarts PostgreSQL and Redis (CI only)")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/faults/" in item.nodeid:
            item.add_marker(pytest.mark.faults)
            item.add_marker(pytest.mark.services)


@pytest.fixture(scope="session")
def broker_url() -> str:
    if os.environ.get("SYNCPLANE_REQUIRE_SERVICES") != "1":
        pytest.skip("the fault suite runs with SYNCPLANE_REQUIRE_SERVICES=1 on PostgreSQL and Redis (CI): it kills "
                    "workers and restarts both servers")
    url = os.environ.get("CELERY_BROKER_URL", "")
    require_service("Redis", url.startswith("redis://") and redis_answers(url), "set CELERY_BROKER_URL=redis://...")
    require_service("PostgreSQL", connection.vendor == "postgresql", "set DATABASE_URL=postgres://...")
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{BROKER_DB}"))


@pytest.fixture(scope="session")
def fleet(broker_url):
    """One simulator for the suite: 10,000 CMDB records in pages of 50 (200 pages), and the ITSM tables."""
    from syncplane_simulators.server import SimulatorServer

    with SimulatorServer(records=RECORDS, seed=15, cache_records=RECORDS) as server:
        yield server


@pytest.fixture
def cmdb(fleet, transactional_db) -> ExternalSystem:
    return ExternalSystem.objects.create(
        name="ServiceNow CMDB (faults)", system_type=SystemType.SERVICENOW_CMDB, category="cmdb",
        base_url=f"{fleet.url}/servicenow", auth_type=AuthType.BASIC,
        credentials={"username": "syncplane.integration", "password": to_reference("demo-password")},
        config={"page_size": PAGE_SIZE},
    )


@pytest.fixture
def broker(broker_url):
    """Sends tasks to the workers through Redis, as the web server and beat do (the tests' own app runs tasks
    eagerly); emptied before and after each test."""
    import redis

    client = redis.Redis.from_url(broker_url)
    client.flushdb()
    celery_app.conf.task_always_eager = False
    try:
        yield Broker(broker_url)
    finally:
        celery_app.conf.task_always_eager = True
        if redis_answers(broker_url):
            redis.Redis.from_url(broker_url).flushdb()


class Broker:
    def __init__(self, url: str):
        self.url = url

    def send(self, task: str, *args) -> None:
        with celery_app.connection_for_write(self.url) as conn:
            celery_app.send_task(task, args=args, connection=conn, queue="integrations")

    @contextmanager
    def beat(self, *tasks: str, every: float = 1.0):
        """What `celery beat` does, faster: send `tasks` every `every` seconds (a send the broker refuses while it
        restarts is simply the next tick's)."""
        stop = threading.Event()

        def tick():
            while not stop.wait(every):
                for task in tasks:
                    try:
                        self.send(task)
                    except Exception:  # noqa: BLE001 - the broker restarting: the next tick sends again
                        pass

        thread = threading.Thread(target=tick, daemon=True, name="faults-beat")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=30)


class Worker:
    """`celery -A syncplane worker` in a process group of its own, logging to a file."""

    def __init__(self, name: str, env: dict, log_path: Path):
        self.name = name
        self.log_path = log_path
        with open(log_path, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "syncplane", "worker", "-Q", "integrations", "--pool", "solo",
                 "-n", f"{name}@%h", "--loglevel", "INFO", "--without-heartbeat", "--without-mingle",
                 "--without-gossip"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> Worker:
        wait_for(lambda: "ready." in self.log(), timeout, f"worker {self.name} to start", worker=self)
        return self

    def kill(self) -> None:
        """kill -9 of the whole worker: no shutdown, no acknowledgement, nothing written."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()


@pytest.fixture
def workers(broker, transactional_db, tmp_path):
    """Starts workers on the test database; stops them (before the database is flushed) at the end. On failure
    the tail of each worker's log is printed."""
    settings_dict = connection.settings_dict
    env = {
        **os.environ,
        **WORKER_ENV,
        "DJANGO_SETTINGS_MODULE": "syncplane.settings",
        "DATABASE_URL": "postgres://{USER}:{PASSWORD}@{HOST}:{PORT}/{NAME}".format(**{
            key: settings_dict[key] or "" for key in ("USER", "PASSWORD", "HOST", "PORT", "NAME")
        }),
        "CELERY_BROKER_URL": broker.url,
        "SYNCPLANE_ALLOW_INSECURE_OUTBOUND": "1",
        "SYNCPLANE_LOG_FORMAT": "console",
    }
    started: list[Worker] = []

    def start(name: str) -> Worker:
        worker = Worker(name, env, tmp_path / f"worker-{name}.log")
        started.append(worker)
        return worker.wait_ready()

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()
        for worker in started:
            print(f"--- worker {worker.name} (last lines) ---\n" + "\n".join(worker.log().splitlines()[-40:]))
        reconnect()


def reconnect() -> None:
    """The test's own connection, after PostgreSQL restarted under it."""
    connection.close()


def wait_for(check: Callable[[], object], timeout: float, what: str, worker: Worker | None = None):
    """Poll `check` until it returns something true; a database restarting under the poll is waited out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except (OperationalError, InterfaceError):
            reconnect()
            result = None
        if result:
            return result
        if worker is not None and worker.process.poll() is not None:
            pytest.fail(f"worker {worker.name} exited while waiting for {what}:\n{worker.log()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


# --- restarts, as the CI machine can do them ----------------------------------------------------------------


def postgresql_cluster() -> tuple[str, str] | None:
    """The local cluster serving the test database, found as .ci/run finds it (pg_lsclusters); None when this
    process cannot restart it."""
    if os.geteuid() != 0 or not shutil.which("pg_ctlcluster") or not shutil.which("pg_lsclusters"):
        return None
    if connection.settings_dict["HOST"] not in ("127.0.0.1", "localhost", "::1", ""):
        return None
    port = str(connection.settings_dict["PORT"] or 5432)
    listed = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False).stdout
    for line in listed.splitlines():
        version, name, cluster_port, *_ = line.split()
        if cluster_port == port:
            return version, name
    return None


def restart_postgresql() -> float:
    """pg_ctlcluster restart (fast shutdown: every connection is cut); returns the seconds it took."""
    cluster = postgresql_cluster()
    started = time.monotonic()
    subprocess.run(["pg_ctlcluster", *cluster, "restart"], check=True, timeout=120, capture_output=True)
    return time.monotonic() - started


def redis_server(url: str) -> tuple[str, str] | None:
    """(host, port) of a local Redis this process can stop and start again, or None."""
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost") or not shutil.which("redis-server") \
            or not shutil.which("redis-cli"):
        return None
    return parts.hostname, str(parts.port or 6379)


def restart_redis(url: str) -> float:
    """What CI's Redis is: no persistence. A restart loses every queued and unacknowledged task."""
    host, port = redis_server(url)
    started = time.monotonic()
    subprocess.run(["redis-cli", "-h", host, "-p", port, "shutdown", "nosave"], capture_output=True, timeout=30,
                   check=False)
    wait_for(lambda: not redis_answers(url), 30, "Redis to stop")
    # As .ci/run starts it.
    subprocess.run(["redis-server", "--port", port, "--daemonize", "yes", "--save", "", "--appendonly", "no"],
                   check=True, timeout=30, capture_output=True)
    wait_for(lambda: redis_answers(url), 30, "Redis to start")
    return time.monotonic() - started
