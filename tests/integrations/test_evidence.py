"""Evidence that cannot be rewritten below the API (issue 10.6): the keyed chain, `verify-evidence`, REPLACE on
SQLite, TRUNCATE on PostgreSQL and `flush`."""

import hashlib
import hmac
import io
import logging

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.test import override_settings

from syncplane.changes import actions
from syncplane.changes import evidence as change_evidence
from syncplane.changes.events import record_event
from syncplane.changes.models import ApprovalRecord, ChangeEvent, ChangeRequest
from syncplane.integrations import evidence
from syncplane.integrations.choices import RunStatus
from syncplane.integrations.engine import _finish, run_sync, start_sync
from syncplane.integrations.evidence import verify_chain
from syncplane.integrations.models import IntegrationSyncLog, SyncRecordOutcome
from tests.conftest import require_service

KEY_A = "evidence-key-a-0123456789-abcdefghijklmnopqrstuvwxyz"
KEY_B = "evidence-key-b-0123456789-abcdefghijklmnopqrstuvwxyz"


def finished_log(system, status=RunStatus.SUCCESS, summary=""):
    """A log closed by the engine's own _finish (chain link, key, head log line) without a whole sync."""
    log = start_sync(system)
    _finish(log, status, "", summary)
    return IntegrationSyncLog.objects.get(pk=log.pk)


def rewrite(log_id, **columns):
    """What the database owner can do: lift the triggers, write, put them back."""
    evidence.remove_triggers(connection)
    try:
        sets = ", ".join(f"{column} = %s" for column in columns)
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {evidence.LOG} SET {sets} WHERE id = %s", [*columns.values(), log_id])  # noqa: S608
    finally:
        evidence.install_triggers(connection)


def recompute_chain(system, sign):
    """Rewrite every link of a chain in order, as an attacker would after changing a log: `sign(log)` gives
    (key id, hash) for each link."""
    previous = ""
    for log in IntegrationSyncLog.objects.finished().filter(external_system=system).order_by("finished_at", "id"):
        log.previous_hash = previous
        key_id, digest = sign(log)
        rewrite(log.pk, previous_hash=previous, hash_key_id=key_id, hash=digest)
        previous = digest


def unkeyed(log):
    return evidence.UNKEYED, evidence.link_digest(log, evidence.UNKEYED)


def verify(**kwargs):
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_evidence", stdout=out, stderr=err, **kwargs)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_a_sync_signs_its_link_with_the_first_evidence_key(servicenow, django_capture_on_commit_callbacks, caplog):
    caplog.set_level(logging.INFO, logger="syncplane.evidence")
    with django_capture_on_commit_callbacks(execute=True):
        log = run_sync(start_sync(servicenow).pk)
    key = evidence.evidence_keys()[0]
    assert log.status == RunStatus.SUCCESS
    assert log.hash_key_id == key.id
    payload = evidence._payload(log)
    assert log.hash == hmac.new(key.secret, payload, hashlib.sha256).hexdigest()
    assert log.hash != hashlib.sha256(payload).hexdigest()  # the unkeyed hash anyone could recompute
    assert verify_chain(servicenow.pk) is None
    # The chain head goes to the logs once committed: the copy outside the database.
    head = [r for r in caplog.records if r.getMessage() == "evidence.chain_head"]
    assert [(r.sync_log_id, r.hash, r.hash_key_id) for r in head] == [(log.pk, log.hash, key.id)]


@pytest.mark.django_db
def test_a_chain_recomputed_without_the_key_does_not_verify(servicenow):
    first, second = finished_log(servicenow), finished_log(servicenow)
    assert second.previous_hash == first.hash
    assert verify_chain(servicenow.pk) is None

    rewrite(first.pk, records_created=999)  # changed, hash left as it was
    report = evidence.verify_sync_logs(servicenow.pk)
    assert report.broken_id == first.pk
    assert "does not match its content" in report.broken

    # The whole chain recomputed with a plain SHA-256: what verified before keys.
    recompute_chain(servicenow, unkeyed)
    report = evidence.verify_sync_logs(servicenow.pk)
    assert report.broken_id == first.pk
    assert "no sealed pre-key chain head" in report.broken

    # Or with a key of the attacker's own, under the server key's id.
    def forged(log):
        return first.hash_key_id, hmac.new(b"not the server key", evidence._payload(log), hashlib.sha256).hexdigest()

    recompute_chain(servicenow, forged)
    assert evidence.verify_sync_logs(servicenow.pk).broken_id == first.pk


@pytest.mark.django_db
def test_a_removed_log_breaks_the_link_of_the_next(servicenow):
    first, second, third = (finished_log(servicenow) for _ in range(3))
    rewrite(second.pk, status=RunStatus.QUEUED)  # out of the chain, as if deleted
    report = evidence.verify_sync_logs(servicenow.pk)
    assert report.broken_id == third.pk
    assert f"sync log {first.pk}" in report.broken and "removed, inserted or reordered" in report.broken


