"""ServiceNow CMDB end to end: connector -> sync engine -> inventory, against the simulator over HTTP."""

from datetime import timedelta

import pytest
from django.db import DatabaseError, transaction
from django.utils import timezone

from syncplane.integrations.choices import AuthType, RecordStatus, RunStatus
from syncplane.integrations.engine import SyncAlreadyRunning, run_sync, start_sync
from syncplane.integrations.evidence import link_digest, verify_chain
from syncplane.integrations.models import (
    ImmutableRecordError,
    IntegrationSyncLog,
    SyncRecordOutcome,
    SyncState,
)
from syncplane.integrations.secrets import to_reference
from syncplane.inventory.models import Asset, AssetSource
from tests.integrations.assertions import assert_counters_match_outcomes

pytestmark = pytest.mark.django_db

RECORDS = 250


def sync(system, **kwargs):
    log = start_sync(system, **kwargs)
    return assert_counters_match_outcomes(run_sync(log.pk))


def test_full_sync_brings_in_every_ci(servicenow):
    log = sync(servicenow)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert (log.records_read, log.records_created, log.records_failed) == (RECORDS, RECORDS, 0)
    assert log.pages == RECORDS // 50
    assert AssetSource.objects.filter(external_system=servicenow, deleted_at__isnull=True).count() == RECORDS
    # The simulator has a few duplicate CIs (same serial, other case or spacing): they are one asset each.
    assert RECORDS - 10 < Asset.objects.filter(merged_into__isnull=True).count() < RECORDS
    assert SyncRecordOutcome.objects.filter(sync_log=log, action="create").count() == RECORDS
    assert log.hash and log.previous_hash == ""
    servicenow.refresh_from_db()
    assert servicenow.last_sync_status == RunStatus.SUCCESS
    state = SyncState.objects.get(external_system=servicenow)
    assert state.checkpoint is None and len(state.cursor) == len("2024-05-18 07:01:44")


def test_mapped_values_reach_the_asset(servicenow, simulator):
    sync(servicenow)
    source = AssetSource.objects.select_related("asset").get(external_id=simulator.servicenow.sys_id_for(0))
    asset = source.asset
    raw = source.raw_payload
    assert asset.name == raw["name"]["value"]
    assert asset.serial_number == raw["serial_number"]["value"].strip()
    assert asset.location == raw["location"]["display_value"]
    assert asset.attribute_sources["name"] == str(source.pk)
    assert asset.status in {"active", "in_stock", "in_maintenance", "retired", "disposed", "unknown"}


def test_resync_with_nothing_changed_updates_nothing(servicenow):
    sync(servicenow)
    before = dict(Asset.objects.values_list("id", "updated_at"))
    log = sync(servicenow)
    assert (log.records_created, log.records_updated, log.records_unchanged) == (0, 0, RECORDS)
    assert dict(Asset.objects.values_list("id", "updated_at")) == before


def test_incremental_reads_only_what_changed(servicenow, simulator):
    sync(servicenow)
    touched = simulator.servicenow.touch(count=5)
    log = sync(servicenow, mode="incremental")
    assert log.status == RunStatus.SUCCESS
    assert log.records_updated == 5
    # sys_updated_on >= cursor re-reads the boundary rows; they count as unchanged, never as new.
    assert log.records_created == 0
    assert log.records_read < 20
    changed = set(SyncRecordOutcome.objects.filter(sync_log=log, action="update").values_list("external_id",
                                                                                              flat=True))
    assert changed == set(touched)
    again = sync(servicenow, mode="incremental")
    assert again.records_updated == 0 and again.records_created == 0


def test_full_sync_marks_vanished_sources_deleted_never_drops_them(servicenow, simulator):
    sync(servicenow)
    gone = simulator.servicenow.delete(count=3)
    log = sync(servicenow)
    assert log.records_deleted == 3
    deleted = AssetSource.objects.filter(deleted_at__isnull=False)
    assert set(deleted.values_list("external_id", flat=True)) == set(gone)
    assert Asset.objects.filter(sources__isnull=True).count() == 0  # no asset lost
    for asset in Asset.objects.filter(sources__external_id__in=gone).distinct():
        assert asset.is_orphaned == (not asset.sources.filter(deleted_at__isnull=True).exists())
    assert Asset.objects.filter(is_orphaned=True).count() >= 2
    # An incremental run never deletes anything.
    simulator.servicenow.delete(count=2)
    assert sync(servicenow, mode="incremental").records_deleted == 0


