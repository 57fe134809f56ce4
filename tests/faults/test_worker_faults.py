"""Faults under real workers (PostgreSQL, Redis, `celery worker` processes, the simulators over HTTP): the whole
worker killed mid-sync, PostgreSQL restarted mid-sync, Redis restarted mid-sync and mid-delivery, and one
integration triggered from two workers at once. Each ends with every record written once: none lost, none twice.

Bounded: each wait has a deadline; seeded: the simulator's data and the page a fault lands on are fixed (a fault
strikes once the run has committed FAULT_AT_PAGE pages)."""

from datetime import timedelta
from unittest import mock

import pytest
from django.db.models import Count, Sum

from syncplane.changes import actions
from syncplane.changes.models import ChangeRequest
from syncplane.integrations.choices import AuthType, RunStatus, SystemType
from syncplane.integrations.engine import start_sync
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog, OutboxKind, OutboxMessage, OutboxStatus
from syncplane.integrations.outbox import deliver_outbox_message
from syncplane.integrations.secrets import to_reference
from syncplane.inventory.models import Asset, AssetSource
from tests.faults.conftest import (
    PAGE_SIZE,
    RECORDS,
    postgresql_cluster,
    reconnect,
    redis_server,
    restart_postgresql,
    restart_redis,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)

FAULT_AT_PAGE = 40  # of 200
RUN = "syncplane.integrations.tasks.run_integration_sync"
REQUEUE = "syncplane.integrations.tasks.requeue_lost_syncs"
SCHEDULE = "syncplane.integrations.tasks.sync_all_integrations"
DELIVER_DUE = "syncplane.changes.tasks.deliver_due_outbox_messages"
SYNC_TIMEOUT = 240


def committed_pages(log: IntegrationSyncLog, pages: int):
    return lambda: IntegrationSyncLog.objects.filter(pk=log.pk, pages__gte=pages).exists()


def finished_run(system: ExternalSystem):
    """The integration's last log once it has finished and nothing else is active."""
    def check():
        if IntegrationSyncLog.objects.active().filter(external_system=system).exists():
            return None
        return IntegrationSyncLog.objects.filter(external_system=system).order_by("-id").first()
    return check


def assert_every_record_once(system: ExternalSystem) -> None:
    sources = AssetSource.objects.filter(external_system=system)
    assert sources.count() == RECORDS
    assert sources.values("external_id").distinct().count() == RECORDS
    assert not sources.values("external_id").annotate(n=Count("id")).filter(n__gt=1).exists()
    # Every asset has its source: a page written twice would have left assets behind with none.
    assert not Asset.objects.annotate(n=Count("sources")).filter(n=0).exists()
    logs = IntegrationSyncLog.objects.filter(external_system=system)
    assert logs.aggregate(created=Sum("records_created"))["created"] == RECORDS  # no record created twice


def test_the_whole_worker_killed_mid_sync_is_found_and_its_run_resumed(cmdb, workers, broker):
    first = workers("a")
    log = start_sync(cmdb)
    broker.send(RUN, log.pk)
    wait_for(committed_pages(log, FAULT_AT_PAGE), SYNC_TIMEOUT, f"{FAULT_AT_PAGE} pages", worker=first)
    first.kill()

    second = workers("b")
    with broker.beat(REQUEUE):
        last = wait_for(finished_run(cmdb), SYNC_TIMEOUT, "the re-queued run", worker=second)
    lost = IntegrationSyncLog.objects.get(pk=log.pk)
    assert lost.status == RunStatus.FAILED and lost.error_kind == "transient"
    assert lost.error_summary.startswith("worker lost: no heartbeat since ")
    assert lost.error_summary.endswith("a new attempt is queued; the next run resumes from its checkpoint")
    assert last.pk != lost.pk and last.status == RunStatus.SUCCESS, last.error_summary
    assert last.resumed_from_id == lost.pk and last.trigger == lost.trigger and last.attempts == 1
    assert last.records_created == RECORDS - lost.records_created  # it went on where the lost one stopped
    assert "sync re-queued" in second.log()
    assert_every_record_once(cmdb)


def test_postgresql_restarted_mid_sync_is_transient_and_the_run_resumes(cmdb, workers, broker):
    if postgresql_cluster() is None:
        pytest.skip("cannot restart PostgreSQL here: needs root, pg_ctlcluster and the local cluster of the test "
                    "database (as in CI)")
    worker = workers("a")
    log = start_sync(cmdb)
    broker.send(RUN, log.pk)
    wait_for(committed_pages(log, FAULT_AT_PAGE), SYNC_TIMEOUT, f"{FAULT_AT_PAGE} pages", worker=worker)
    restart_postgresql()
    reconnect()
    with broker.beat(REQUEUE):
        last = wait_for(finished_run(cmdb), SYNC_TIMEOUT, "the run after the restart", worker=worker)
    assert last.status == RunStatus.SUCCESS, last.error_summary
    # Retried in place (the attempt handed back, the task retried soon), or, if the database was not back in
    # time to hand it back, found dead and queued again: either way it resumed and nothing was written twice.
    interrupted = IntegrationSyncLog.objects.get(pk=log.pk)
    assert (interrupted.pk == last.pk and last.attempts >= 2) or (
        interrupted.status == RunStatus.FAILED and last.resumed_from_id == interrupted.pk)
    assert "the database connection failed" in worker.log() or "heartbeat failed" in worker.log()
    assert_every_record_once(cmdb)


