"""A run's life beyond the happy path: cancelled (queued or running), kept alive while it waits, superseded
by a trigger that took it for dead, and what it leaves on its integration; test-connection on a dead port."""

import logging
import socket
import threading
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from syncplane.integrations.choices import RunStatus
from syncplane.integrations.engine import SyncAlreadyRunning, SyncRun, run_sync, start_sync
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog, SyncState
from syncplane.inventory.models import AssetSource

pytestmark = pytest.mark.django_db

RECORDS = 250  # the simulator fixture's, in pages of 50


def cancel(api, log, expected):
    response = api.post(f"/api/v1/integration-sync-logs/{log.pk}/cancel/", format="json")
    assert response.status_code == expected, response.content
    return response.json()


# --- cancel -----------------------------------------------------------------------------------------------


def test_an_operator_cancels_a_queued_sync_at_once(api_as, servicenow, simulator):
    log = start_sync(servicenow)
    body = cancel(api_as("operator"), log, 200)
    assert body["status"] == RunStatus.CANCELLED and body["cancel_requested_by"] == "user-operator"
    assert body["error_summary"] == "cancelled by user-operator before it started"
    log.refresh_from_db()
    assert log.is_finished and log.hash and log.finished_at
    # Its task, delivered later, finds it finished and touches nothing.
    assert run_sync(log.pk).status == RunStatus.CANCELLED
    assert simulator.servicenow.stats["requests"] == 0
    start_sync(servicenow)  # and the integration is free for the next trigger


def test_cancel_needs_the_operator_role_and_an_unfinished_run(api_as, servicenow):
    log = start_sync(servicenow)
    cancel(api_as("viewer"), log, 403)
    log = run_sync(log.pk)
    body = cancel(api_as("operator"), log, 409)
    assert body["detail"] == f"sync log {log.pk} has already finished (success)" and body["status"] == "success"


def test_a_running_sync_stops_at_its_next_page_and_the_next_run_resumes(api_as, servicenow):
    operator = api_as("operator")
    answers = []

    def cancel_after_the_first_page(current):
        if current.pages == 1:
            answers.append(cancel(operator, current, 202))

    log = run_sync(start_sync(servicenow).pk, progress=cancel_after_the_first_page)
    assert answers[0]["status"] == RunStatus.RUNNING and answers[0]["cancel_requested_at"]
    assert log.status == RunStatus.CANCELLED and log.pages == 2  # the page in hand is committed, then it stops
    assert log.error_summary == ("cancelled by user-operator, with 2 pages committed; "
                                 "the next run resumes from its checkpoint")
    assert log.cancel_requested_by == "user-operator" and log.is_finished
    assert AssetSource.objects.count() == 100
    assert ExternalSystem.objects.get(pk=servicenow.pk).last_sync_status == RunStatus.CANCELLED

    resumed = run_sync(start_sync(servicenow).pk)
    assert resumed.status == RunStatus.SUCCESS and resumed.resumed_from_id == log.pk
    assert AssetSource.objects.count() == RECORDS
    assert AssetSource.objects.values("external_id").distinct().count() == RECORDS


def test_a_running_sync_whose_worker_died_is_cancelled_at_once(api_as, servicenow):
    log = start_sync(servicenow)
    IntegrationSyncLog.objects.filter(pk=log.pk).update(
        status=RunStatus.RUNNING, heartbeat_at=timezone.now() - timedelta(hours=1))
    body = cancel(api_as("operator"), log, 200)
    assert body["status"] == RunStatus.CANCELLED
    assert body["error_summary"] == "cancelled by user-operator; its worker had stopped"


# --- alive while waiting; superseded ----------------------------------------------------------------------