def test_a_record_skipped_by_offset_paging_is_not_marked_deleted(servicenow, simulator):
    sync(servicenow)
    second = start_sync(servicenow)

    def move_an_early_record_to_the_end(log):
        # Offsets shift by one: the first record of the next page slides onto this page and is never read.
        if log.pages == 1:
            simulator.servicenow.touch(indices=[0])

    log = assert_counters_match_outcomes(run_sync(second.pk, progress=move_an_early_record_to_the_end))
    assert log.status == RunStatus.SUCCESS
    assert log.records_read == RECORDS  # one record skipped, the touched one read twice
    assert log.records_deleted == 0
    assert not AssetSource.objects.filter(deleted_at__isnull=False).exists()


def test_malformed_records_end_partial_and_mark_nothing_deleted(servicenow, simulator):
    sync(servicenow)
    simulator.servicenow.delete(count=2)
    simulator.servicenow.inject_fault("malformed", indices=[3, 7])
    log = sync(servicenow)
    assert log.status == RunStatus.PARTIAL
    assert log.records_failed == 2
    assert log.records_deleted == 0
    assert AssetSource.objects.filter(deleted_at__isnull=False).count() == 0
    errors = SyncRecordOutcome.objects.filter(sync_log=log, status=RecordStatus.FAILED)
    assert errors.count() == 2
    for error in errors:
        assert error.reason and error.raw_payload


def test_failed_full_run_marks_nothing_deleted(servicenow, simulator):
    sync(servicenow)
    simulator.servicenow.delete(count=2)
    simulator.servicenow.inject_fault("status", status=403, count=100)
    log = sync(servicenow)
    assert log.status == RunStatus.FAILED and log.error_kind == "permanent"
    assert "403" in log.error_summary
    assert AssetSource.objects.filter(deleted_at__isnull=False).count() == 0


def test_dry_run_writes_nothing_and_shows_the_diff(servicenow, simulator):
    sync(servicenow)
    simulator.servicenow.touch(count=4)
    simulator.servicenow.delete(count=1)
    before = list(AssetSource.objects.order_by("id").values_list("id", "fingerprint", "last_seen_at", "deleted_at"))
    log = sync(servicenow, dry_run=True)
    assert log.status == RunStatus.SUCCESS
    assert (log.records_updated, log.records_deleted, log.records_created) == (4, 1, 0)
    after = list(AssetSource.objects.order_by("id").values_list("id", "fingerprint", "last_seen_at", "deleted_at"))
    assert after == before
    planned = SyncRecordOutcome.objects.filter(sync_log=log, status=RecordStatus.PLANNED)
    assert planned.filter(action="update").count() == 4
    update = planned.filter(action="update").first()
    assert update.changes and all(len(pair) == 2 for pair in update.changes.values())
    assert SyncState.objects.get(external_system=servicenow).checkpoint is None


class Killed(BaseException):
    """Stands in for the worker process dying: not an Exception, so nothing in the engine catches it."""


def die_after_two_pages(log):
    if log.pages == 2:
        raise Killed


def test_a_run_waiting_in_the_queue_is_not_taken_for_dead(servicenow, settings):
    waiting = start_sync(servicenow)  # no worker has taken it yet: it waits behind other syncs
    IntegrationSyncLog.objects.filter(pk=waiting.pk).update(queued_at=timezone.now() - timedelta(hours=1))
    with pytest.raises(SyncAlreadyRunning):
        start_sync(servicenow)
    waiting.refresh_from_db()
    assert waiting.status == RunStatus.QUEUED
    # Queued far longer than any queue lasts: its task was lost before it reached the broker.
    IntegrationSyncLog.objects.filter(pk=waiting.pk).update(
        queued_at=timezone.now() - timedelta(seconds=settings.SYNCPLANE_STALE_QUEUED_SECONDS + 1))
    assert start_sync(servicenow).pk != waiting.pk
    waiting.refresh_from_db()
    assert waiting.status == RunStatus.FAILED and "interrupted" in waiting.error_summary


