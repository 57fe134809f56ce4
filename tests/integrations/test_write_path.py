"""The write path: the bulk writer (executemany on SQLite, COPY on PostgreSQL for batches) and pages written by a
thread of their own while the next is mapped (write-behind). Both must give the same rows, counts, outcomes and
evidence as writing inline; a failure in the writer fails the run as it would inline, a cancel stops it after the
page in hand, and the next run resumes from the last committed checkpoint. The whole file runs on SQLite and, with
DATABASE_URL=postgres://..., on PostgreSQL (`-m services` for the PostgreSQL-only test)."""

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, connection, transaction

from syncplane.core import bulk
from syncplane.core.bulk import Table
from syncplane.integrations import engine
from syncplane.integrations.choices import RunStatus
from syncplane.integrations.engine import request_cancel, run_sync, start_sync
from syncplane.integrations.evidence import verify_sync_logs
from syncplane.integrations.models import SyncState
from syncplane.integrations.readahead import WriteBehind
from syncplane.inventory.models import Asset, AssetSource
from syncplane.inventory.reconcile import asset_values
from syncplane.inventory.sink import ASSET_COLUMNS, AssetSink
from tests.conftest import require_service
from tests.integrations.assertions import assert_counters_match_outcomes

pytestmark = pytest.mark.django_db

RECORDS = 250  # the simulator fixture's, in pages of 50
WHEN = datetime(2026, 12, 6, 10, 30, tzinfo=UTC)


@pytest.fixture(params=[False, True], ids=["inline", "write-behind"])
def threaded(request, monkeypatch):
    monkeypatch.setitem(engine.WRITE_BEHIND, connection.vendor, request.param)
    return request.param


# --- the bulk writer ---------------------------------------------------------------------------------------------


def asset_row(number: int, *, attribute_sources=None) -> tuple:
    """A row of ASSET_COLUMNS, as the sink builds it."""
    values, sources = asset_values({"asset_type": "laptop", "hostname": f"host-{number}",
                                    "serial_number": f"SN{number:05d}", "compliance_reasons": ["a", "b"]}, number)
    return (uuid.uuid4(), *values, attribute_sources if attribute_sources is not None else sources, False, WHEN,
            WHEN)


@pytest.mark.parametrize("rows", [3, bulk.COPY_FROM_ROWS + 7], ids=["small batch", "large batch"])
def test_the_bulk_writer_stores_and_updates_exactly_the_rows_given(rows):
    """Small batches go through executemany, large ones through COPY on PostgreSQL: the same rows either way,
    JSON with a NUL (removed), non-ASCII text, quotes, backslashes and tabs (COPY's own escapes) included."""
    tricky = {"hostname": "Zoë's \\ laptop\twith\nlines \"quoted\" \x00nul"}
    given = [asset_row(n, attribute_sources=tricky if n == 0 else None) for n in range(rows)]
    with transaction.atomic():
        Table(Asset, ASSET_COLUMNS).insert(given)
    stored = dict(Asset.objects.values_list("id", "attribute_sources"))
    assert stored.keys() == {row[0] for row in given}
    assert stored[given[0][0]] == {"hostname": "Zoë's \\ laptop\twith\nlines \"quoted\" nul"}
    assert Asset.objects.get(id=given[1][0]).hostname == "host-1"

    later = datetime(2026, 12, 7, tzinfo=UTC)
    updates = Table(Asset, ("hostname", "attribute_sources", "is_orphaned", "updated_at"))
    with transaction.atomic():
        updates.update_by_pk((row[0], f"renamed-{n}", {"n": n, "text": "tab\there"}, n % 2 == 0, later)
                             for n, row in enumerate(given))
    after = {a.id: a for a in Asset.objects.all()}
    for n, row in enumerate(given):
        asset = after[row[0]]
        assert (asset.hostname, asset.attribute_sources, asset.is_orphaned, asset.updated_at) == (
            f"renamed-{n}", {"n": n, "text": "tab\there"}, n % 2 == 0, later)
        assert asset.serial_number == f"SN{n:05d}"  # columns not named are left alone