def test_the_heartbeat_beats_while_the_run_waits_so_no_second_run_starts(servicenow, simulator, settings):
    # Taken for dead after 1 s of silence: ten beats of 0.1 s missed.
    settings.SYNCPLANE_HEARTBEAT_SECONDS, settings.SYNCPLANE_HEARTBEAT_DEAD_AFTER = 0.1, 10
    committed_at = []
    second_trigger = []
    beat = SyncRun._beat
    serve = simulator.servicenow.handle
    hold_next_request, released = threading.Event(), threading.Event()

    def slow_source_after_the_first_page(current):
        if current.pages == 1:
            hold_next_request.set()
        committed_at.append(time.monotonic())

    def held_until_the_second_trigger(request):
        # The source answers the next page only once the second trigger has been tried, however long the run
        # took to get there (30 s at most: a run that never beats while it waits fails the test).
        if hold_next_request.is_set():
            hold_next_request.clear()
            released.wait(30)
        return serve(request)

    def beat_then_trigger(run):
        beat(run)
        # Well past the stale limit since the last page: without beats, this trigger would take it for dead.
        # (On a busy machine the first page can take longer than a beat: nothing is committed yet then.)
        if not second_trigger and committed_at and time.monotonic() - committed_at[-1] > 1.8:
            try:
                second_trigger.append(start_sync(servicenow))
            except SyncAlreadyRunning as refused:
                second_trigger.append(refused)
            released.set()

    with mock.patch.object(simulator.servicenow, "handle", held_until_the_second_trigger), \
            mock.patch.object(SyncRun, "_beat", autospec=True, side_effect=beat_then_trigger):
        log = run_sync(start_sync(servicenow).pk, progress=slow_source_after_the_first_page)
    assert len(second_trigger) == 1 and isinstance(second_trigger[0], SyncAlreadyRunning)
    assert log.status == RunStatus.SUCCESS and log.records_created == RECORDS
    assert IntegrationSyncLog.objects.filter(external_system=servicenow).count() == 1


def test_a_run_taken_for_dead_stops_cleanly_and_its_successor_resumes(servicenow, caplog):
    successor = []

    def taken_for_dead_after_two_pages(current):
        if current.pages == 2:
            IntegrationSyncLog.objects.filter(pk=current.pk).update(
                heartbeat_at=timezone.now() - timedelta(hours=1))
            successor.append(start_sync(servicenow))

    with caplog.at_level(logging.WARNING, logger="syncplane.sync"):
        log = run_sync(start_sync(servicenow).pk, progress=taken_for_dead_after_two_pages)
    # No IntegrityError: the run saw its log finished by the other trigger and wrote nothing more.
    assert log.status == RunStatus.FAILED and log.error_summary.startswith("interrupted: no sign of life")
    assert log.pages == 2 and AssetSource.objects.count() == 100
    assert any(r.getMessage().startswith("sync stopped: its log was finished elsewhere (failed: interrupted")
               for r in caplog.records)
    resumed = run_sync(successor[0].pk)
    assert resumed.status == RunStatus.SUCCESS and resumed.resumed_from_id == log.pk
    assert AssetSource.objects.values("external_id").distinct().count() == RECORDS


# --- what a run leaves on its integration -----------------------------------------------------------------


def test_last_error_holds_the_last_failure_and_a_completed_run_clears_it(servicenow, simulator):
    simulator.servicenow.inject_fault("status", status=401, count=100)
    failed = run_sync(start_sync(servicenow).pk)
    servicenow.refresh_from_db()
    assert failed.status == RunStatus.FAILED and "401" in servicenow.last_error
    simulator.servicenow.clear_faults()
    simulator.servicenow.inject_fault("malformed", indices=[3])
    partial = run_sync(start_sync(servicenow).pk)
    servicenow.refresh_from_db()
    assert partial.status == RunStatus.PARTIAL and partial.error_summary  # the record errors are on the log
    assert servicenow.last_error == "" and servicenow.last_sync_status == RunStatus.PARTIAL
    assert SyncState.objects.get(external_system=servicenow).checkpoint is None


def test_connection_test_on_a_dead_port_answers_at_once_with_host_port_and_cause(api_as, servicenow):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ExternalSystem.objects.filter(pk=servicenow.pk).update(base_url=f"http://127.0.0.1:{port}/servicenow")
    started = time.monotonic()
    body = api_as("operator").post(f"/api/v1/integrations/{servicenow.pk}/test/", format="json").json()
    assert time.monotonic() - started < 3
    assert body["ok"] is False and body["error_kind"] == "transient"
    assert f"cannot connect to 127.0.0.1:{port}: connection refused" in body["message"]