def test_killed_run_resumes_from_its_checkpoint_without_duplicates_or_gaps(servicenow, simulator):
    first = start_sync(servicenow)
    with pytest.raises(Killed):
        run_sync(first.pk, progress=die_after_two_pages)
    assert AssetSource.objects.count() == 100
    first.refresh_from_db()
    assert first.status == RunStatus.RUNNING
    with pytest.raises(SyncAlreadyRunning):
        start_sync(servicenow)

    # Its heartbeat goes quiet; the next trigger fails it and resumes from its checkpoint.
    IntegrationSyncLog.objects.filter(pk=first.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    second = sync(servicenow)
    first.refresh_from_db()
    assert first.status == RunStatus.FAILED and "interrupted" in first.error_summary
    assert second.status == RunStatus.SUCCESS
    assert second.resumed_from_id == first.pk
    # It re-reads from the last committed change marker: the rest, plus the boundary row(s) again.
    assert RECORDS - 100 <= second.records_read <= RECORDS - 100 + 5
    assert second.records_created == RECORDS - 100
    assert AssetSource.objects.count() == RECORDS
    assert AssetSource.objects.values("external_id").distinct().count() == RECORDS


def test_resumed_full_pass_still_finds_deletions(servicenow, simulator):
    sync(servicenow)
    interrupted = start_sync(servicenow)
    with pytest.raises(Killed):
        run_sync(interrupted.pk, progress=die_after_two_pages)
    IntegrationSyncLog.objects.filter(pk=interrupted.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    # One record the interrupted pass already read, one it had not reached yet.
    read_already, not_reached = simulator.servicenow.delete(indices=[10, 200])
    resumed = sync(servicenow)
    assert resumed.resumed_from_id == interrupted.pk
    # The one not reached is gone from this pass; the one already read is found by the next full pass.
    assert list(AssetSource.objects.filter(deleted_at__isnull=False).values_list("external_id", flat=True)) \
        == [not_reached]
    assert sync(servicenow).records_deleted == 1
    assert AssetSource.objects.filter(deleted_at__isnull=False).count() == 2
    assert read_already


def test_failures_before_a_resume_still_block_deletions(servicenow, simulator):
    sync(servicenow)
    simulator.servicenow.inject_fault("malformed", indices=[5])  # on the first page, before the crash
    interrupted = start_sync(servicenow)
    with pytest.raises(Killed):
        run_sync(interrupted.pk, progress=die_after_two_pages)
    IntegrationSyncLog.objects.filter(pk=interrupted.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    simulator.servicenow.delete(indices=[200])
    resumed = sync(servicenow)
    assert resumed.records_failed == 0 and resumed.records_deleted == 0
    assert not AssetSource.objects.filter(deleted_at__isnull=False).exists()


def test_second_trigger_while_running_is_refused(servicenow):
    start_sync(servicenow)
    with pytest.raises(SyncAlreadyRunning) as refused:
        start_sync(servicenow)
    assert "already queued" in str(refused.value)


def test_rate_limited_pages_are_retried_after_retry_after(servicenow, simulator):
    simulator.servicenow.inject_fault("status", status=429, retry_after=1, count=2)
    log = sync(servicenow)
    assert log.status == RunStatus.SUCCESS
    assert log.records_created == RECORDS


def test_oauth_password_grant_refreshes_an_expired_token(servicenow, simulator):
    servicenow.auth_type = AuthType.OAUTH2_PASSWORD
    servicenow.credentials = {
        "client_id": "syncplane-client",
        "client_secret": to_reference("demo-client-secret"),
        "username": "syncplane.integration",
        "password": to_reference("demo-password"),
    }
    servicenow.save()

    def expire_midway(log):
        if log.pages == 2:
            simulator.servicenow.expire_all_tokens()

    log = assert_counters_match_outcomes(run_sync(start_sync(servicenow).pk, progress=expire_midway))
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert log.records_created == RECORDS


def test_finished_log_cannot_be_changed_or_deleted(servicenow):
    log = sync(servicenow)
    log.error_summary = "rewritten"
    with pytest.raises(ImmutableRecordError):
        log.save()
    with pytest.raises(ImmutableRecordError):
        log.delete()
    with pytest.raises(DatabaseError), transaction.atomic():
        IntegrationSyncLog.objects.filter(pk=log.pk).update(records_created=0)
    with pytest.raises(DatabaseError), transaction.atomic():
        IntegrationSyncLog.objects.filter(pk=log.pk).delete()
    with pytest.raises(DatabaseError), transaction.atomic():
        SyncRecordOutcome.objects.filter(sync_log=log).update(reason="x")


def test_finished_logs_form_a_hash_chain(servicenow):
    first = sync(servicenow)
    second = sync(servicenow)
    assert second.previous_hash == first.hash
    assert verify_chain(servicenow.pk) is None
    second.records_created = 999  # what tampering would look like: the stored hash no longer fits
    assert link_digest(second) != second.hash
