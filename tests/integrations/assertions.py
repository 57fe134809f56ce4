"""Checks shared by the connectors' end-to-end sync tests."""

from collections import Counter

from syncplane.integrations.choices import RecordAction, RecordStatus
from syncplane.integrations.engine import DRY_RUN_SAMPLE
from syncplane.integrations.models import IntegrationSyncLog, SyncRecordOutcome


def assert_counters_match_outcomes(log: IntegrationSyncLog) -> IntegrationSyncLog:
    """The log's counters, as committed, equal its per-record outcomes.

    Which outcomes the engine writes: a row for every failed record (any run), for every applied create, update,
    restore and delete (a real run), and for the first DRY_RUN_SAMPLE planned changes (a dry run); unchanged
    records get none. So, precisely:
      failed  == failed outcomes;
      created == create outcomes, updated == update + restore outcomes, deleted == delete outcomes, all
      applied (a real run; a dry run's planned sample is those counts cut at DRY_RUN_SAMPLE);
      and every record read counts once at most: created + updated + unchanged + failed <= read (a record
      repeated within a page counts once; deletions also come from the end of the pass, not from records read).
    Returns the log as stored.
    """
    log = IntegrationSyncLog.objects.get(pk=log.pk)
    rows = Counter(SyncRecordOutcome.objects.filter(sync_log=log).values_list("status", "action"))
    kept = RecordStatus.PLANNED if log.dry_run else RecordStatus.APPLIED
    assert {status for status, _action in rows} <= {kept, RecordStatus.FAILED}, rows
    failed = sum(n for (status, _action), n in rows.items() if status == RecordStatus.FAILED)
    outcomes = {
        "created": rows[kept, RecordAction.CREATE],
        "updated": rows[kept, RecordAction.UPDATE] + rows[kept, RecordAction.RESTORE],
        "deleted": rows[kept, RecordAction.DELETE],
    }
    counters = {"created": log.records_created, "updated": log.records_updated, "deleted": log.records_deleted}
    where = f"sync log {log.pk} ({log.status}, {log.mode}{', dry run' if log.dry_run else ''})"
    assert log.records_failed == failed, f"{where}: {log.records_failed} failed counted, {failed} outcomes"
    if log.dry_run:
        assert all(outcomes[name] <= counters[name] for name in counters), (where, counters, outcomes)
        assert sum(outcomes.values()) == min(sum(counters.values()), DRY_RUN_SAMPLE), (where, counters, outcomes)
    else:
        assert counters == outcomes, f"{where}: counters {counters}, outcomes {outcomes}"
    accounted = log.records_created + log.records_updated + log.records_unchanged + log.records_failed
    assert accounted <= log.records_read, f"{where}: {accounted} records accounted for, {log.records_read} read"
    return log