@pytest.mark.django_db
def test_evidence_keys_rotate(servicenow):
    with override_settings(SYNCPLANE_EVIDENCE_KEYS=[KEY_A]):
        old = finished_log(servicenow)
    with override_settings(SYNCPLANE_EVIDENCE_KEYS=[KEY_B, KEY_A]):
        new = finished_log(servicenow)
        assert new.hash_key_id != old.hash_key_id
        assert new.hash_key_id == evidence.evidence_keys()[0].id
        assert verify_chain(servicenow.pk) is None
    with override_settings(SYNCPLANE_EVIDENCE_KEYS=[KEY_B]):  # key A dropped too early
        report = evidence.verify_sync_logs(servicenow.pk)
        assert report.broken_id == old.pk
        assert f"evidence key {old.hash_key_id}, which is not among the server's keys" in report.broken
    assert all(k.secret.hex() not in repr(k) for k in evidence.evidence_keys())  # never the secret in a repr


@pytest.mark.django_db
def test_evidence_keys_from_secret_key_and_its_fallbacks(servicenow):
    with override_settings(SYNCPLANE_EVIDENCE_KEYS=[], SECRET_KEY=KEY_A, SECRET_KEY_FALLBACKS=[]):
        finished_log(servicenow)
    with override_settings(SYNCPLANE_EVIDENCE_KEYS=[], SECRET_KEY=KEY_B, SECRET_KEY_FALLBACKS=[]):
        assert "not among the server's keys" in evidence.verify_sync_logs(servicenow.pk).broken
    with override_settings(SYNCPLANE_EVIDENCE_KEYS=[], SECRET_KEY=KEY_B, SECRET_KEY_FALLBACKS=[KEY_A]):
        assert evidence.verify_sync_logs(servicenow.pk).broken is None
        assert finished_log(servicenow).hash_key_id == evidence.evidence_keys()[0].id  # the new SECRET_KEY signs
        assert evidence.verify_sync_logs(servicenow.pk).broken is None


@pytest.mark.django_db
def test_unkeyed_chains_from_before_keys_verify_up_to_their_sealed_head(servicenow):
    old = [finished_log(servicenow) for _ in range(3)]
    recompute_chain(servicenow, unkeyed)  # what the code before keys wrote
    assert evidence.verify_sync_logs(servicenow.pk).broken_id == old[0].pk  # unsealed: not trusted

    assert evidence.seal_unkeyed_chains(connection) == 1  # what migration 0009 does
    head = IntegrationSyncLog.objects.get(pk=old[-1].pk)
    assert head.legacy_seal and head.hash_key_id == evidence.UNKEYED
    assert verify_chain(servicenow.pk) is None
    new = finished_log(servicenow)  # the chain goes on, keyed
    assert new.previous_hash == head.hash and new.hash_key_id
    assert verify_chain(servicenow.pk) is None

    # A keyed link downgraded to unkeyed after the sealed head is refused.
    rewrite(new.pk, hash_key_id="", hash=unkeyed(new)[1])
    report = evidence.verify_sync_logs(servicenow.pk)
    assert report.broken_id == new.pk and "after the sealed pre-key head" in report.broken

    # A seal does not travel: moved to another log, it no longer holds.
    rewrite(new.pk, hash_key_id=new.hash_key_id, hash=new.hash)
    assert verify_chain(servicenow.pk) is None
    rewrite(head.pk, legacy_seal="")
    rewrite(old[1].pk, legacy_seal=head.legacy_seal)
    assert "seal of the pre-key chain head does not match" in evidence.verify_sync_logs(servicenow.pk).broken


@pytest.mark.django_db
def test_verify_evidence_names_the_first_broken_link_and_exits_1(servicenow):
    logs = [finished_log(servicenow) for _ in range(3)]
    change = ChangeRequest.objects.create(title="Patch the edge routers")
    record_event(change, event_type="change.note", source="user", detail="first")
    actions.cancel(change)
    code, out, err = verify()
    assert code == 0, err
    assert "sync logs: " in out and "change events: " in out and "evidence intact" in out

    rewrite(logs[1].pk, error_summary="nothing to see")
    change_evidence.remove_triggers(connection)
    ChangeEvent.objects.filter(change=change, sequence=1).delete()
    change_evidence.install_triggers(connection)
    code, out, err = verify()
    assert code == 1
    assert f"BROKEN integration {servicenow.pk} ({servicenow.name}): sync log {logs[1].pk}:" in err
    assert "does not match its content" in err
    assert f"BROKEN change {change.pk}: event " in err and "number 2 where 1 was expected" in err


def test_syncplane_verify_evidence_is_the_command_name(monkeypatch):
    import sys

    from syncplane import __main__

    called = []
    monkeypatch.setattr(sys, "argv", ["syncplane", "verify-evidence"])
    monkeypatch.setattr("django.core.management.execute_from_command_line", lambda argv: called.append(argv[1]))
    __main__.main()
    assert called == ["verify_evidence"]


# --- below the ORM -----------------------------------------------------------------------------------------


def columns_of(table):
    with connection.cursor() as cursor:
        return [c.name for c in connection.introspection.get_table_description(cursor, table)]


