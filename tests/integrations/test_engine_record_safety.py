"""One bad vendor record never stops an integration, and a log's counters move only with the commit of their
page. Against the ServiceNow simulator over HTTP, on SQLite and PostgreSQL alike: SQLite stores NULs and
over-long text silently, so the checks must be the engine's own for these tests to hold on both."""

import pytest
from django.db import connection

from syncplane.integrations.choices import RecordStatus, RunStatus
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import SyncRecordOutcome, SyncState
from syncplane.inventory.models import AssetSource
from tests.integrations.assertions import assert_counters_match_outcomes

pytestmark = pytest.mark.django_db

RECORDS = 250


def sync(system, **kwargs):
    return assert_counters_match_outcomes(run_sync(start_sync(system, **kwargs).pk))


def refuse(table: str, when: str, event: str = "INSERT"):
    """A trigger that makes the database refuse the rows of `table` matching `when` (SQL on NEW), as a constraint
    would: IntegrityError on both databases. DDL inside the test's transaction: rolled back with it."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"CREATE TRIGGER test_refuse BEFORE {event} ON {table} WHEN {when} "
                           "BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END")
        else:
            cursor.execute("CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                           f"IF {when} THEN RAISE EXCEPTION 'refused by the test trigger' "
                           "USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$")
            cursor.execute(f"CREATE TRIGGER test_refuse BEFORE {event} ON {table} FOR EACH ROW "
                           "EXECUTE FUNCTION test_refuse()")


def test_a_nul_is_removed_and_an_overlong_value_fails_only_its_record(servicenow, simulator):
    sim = simulator.servicenow
    sim.inject_fault("malformed", indices=[3], malformation="nul_character")
    sim.inject_fault("malformed", indices=[7], malformation="overlong_value")  # a NUL in it too
    log = sync(servicenow)
    assert log.status == RunStatus.PARTIAL, log.error_summary
    assert (log.records_created, log.records_failed) == (RECORDS - 1, 1)
    failed = SyncRecordOutcome.objects.get(sync_log=log, status=RecordStatus.FAILED)
    assert failed.external_id == sim.sys_id_for(7)
    assert "serial_number is 302 characters long, more than the 255 its column holds" in failed.reason
    assert failed.raw_payload["serial_number"]["value"].startswith("SN0123")  # the evidence, without its NUL
    assert not AssetSource.objects.filter(external_id=sim.sys_id_for(7)).exists()
    # The NUL is dropped from the values and from the raw payload; the record is kept.
    kept = AssetSource.objects.get(external_id=sim.sys_id_for(3))
    assert (kept.attributes["name"], kept.attributes["os_version"]) == (sim.record(3)["name"], "10.0.19045")
    assert kept.raw_payload["os_version"]["value"] == "10.0.19045"


def test_a_record_the_database_refuses_fails_alone_and_the_page_is_written(servicenow, simulator):
    refused = simulator.servicenow.sys_id_for(5)
    refuse("inventory_assetsource", f"NEW.external_id = '{refused}'")
    log = sync(servicenow)
    assert log.status == RunStatus.PARTIAL, log.error_summary
    assert (log.records_created, log.records_failed) == (RECORDS - 1, 1)
    failed = SyncRecordOutcome.objects.get(sync_log=log, status=RecordStatus.FAILED)
    assert failed.external_id == refused
    assert failed.reason.startswith("the database refused the record: IntegrityError")
    assert "refused by the test trigger" in failed.reason
    assert failed.raw_payload["sys_id"]["value"] == refused
    assert AssetSource.objects.filter(external_system=servicenow).count() == RECORDS - 1
    # Once the database takes it again, the next run brings it in.
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER test_refuse" if connection.vendor == "sqlite"
                       else "DROP TRIGGER test_refuse ON inventory_assetsource")
    again = sync(servicenow)
    assert (again.status, again.records_created, again.records_unchanged) == (RunStatus.SUCCESS, 1, RECORDS - 1)


def test_a_rolled_back_page_takes_its_counts_back(servicenow):
    # The checkpoint of the first page cannot be saved: its transaction, writes and outcomes are rolled back.
    refuse("integrations_syncstate", "NEW.checkpoint IS NOT NULL", event="UPDATE")
    log = sync(servicenow)
    assert log.status == RunStatus.FAILED
    assert (log.pages, log.records_read, log.records_created, log.records_failed) == (0, 0, 0, 0)
    assert not AssetSource.objects.exists()
    assert SyncState.objects.get(external_system=servicenow).checkpoint is None