@pytest.mark.parametrize("rows", [3, bulk.COPY_FROM_ROWS + 7], ids=["small batch", "large batch"])
def test_a_batch_the_database_refuses_raises_integrity_error_and_writes_nothing(rows):
    given = [asset_row(n) for n in range(rows)]
    given[-1] = (given[0][0], *given[-1][1:])  # the same primary key twice
    with pytest.raises(IntegrityError), transaction.atomic():
        Table(Asset, ASSET_COLUMNS).insert(given)
    assert not Asset.objects.exists()


@pytest.mark.services
def test_postgresql_copies_large_batches(monkeypatch):
    require_service("PostgreSQL", connection.vendor == "postgresql", "set DATABASE_URL=postgres://...")
    copied = []
    original = bulk._copy_rows
    monkeypatch.setattr(bulk, "_copy_rows", lambda cursor, table, columns, rows: (
        copied.append((table, len(rows))), original(cursor, table, columns, rows)))
    given = [asset_row(n) for n in range(bulk.COPY_FROM_ROWS)]
    with transaction.atomic():
        Table(Asset, ASSET_COLUMNS).insert(given)
        Table(Asset, ("hostname",)).update_by_pk((row[0], "same") for row in given)
        Table(Asset, ASSET_COLUMNS).insert([asset_row(1000)])  # one row: executemany
    assert [count for _table, count in copied] == [bulk.COPY_FROM_ROWS, bulk.COPY_FROM_ROWS]
    assert copied[1][0].startswith('"staging_')
    assert Asset.objects.filter(hostname="same").count() == bulk.COPY_FROM_ROWS
    assert Asset.objects.count() == bulk.COPY_FROM_ROWS + 1


# --- the engine, inline and write-behind ------------------------------------------------------------------------


def sync(system, **kwargs):
    return assert_counters_match_outcomes(run_sync(start_sync(system, **kwargs).pk))


def counts(log) -> tuple:
    return (log.status, log.pages, log.records_read, log.records_created, log.records_updated,
            log.records_unchanged, log.records_deleted, log.records_failed)


def test_write_behind_gives_the_same_runs_as_writing_inline(servicenow, simulator, threaded):
    first = sync(servicenow)
    assert counts(first) == (RunStatus.SUCCESS, 5, RECORDS, RECORDS, 0, 0, 0, 0)
    phases = (first.fetch_seconds, first.map_seconds, first.write_seconds, first.reconcile_seconds)
    assert sum(phases) <= first.duration_ms / 1000 + 0.01  # overlapped writing is not counted twice
    assert counts(sync(servicenow)) == (RunStatus.SUCCESS, 5, RECORDS, 0, 0, RECORDS, 0, 0)
    simulator.servicenow.touch(indices=[3, 60, 61, 200])
    simulator.servicenow.delete(indices=[10, 11, 120])
    changed = sync(servicenow)
    assert counts(changed) == (RunStatus.SUCCESS, 5, RECORDS - 3, 0, 4, RECORDS - 7, 3, 0)
    simulator.servicenow.touch(indices=[5, 6])
    incremental = sync(servicenow, mode="incremental")
    assert incremental.status == RunStatus.SUCCESS and incremental.records_updated == 2
    dry = sync(servicenow, dry_run=True)
    assert counts(dry) == (RunStatus.SUCCESS, 5, RECORDS - 3, 0, 0, RECORDS - 3, 0, 0)
    assert AssetSource.objects.filter(deleted_at__isnull=True).count() == RECORDS - 3
    assert verify_sync_logs(servicenow.pk).broken is None


def fail_on_call(monkeypatch, number: int, error: Exception):
    calls = []
    original = AssetSink.apply

    def apply(self, plan, now):
        calls.append(threading.current_thread().name)
        if len(calls) == number:
            raise error
        return original(self, plan, now)

    monkeypatch.setattr(AssetSink, "apply", apply)
    return calls


