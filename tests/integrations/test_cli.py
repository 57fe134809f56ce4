"""`syncplane sync <id-or-name>`: a foreground sync with a progress bar and a summary, or a clear error."""

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from syncplane.integrations.choices import RunStatus, SyncMode, Trigger
from syncplane.integrations.engine import start_sync
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog, SyncRecordOutcome
from syncplane.inventory.models import Asset, AssetSource

pytestmark = pytest.mark.django_db


def sync(*args, **options):
    """Run the command; (stdout, stderr) written through the command's own streams."""
    out, err = StringIO(), StringIO()
    call_command("sync", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def latest_log(system) -> IntegrationSyncLog:
    return IntegrationSyncLog.objects.filter(external_system=system).order_by("-id").first()


def test_full_sync_by_name_prints_the_summary(servicenow):
    out, _ = sync("ServiceNow test", "--no-progress")
    log = latest_log(servicenow)
    assert log.status == RunStatus.SUCCESS and log.trigger == Trigger.CLI and log.requested_by == "cli"
    assert log.mode == SyncMode.FULL and not log.dry_run
    first, counts = out.strip().splitlines()[:2]
    assert first.startswith(f"Sync #{log.pk} of ServiceNow test: SUCCESS in ")
    assert re.search(r" in \d+\.\d s ", first), first  # the duration
    assert f"(full, correlation id {log.correlation_id})" in first and log.correlation_id
    assert counts.strip() == "read 250, created 250, updated 0, unchanged 0, deleted 0, failed 0"
    assert AssetSource.objects.filter(external_system=servicenow).count() == 250


def test_sync_by_id_then_incremental_reads_only_the_changes(servicenow, simulator):
    sync(str(servicenow.pk), "--no-progress")
    simulator.servicenow.touch(count=3)
    out, _ = sync(str(servicenow.pk), "--mode", "incremental", "--no-progress")
    log = latest_log(servicenow)
    assert log.mode == SyncMode.INCREMENTAL and log.status == RunStatus.SUCCESS
    assert log.records_updated == 3 and log.records_created == 0 and log.records_deleted == 0
    assert log.records_read < 250  # from the cursor, not the whole table
    assert "(incremental, correlation id " in out
    assert f"read {log.records_read}, created 0, updated 3, " in out


def test_dry_run_writes_nothing_to_the_inventory(servicenow):
    out, _ = sync("ServiceNow test", "--dry-run", "--no-progress")
    log = latest_log(servicenow)
    assert log.dry_run and log.status == RunStatus.SUCCESS and log.records_created == 250
    assert "(full, dry run, correlation id " in out
    assert "would be created 250" in out and "would be deleted 0" in out
    assert Asset.objects.count() == 0 and AssetSource.objects.count() == 0
    # Only planned outcomes (a sample) are kept as evidence, nothing marked applied.
    statuses = set(SyncRecordOutcome.objects.filter(sync_log=log).values_list("status", flat=True))
    assert statuses == {"planned"}


def test_unknown_integration_lists_the_integrations(servicenow):
    with pytest.raises(CommandError) as caught:
        sync("no-such-thing", "--no-progress")
    message = str(caught.value)
    assert "'no-such-thing'" in message and f"{servicenow.pk}:ServiceNow test" in message
    assert not IntegrationSyncLog.objects.exists()


def test_unknown_numeric_id_and_archived_integrations_are_not_found(servicenow):
    with pytest.raises(CommandError, match="no integration '99999'"):
        sync("99999", "--no-progress")
    ExternalSystem.objects.filter(pk=servicenow.pk).update(archived_at="2025-01-01T00:00:00Z")
    with pytest.raises(CommandError, match="integrations: none yet"):
        sync(str(servicenow.pk), "--no-progress")


def test_a_second_sync_while_one_is_queued_is_refused(servicenow, simulator):
    queued = start_sync(servicenow)
    with pytest.raises(CommandError, match="already") as caught:
        sync("ServiceNow test", "--no-progress")
    assert f"sync log {queued.pk}" in str(caught.value)
    assert IntegrationSyncLog.objects.filter(external_system=servicenow).count() == 1
    assert simulator.servicenow.stats["requests"] == 0  # refused before touching the source


def test_a_failing_sync_raises_with_the_reason_and_still_prints_the_summary(servicenow, simulator):
    simulator.servicenow.inject_fault("status", status=403, count=100)
    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("sync", "ServiceNow test", "--no-progress", stdout=out, stderr=StringIO())
    message = str(caught.value)
    assert message.startswith("sync failed (permanent): ")
    assert "403" in message
    log = latest_log(servicenow)
    assert log.status == RunStatus.FAILED and log.error_summary and log.error_summary in message
    assert f"Sync #{log.pk} of ServiceNow test: FAILED" in out.getvalue()
    assert AssetSource.objects.count() == 0


def test_progress_bar_goes_to_stderr_unless_disabled(servicenow):
    out, bar = sync("ServiceNow test")
    assert "ServiceNow test (full)" in bar
    assert "250/250" in bar  # the total the source announced, reached
    assert "records" in bar
    assert "ServiceNow test (full)" not in out  # the bar stays off stdout, which carries the summary

    _, quiet = sync("ServiceNow test", "--dry-run", "--no-progress")
    assert "ServiceNow test" not in quiet