def replace_statement(table, column, value):
    """INSERT OR REPLACE of a copy of row `id` with one column changed: SQLite deletes the old row first."""
    names = columns_of(table)
    values = ", ".join("%s" if name == column else name for name in names)
    return f"INSERT OR REPLACE INTO {table} ({', '.join(names)}) SELECT {values} FROM {table} WHERE id = %s", [value]  # noqa: S608


def refused(sql, params=()):
    # A savepoint each: on PostgreSQL a refused statement aborts the surrounding transaction.
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.mark.django_db
def test_sqlite_replace_cannot_rewrite_a_finished_log_or_its_outcomes(servicenow):
    if connection.vendor != "sqlite":
        pytest.skip("INSERT OR REPLACE is SQLite's")
    log = run_sync(start_sync(servicenow).pk)
    running = start_sync(servicenow)
    outcome = SyncRecordOutcome.objects.filter(sync_log=log).first()

    sql, params = replace_statement(evidence.LOG, "records_created", 0)
    refused(sql, [*params, log.pk])
    refused(sql.replace("INSERT OR REPLACE", "REPLACE"), [*params, log.pk])
    refused(f"UPDATE OR REPLACE {evidence.LOG} SET id = %s WHERE id = %s", [log.pk, running.pk])  # noqa: S608
    sql, params = replace_statement(evidence.OUTCOME, "reason", "rewritten")
    refused(sql, [*params, outcome.pk])
    refused(f"UPDATE OR REPLACE {evidence.OUTCOME} SET id = %s WHERE id = %s",  # noqa: S608
            [outcome.pk, outcome.pk + 1])

    assert IntegrationSyncLog.objects.get(pk=log.pk).records_created == log.records_created
    assert IntegrationSyncLog.objects.filter(pk=running.pk).exists()
    assert verify_chain(servicenow.pk) is None


@pytest.mark.django_db
def test_sqlite_replace_cannot_rewrite_change_evidence():
    if connection.vendor != "sqlite":
        pytest.skip("INSERT OR REPLACE is SQLite's")
    change = actions.cancel(ChangeRequest.objects.create(title="Patch the edge routers"))
    event = ChangeEvent.objects.get(change=change)
    sql, params = replace_statement("changes_changeevent", "detail", "rewritten")
    refused(sql, [*params, event.pk])
    # The same (change, sequence) under a new id replaces too, by the unique constraint.
    sql, params = replace_statement("changes_changeevent", "id", event.pk + 1000)
    refused(sql, [*params, event.pk])
    assert list(ChangeEvent.objects.filter(change=change).values_list("pk", "detail")) == [(event.pk, event.detail)]
    approval = ApprovalRecord.objects.create(change=change, external_id="a1", decision="approved", source="poll")
    sql, params = replace_statement("changes_approvalrecord", "decision", "rejected")
    refused(sql, [*params, approval.pk])
    sql, params = replace_statement("changes_approvalrecord", "id", approval.pk + 1000)
    refused(sql, [*params, approval.pk])
    assert ApprovalRecord.objects.get(change=change).decision == "approved"


# --- flush and TRUNCATE ------------------------------------------------------------------------------------


@pytest.mark.django_db
@override_settings(SYNCPLANE_ALLOW_EVIDENCE_FLUSH=False)
def test_flush_is_refused_while_evidence_exists(servicenow):
    log = finished_log(servicenow)
    with pytest.raises(CommandError, match=r"flush refused: the database holds evidence \(" + evidence.LOG):
        call_command("flush", interactive=False, verbosity=0)
    assert IntegrationSyncLog.objects.filter(pk=log.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_the_test_settings_may_flush_and_the_guards_come_back(servicenow):
    finished_log(servicenow)
    call_command("flush", interactive=False, verbosity=0)  # what a transactional test's teardown does
    assert not IntegrationSyncLog.objects.exists()
    log = finished_log(servicenow.__class__.objects.create(
        name="After the flush", system_type=servicenow.system_type, category=servicenow.category,
        base_url=servicenow.base_url, auth_type="none",
    ))
    refused(f"DELETE FROM {evidence.LOG} WHERE id = %s", [log.pk])  # noqa: S608


@pytest.mark.services
@pytest.mark.django_db(transaction=True)  # committed rows: TRUNCATE refuses pending deferred FK checks otherwise
def test_postgresql_refuses_truncate_of_evidence(servicenow):
    require_service("PostgreSQL", connection.vendor == "postgresql", "set DATABASE_URL=postgres://...")
    log = run_sync(start_sync(servicenow).pk)
    assert SyncRecordOutcome.objects.filter(sync_log=log).exists()
    change = actions.cancel(ChangeRequest.objects.create(title="Patch the edge routers"))
    for table in (evidence.LOG, evidence.OUTCOME, "changes_changeevent", "integrations_externalsystem"):
        with pytest.raises(DatabaseError, match="holds evidence: TRUNCATE refused"), transaction.atomic(), \
                connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {table} CASCADE")
    assert IntegrationSyncLog.objects.filter(pk=log.pk).exists()
    assert ChangeEvent.objects.filter(change=change).exists()
