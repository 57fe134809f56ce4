"""A finding's history is evidence: the model and the database refuse to change or delete it (SQLite by default;
PostgreSQL when the suite runs with DATABASE_URL=postgres://..., and the PostgreSQL-only TRUNCATE guard)."""

import pytest
from django.db import DatabaseError, connection, transaction

from syncplane.findings.evidence import TABLE
from syncplane.findings.ingest import ingest_scan
from syncplane.findings.models import FindingEvent, ImmutableHistory
from tests.conftest import require_service
from tests.findings.factories import finding, summary

pytestmark = pytest.mark.django_db


@pytest.fixture
def event():
    ingest_scan(tool="trivy", records=[finding(), summary()])
    return FindingEvent.objects.get()


def refused(sql: str, params=()):
    with pytest.raises(DatabaseError, match="finding history is immutable"), transaction.atomic(), \
            connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_the_model_refuses_to_change_or_delete_history(event):
    event.reason = "rewritten"
    with pytest.raises(ImmutableHistory):
        event.save()
    with pytest.raises(ImmutableHistory):
        event.delete()


def test_the_database_refuses_update_and_delete(event):
    refused(f"UPDATE {TABLE} SET reason = 'rewritten' WHERE id = %s", [event.pk])  # noqa: S608
    refused(f"DELETE FROM {TABLE} WHERE id = %s", [event.pk])  # noqa: S608
    with pytest.raises(DatabaseError), transaction.atomic():
        FindingEvent.objects.filter(pk=event.pk).update(reason="rewritten")
    assert FindingEvent.objects.get(pk=event.pk).reason == "reported"


def test_sqlite_refuses_insert_or_replace(event):
    if connection.vendor != "sqlite":
        pytest.skip("INSERT OR REPLACE is SQLite's")
    refused(f"INSERT OR REPLACE INTO {TABLE} (id, finding_id, from_state, to_state, actor, reason, "  # noqa: S608
            "correlation_id, created_at) SELECT id, finding_id, '', 'fixed', 'x', 'x', '', created_at "
            f"FROM {TABLE} WHERE id = %s", [event.pk])


@pytest.mark.services
@pytest.mark.django_db(transaction=True)  # committed rows: TRUNCATE refuses pending deferred FK checks otherwise
def test_postgresql_refuses_update_delete_and_truncate_of_history(event):
    require_service("PostgreSQL", connection.vendor == "postgresql", "set DATABASE_URL=postgres://...")
    refused(f"UPDATE {TABLE} SET to_state = 'fixed' WHERE id = %s", [event.pk])  # noqa: S608
    refused(f"DELETE FROM {TABLE}")  # noqa: S608
    with pytest.raises(DatabaseError, match="holds evidence: TRUNCATE refused"), transaction.atomic(), \
            connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TABLE} CASCADE")
