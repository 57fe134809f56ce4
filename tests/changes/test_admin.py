"""Outside draft a change is read-only everywhere (issue 10.7): the admin, the model and the database."""

import pytest
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection, transaction

from syncplane.changes import actions
from syncplane.changes.choices import ChangeState as S
from syncplane.changes.models import ChangeEvent, ChangeNotEditable, ChangeRequest

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-123")
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def form_data(change, **overrides):
    data = {
        "title": change.title, "description": change.description, "risk_score": change.risk_score,
        "planned_start_0": "2026-06-04", "planned_start_1": "20:00:00",
        "planned_end_0": "2026-06-04", "planned_end_1": "22:00:00",
        "external_system": change.external_system_id or "",
        **{f"{prefix}-{field}": value for prefix in ("events", "approvals")
           for field, value in (("TOTAL_FORMS", 0), ("INITIAL_FORMS", 0), ("MIN_NUM_FORMS", 0),
                                ("MAX_NUM_FORMS", 1000))},
    }
    data.update(overrides)
    return data


def test_the_admin_edits_a_draft_but_not_a_submitted_change(admin_client, draft, fake_system):
    change = draft(external_system=fake_system)
    url = f"/admin/changes/changerequest/{change.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200 and b'name="title"' in page.content
    response = admin_client.post(url, form_data(change, title="Rotate TLS certificates (edge)"))
    assert response.status_code == 302, response.content
    change.refresh_from_db()
    assert change.title == "Rotate TLS certificates (edge)"

    actions.submit(change)
    page = admin_client.get(url)
    assert page.status_code == 200  # still shown, read-only
    assert b'name="title"' not in page.content and b'name="risk_score"' not in page.content
    response = admin_client.post(url, form_data(change, title="Something else", risk_score=5))
    assert response.status_code == 403
    change.refresh_from_db()
    assert (change.title, change.risk_score) == ("Rotate TLS certificates (edge)", 45)
    assert admin_client.post(f"/admin/changes/changerequest/{change.pk}/delete/", {"post": "yes"}).status_code == 403
    assert ChangeRequest.objects.filter(pk=change.pk).exists()
    assert list(ChangeEvent.objects.filter(change=change).values_list("event_type", flat=True)) == [
        "change.submitted"
    ]


def test_the_model_refuses_to_edit_a_change_outside_draft(draft, fake_system):
    change = actions.submit(draft(), external_system=fake_system)
    for field, value in (("title", "x"), ("description", "x"), ("risk_score", 5), ("planned_start", None),
                         ("external_system", None)):
        loaded = ChangeRequest.objects.get(pk=change.pk)
        setattr(loaded, field, value)
        with pytest.raises(ChangeNotEditable, match=f"change {change.pk} is submitted: only a draft.*{field}"):
            loaded.save()
    loaded = ChangeRequest.objects.get(pk=change.pk)
    loaded.title = "x"
    with pytest.raises(ChangeNotEditable):
        loaded.save(update_fields=["title", "updated_at"])
    loaded = ChangeRequest.objects.get(pk=change.pk)
    loaded.state = S.DRAFT  # no way back to draft, which would open it to edits again
    with pytest.raises(ChangeNotEditable, match="back to draft"):
        loaded.save()
    # What the state machine writes outside draft still goes through.
    loaded = ChangeRequest.objects.get(pk=change.pk)
    loaded.submission_error = "the tool said no"
    loaded.save(update_fields=["submission_error", "updated_at"])
    actions.cancel(loaded)
    assert ChangeRequest.objects.get(pk=change.pk).state == S.CANCELLED


def test_an_in_memory_instance_is_refused_after_it_was_submitted_elsewhere(draft, fake_system):
    change = draft()
    actions.submit(ChangeRequest.objects.get(pk=change.pk), external_system=fake_system)
    change.refresh_from_db()
    change.title = "x"
    with pytest.raises(ChangeNotEditable):
        change.save()


def test_the_database_refuses_to_edit_a_change_outside_draft(draft, fake_system):
    editable = draft()
    ChangeRequest.objects.filter(pk=editable.pk).update(title="still a draft")  # a draft: fine
    change = actions.submit(draft(), external_system=fake_system)
    for sql, params in (
        ("UPDATE changes_changerequest SET title = %s WHERE id = %s", ["x", change.pk]),
        ("UPDATE changes_changerequest SET risk_score = 5 WHERE id = %s", [change.pk]),
        ("UPDATE changes_changerequest SET external_system_id = NULL WHERE id = %s", [change.pk]),
        ("UPDATE changes_changerequest SET state = 'draft' WHERE id = %s", [change.pk]),
    ):
        # A savepoint each: on PostgreSQL a refused statement aborts the surrounding transaction.
        with pytest.raises(DatabaseError, match="only a draft change can be edited"), transaction.atomic(), \
                connection.cursor() as cursor:
            cursor.execute(sql, params)
    # The state machine's own columns stay writable (external.py writes them in bulk).
    ChangeRequest.objects.filter(pk=change.pk).update(state=S.APPROVED, external_change_request_id="CHG1")
    assert ChangeRequest.objects.get(pk=change.pk).title == "Rotate TLS certificates"


def test_sqlite_replace_cannot_rewrite_a_submitted_change(draft, fake_system):
    if connection.vendor != "sqlite":
        pytest.skip("INSERT OR REPLACE is SQLite's")
    change = actions.submit(draft(), external_system=fake_system)
    with connection.cursor() as cursor:
        names = [c.name for c in connection.introspection.get_table_description(cursor, "changes_changerequest")]
    values = ", ".join("'rewritten'" if name == "title" else name for name in names)
    with pytest.raises(DatabaseError, match="only a draft change can be edited"), transaction.atomic(), \
            connection.cursor() as cursor:
        cursor.execute(f"INSERT OR REPLACE INTO changes_changerequest ({', '.join(names)}) "  # noqa: S608
                       f"SELECT {values} FROM changes_changerequest WHERE id = %s", [change.pk])
    assert ChangeRequest.objects.get(pk=change.pk).title == "Rotate TLS certificates"
