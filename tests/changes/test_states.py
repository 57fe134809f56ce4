import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from syncplane.changes import actions
from syncplane.changes.choices import ChangeState as S
from syncplane.changes.models import ApprovalRecord, ChangeEvent, ImmutableEvidence
from syncplane.changes.states import FINAL_STATES, TRANSITIONS, IllegalTransition, check_transition, path_to


def test_the_table_is_the_design():
    assert TRANSITIONS[S.DRAFT] == {S.SUBMITTED, S.CANCELLED}
    assert TRANSITIONS[S.SUBMITTED] == {S.ASSESS, S.APPROVED, S.REJECTED, S.CANCELLED}
    assert TRANSITIONS[S.ASSESS] == {S.APPROVED, S.REJECTED, S.CANCELLED}
    assert TRANSITIONS[S.APPROVED] == {S.SCHEDULED, S.IMPLEMENTING, S.CANCELLED}
    assert TRANSITIONS[S.SCHEDULED] == {S.IMPLEMENTING, S.CANCELLED}
    assert TRANSITIONS[S.IMPLEMENTING] == {S.COMPLETED, S.CANCELLED}
    assert FINAL_STATES == {S.REJECTED, S.COMPLETED, S.CANCELLED}
    assert set(TRANSITIONS) == set(S.values)


def test_an_illegal_transition_names_both_states_and_the_allowed_ones():
    with pytest.raises(IllegalTransition) as caught:
        check_transition(S.DRAFT, S.APPROVED)
    assert str(caught.value) == "a change cannot go from draft to approved; allowed from draft: cancelled, submitted"
    with pytest.raises(IllegalTransition, match="completed is final"):
        check_transition(S.COMPLETED, S.CANCELLED)


@pytest.mark.parametrize(("current", "target", "path"), [
    (S.SUBMITTED, S.COMPLETED, [S.APPROVED, S.IMPLEMENTING, S.COMPLETED]),  # a poll missed three steps
    (S.SUBMITTED, S.ASSESS, [S.ASSESS]),
    (S.ASSESS, S.SCHEDULED, [S.APPROVED, S.SCHEDULED]),
    (S.SUBMITTED, S.REJECTED, [S.REJECTED]),
    (S.ASSESS, S.SUBMITTED, []),  # behind: an out-of-order notification
    (S.APPROVED, S.APPROVED, []),  # the same: a duplicate
    (S.APPROVED, S.REJECTED, []),  # a branch not taken
    (S.COMPLETED, S.CANCELLED, []),  # final
])
def test_path_to_walks_forward_only(current, target, path):
    assert path_to(current, target) == path


@pytest.mark.django_db
def test_model_refuses_an_illegal_step(fake_system, draft):
    change = draft()
    with pytest.raises(IllegalTransition, match="from cancelled to cancelled"):
        actions.cancel(actions.cancel(change))  # cancelled is final: the second cancel is refused
    change.refresh_from_db()
    assert change.state == S.CANCELLED
    with pytest.raises(IllegalTransition, match="cannot go from cancelled to submitted"):
        actions.submit(change, external_system=fake_system)


@pytest.mark.django_db
def test_events_are_immutable_in_the_model_and_in_the_database(draft, fake_system):
    change = actions.cancel(draft(), reason="not needed")
    event = ChangeEvent.objects.get(change=change)
    event.detail = "rewritten"
    with pytest.raises(ImmutableEvidence):
        event.save()
    with pytest.raises(ImmutableEvidence):
        event.delete()
    ApprovalRecord.objects.create(change=change, external_id="a1", decision="approved", source="poll")
    for statement in ("UPDATE changes_changeevent SET detail = 'x'", "DELETE FROM changes_changeevent",
                      "UPDATE changes_approvalrecord SET comment = 'x'", "DELETE FROM changes_approvalrecord"):
        # A savepoint each: on PostgreSQL a refused statement aborts the surrounding transaction.
        with pytest.raises(DatabaseError, match="immutable"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    assert ChangeEvent.objects.get(change=change).detail == "not needed"