def test_an_error_in_the_writer_fails_the_run_and_the_next_run_resumes(servicenow, monkeypatch, threaded):
    calls = fail_on_call(monkeypatch, 3, RuntimeError("boom"))
    log = sync(servicenow)
    assert (log.status, log.error_summary) == (RunStatus.FAILED, "internal error (RuntimeError); see the worker log")
    assert (log.pages, log.records_created) == (2, 100)  # the failed page rolled back whole, counters with it
    assert AssetSource.objects.count() == 100
    assert SyncState.objects.get(external_system=servicenow).checkpoint["log_id"] == log.pk
    assert set(calls) == {"syncplane-write-behind" if threaded else threading.current_thread().name}

    monkeypatch.undo()
    resumed = sync(servicenow)
    assert resumed.status == RunStatus.SUCCESS and resumed.resumed_from_id == log.pk
    assert resumed.records_created == RECORDS - 100
    assert AssetSource.objects.values("external_id").distinct().count() == RECORDS


def test_a_refused_page_falls_back_to_one_record_at_a_time(servicenow, monkeypatch, threaded):
    fail_on_call(monkeypatch, 2, IntegrityError("refused by the test"))  # page 2 once; its records one by one
    log = sync(servicenow)
    assert counts(log) == (RunStatus.SUCCESS, 5, RECORDS, RECORDS, 0, 0, 0, 0)


def test_a_cancel_stops_after_the_page_in_hand_and_the_next_run_resumes(servicenow, threaded):
    def cancel_after_the_first_page(current):
        if current.pages == 1:
            request_cancel(current.pk, "tester")

    log = run_sync(start_sync(servicenow).pk, progress=cancel_after_the_first_page)
    assert log.status == RunStatus.CANCELLED and log.pages == 2
    assert AssetSource.objects.count() == 100
    resumed = sync(servicenow)
    assert resumed.status == RunStatus.SUCCESS and resumed.resumed_from_id == log.pk
    assert AssetSource.objects.values("external_id").distinct().count() == RECORDS


# --- WriteBehind itself ------------------------------------------------------------------------------------------


def test_write_behind_hands_each_item_over_and_writes_in_order():
    written, in_flight, most = [], [0], [0]
    lock = threading.Lock()

    def write(item):
        time.sleep(0.01)
        with lock:
            in_flight[0] -= 1
            written.append(item)

    with WriteBehind(write, threaded=True) as writer:
        for item in range(20):
            with lock:
                in_flight[0] += 1
                most[0] = max(most[0], in_flight[0])
            writer.submit(item)
    assert written == list(range(20))
    assert most[0] <= 2  # one being written, one being handed over: none waits in between


def test_an_error_of_the_writer_reaches_the_caller_and_later_items_are_dropped():
    written = []

    def write(item):
        if item == 2:
            raise ValueError("page 2 refused")
        written.append(item)

    with pytest.raises(ValueError, match="page 2 refused"), WriteBehind(write, threaded=True) as writer:
        for item in range(50):
            writer.submit(item)
            time.sleep(0.005)
    assert written == [0, 1]


def test_an_error_of_the_caller_still_writes_what_it_submitted():
    """A fetch error or Ctrl-C in the caller: the pages already mapped are written, as inline they would have been
    before the caller got that far."""
    written = []

    def write(item):
        time.sleep(0.02)
        written.append(item)

    with pytest.raises(KeyError), WriteBehind(write, threaded=True) as writer:
        for item in range(3):
            writer.submit(item)
        raise KeyError("the next page could not be fetched")
    assert written == [0, 1, 2]


def test_the_connection_belongs_to_the_writer_while_it_runs():
    seen = []
    with WriteBehind(lambda item: seen.append(Asset.objects.count()), threaded=True) as writer:
        writer.submit(1)
        with pytest.raises(RuntimeError, match="belongs to the write-behind thread"):
            Asset.objects.count()
    assert seen == [0]
    assert Asset.objects.count() == 0  # the caller has it back


def test_inline_write_behind_writes_at_once_and_idles_in_the_caller():
    written, idled = [], []
    with WriteBehind(written.append, threaded=False, idle=lambda: idled.append(1)) as writer:
        writer.submit("page")
        assert written == ["page"]
        writer.idle()
    assert idled == [1]