def test_redis_restarted_mid_sync_loses_nothing(cmdb, workers, broker):
    if redis_server(broker.url) is None:
        pytest.skip("cannot restart Redis here: needs a local redis-server and redis-cli (as in CI)")
    worker = workers("a")
    log = start_sync(cmdb)
    broker.send(RUN, log.pk)
    wait_for(committed_pages(log, FAULT_AT_PAGE), SYNC_TIMEOUT, f"{FAULT_AT_PAGE} pages", worker=worker)
    restart_redis(broker.url)
    last = wait_for(finished_run(cmdb), SYNC_TIMEOUT, "the run", worker=worker)
    assert last.pk == log.pk and last.status == RunStatus.SUCCESS and last.attempts == 1, last.error_summary
    assert_every_record_once(cmdb)
    # The worker took up its broker again: a task sent after the restart runs.
    broker.send(REQUEUE)
    wait_for(lambda: worker.log().count("requeue_lost_syncs") >= 2, 60, "a task after the restart", worker=worker)


CHANGES = 24


@pytest.fixture
def itsm(fleet, transactional_db):
    return ExternalSystem.objects.create(
        name="ServiceNow ITSM (faults)", system_type=SystemType.SERVICENOW_ITSM, category="itsm",
        base_url=f"{fleet.url}/servicenow", auth_type=AuthType.BASIC,
        credentials={"username": "syncplane.integration", "password": to_reference("demo-password")},
    )


def test_redis_restarted_mid_delivery_loses_no_change_and_creates_none_twice(itsm, fleet, workers, broker):
    if redis_server(broker.url) is None:
        pytest.skip("cannot restart Redis here: needs a local redis-server and redis-cli (as in CI)")
    creates_before = fleet.servicenow.stats["POST change_request"]
    fleet.servicenow.inject_fault("slow", delay=0.25, count=None, path="change_request")  # deliveries take a while
    worker = workers("a")
    changes = [ChangeRequest.objects.create(title=f"Patch edge router {n}", risk_score=30) for n in range(CHANGES)]
    # A submission queues its delivery through Redis once committed; the beat re-sends what is due after a grace
    # (shortened here from a minute) and whose task was lost.
    send = mock.patch.object(deliver_outbox_message, "delay", side_effect=lambda pk: broker.send(
        deliver_outbox_message.name, pk))
    grace = mock.patch.object(actions, "OUTBOX_GRACE", timedelta(seconds=3))
    try:
        with send, grace:
            for change in changes:
                actions.submit(change, external_system=itsm)
        messages = OutboxMessage.objects.filter(kind=OutboxKind.CHANGE_CREATE, external_system=itsm)
        wait_for(lambda: messages.filter(status=OutboxStatus.DELIVERED).count() >= 4, 120, "the first deliveries",
                 worker=worker)
        restart_redis(broker.url)  # the delivery tasks still queued are gone with it
        assert messages.filter(status=OutboxStatus.PENDING).exists()
        with broker.beat(DELIVER_DUE, every=2):
            wait_for(lambda: messages.filter(status=OutboxStatus.DELIVERED).count() == CHANGES, 180,
                     "every change delivered", worker=worker)
    finally:
        fleet.servicenow.clear_faults()
    assert fleet.servicenow.stats["POST change_request"] - creates_before == CHANGES  # none created twice
    remote = {c["correlation_id"] for c in fleet.servicenow.itsm.changes.values()}
    numbers = set()
    for change in ChangeRequest.objects.filter(pk__in=[c.pk for c in changes]):
        assert change.correlation_id in remote and change.external_change_request_id
        numbers.add(change.external_change_request_id)
    assert len(numbers) == CHANGES


def test_one_integration_triggered_from_two_workers_at_once_runs_once(cmdb, fleet, workers, broker):
    ExternalSystem.objects.filter(pk=cmdb.pk).update(scheduled=True)
    requests_before = fleet.servicenow.stats["table_requests"]
    a, b = workers("a"), workers("b")
    broker.send(SCHEDULE)  # both workers run the schedule at the same moment,
    broker.send(SCHEDULE)
    log = wait_for(lambda: IntegrationSyncLog.objects.filter(external_system=cmdb, pages__gte=5).first(),
                   SYNC_TIMEOUT, "the scheduled run", worker=a)
    broker.send(RUN, log.pk)  # and its task is delivered twice more while it runs (a redelivery, a double send)
    broker.send(RUN, log.pk)
    last = wait_for(finished_run(cmdb), SYNC_TIMEOUT, "the run", worker=b)
    assert IntegrationSyncLog.objects.filter(external_system=cmdb).count() == 1
    assert last.pk == log.pk and last.status == RunStatus.SUCCESS and last.attempts == 1, last.error_summary
    assert "sync not run: another worker runs it" in a.log() + b.log()
    assert fleet.servicenow.stats["table_requests"] - requests_before <= RECORDS // PAGE_SIZE + 5  # one pass
    assert_every_record_once(cmdb)
