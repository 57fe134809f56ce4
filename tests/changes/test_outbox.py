"""The outbox: exactly one external change, retries of transient failures, no retry of refusals."""

from datetime import timedelta

import pytest
from django.utils import timezone

from syncplane.changes import actions, delivery
from syncplane.changes.choices import ChangeState
from syncplane.integrations import outbox
from syncplane.integrations.errors import PermanentError, TransientError
from syncplane.integrations.models import OutboxKind, OutboxMessage, OutboxStatus
from syncplane.integrations.tasks import deliver_due_outbox_messages


def submit(change, system, capture):
    with capture(execute=True):
        actions.submit(change, external_system=system)
    change.refresh_from_db()
    return OutboxMessage.objects.get(kind=OutboxKind.CHANGE_CREATE, subject_id=str(change.pk))


def make_due(message):
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_a_refusal_leaves_the_change_submitted_with_the_reason_and_is_not_retried(
        fake_system, fake_itsm, draft, django_capture_on_commit_callbacks):
    fake_itsm.errors["create_change"] = [
        PermanentError("HTTP 400 from Fake ITSM: Data Policy Exception: Assignment group is mandatory",
                       status_code=400)
    ]
    change = draft()
    message = submit(change, fake_system, django_capture_on_commit_callbacks)
    message.refresh_from_db()
    assert change.state == ChangeState.SUBMITTED
    assert "Assignment group is mandatory" in change.submission_error
    assert (message.status, message.attempts) == (OutboxStatus.FAILED, 1)
    assert "Assignment group is mandatory" in message.last_error
    make_due(message)
    assert deliver_due_outbox_messages() == 0  # failed is final: no retry storm
    assert fake_itsm.calls.count("create_change") == 1
    assert change.events.last().event_type == "change.submission_failed"


@pytest.mark.parametrize("error", [
    TransientError("HTTP 429 from Fake ITSM", status_code=429, retry_after=90),
    TransientError("HTTP 502 from Fake ITSM", status_code=502),
])
def test_transient_failures_are_retried_with_backoff_then_delivered_once(
        error, fake_system, fake_itsm, draft, django_capture_on_commit_callbacks):
    fake_itsm.errors["create_change"] = [error]
    change = draft()
    before = timezone.now()
    message = submit(change, fake_system, django_capture_on_commit_callbacks)
    assert (message.status, message.attempts) == (OutboxStatus.PENDING, 1)
    wait = (message.next_attempt_at - before).total_seconds()
    expected = 90 if error.retry_after else outbox.RETRY_DELAYS[0]  # Retry-After wins when longer
    assert expected <= wait < expected + 5
    assert deliver_due_outbox_messages() == 0  # not due yet
    make_due(message)
    assert deliver_due_outbox_messages() == 1
    message.refresh_from_db()
    change.refresh_from_db()
    assert (message.status, message.attempts) == (OutboxStatus.DELIVERED, 2)
    assert change.external_change_request_id == "FAKE-1"
    assert change.submission_error == ""
    assert len(fake_itsm.store) == 1


def test_transient_failures_give_up_after_max_attempts_visibly(
        fake_system, fake_itsm, draft, django_capture_on_commit_callbacks):
    fake_itsm.errors["create_change"] = [TransientError("HTTP 503", status_code=503)] * outbox.MAX_ATTEMPTS
    change = draft()
    message = submit(change, fake_system, django_capture_on_commit_callbacks)
    for _ in range(outbox.MAX_ATTEMPTS - 1):
        make_due(message)
        deliver_due_outbox_messages()
    message.refresh_from_db()
    change.refresh_from_db()
    assert (message.status, message.attempts) == (OutboxStatus.FAILED, outbox.MAX_ATTEMPTS)
    assert change.state == ChangeState.SUBMITTED
    assert change.submission_error.startswith(f"gave up after {outbox.MAX_ATTEMPTS} attempts")
    assert fake_itsm.store == {}


def test_a_crash_after_the_create_call_does_not_create_twice(
        fake_system, fake_itsm, draft, monkeypatch, django_capture_on_commit_callbacks):
    """The worker dies (here: the save raises) after the ITSM tool created the change: the next delivery
    finds it by correlation id instead of creating a second one."""
    real_adopt = delivery.adopt
    crashes = [RuntimeError("worker killed")]

    def adopt_once(*args, **kwargs):
        if crashes:
            raise crashes.pop()
        return real_adopt(*args, **kwargs)

    monkeypatch.setattr(delivery, "adopt", adopt_once)
    change = draft()
    message = submit(change, fake_system, django_capture_on_commit_callbacks)
    assert change.external_key == ""  # the attempt was rolled back
    message.refresh_from_db()
    assert (message.status, message.attempts) == (OutboxStatus.PENDING, 1)
    assert "internal error (RuntimeError)" in message.last_error
    make_due(message)
    deliver_due_outbox_messages()
    change.refresh_from_db()
    assert change.external_key == "ext-1"
    assert len(fake_itsm.store) == 1
    assert fake_itsm.calls == ["find_change", "create_change", "find_change"]
    assert "found by correlation id" in change.events.get(event_type="change.delivered").detail


def test_a_duplicate_delivery_sends_nothing(fake_system, fake_itsm, draft, django_capture_on_commit_callbacks):
    change = draft()
    message = submit(change, fake_system, django_capture_on_commit_callbacks)
    assert outbox.deliver(message.pk) == "skipped"
    # Even a pending copy of the message finds the external key already stored.
    OutboxMessage.objects.filter(pk=message.pk).update(status=OutboxStatus.PENDING)
    assert outbox.deliver(message.pk) == OutboxStatus.DELIVERED
    assert fake_itsm.calls == ["find_change", "create_change"]


def test_cancel_before_the_create_left_cancels_locally(fake_system, fake_itsm, draft):
    change = draft()
    actions.submit(change, external_system=fake_system)  # no on_commit run: the worker never got it
    actions.cancel(change, reason="not needed after all")
    cancel = OutboxMessage.objects.get(kind=OutboxKind.CHANGE_CANCEL)
    assert outbox.deliver(cancel.pk) == OutboxStatus.DELIVERED
    create = OutboxMessage.objects.get(kind=OutboxKind.CHANGE_CREATE)
    assert create.status == OutboxStatus.FAILED
    assert "cancelled in Syncplane" in create.last_error
    assert outbox.deliver(create.pk) == "skipped"
    assert fake_itsm.calls == []
    assert fake_itsm.store == {}


def test_a_stuck_message_is_picked_up_by_the_beat_job(fake_system, fake_itsm, draft):
    change = draft()
    actions.submit(change, external_system=fake_system)  # the on_commit task was lost with its worker
    assert deliver_due_outbox_messages() == 0  # within the grace period the first task is still expected
    make_due(OutboxMessage.objects.get())
    assert deliver_due_outbox_messages() == 1
    change.refresh_from_db()
    assert change.external_change_request_id == "FAKE-1"


def test_a_worker_killed_mid_delivery_holds_the_message_until_its_lease_expires(
        fake_system, fake_itsm, draft, monkeypatch):
    """The worker died while the ITSM tool was creating the change: its lease keeps the beat job (and any
    other worker) off the message; once the lease has expired, the next delivery finds the change the dead
    one created instead of creating a second one."""
    change = draft()
    actions.submit(change, external_system=fake_system)
    message = OutboxMessage.objects.get()
    assert outbox.claim(message.pk) is not None  # the worker took the message ...
    from syncplane.integrations.registry import build_connector

    build_connector(fake_system).create_change(delivery.draft_of(change))  # ... the tool created it; the worker died
    make_due(message)
    assert outbox.deliver(message.pk) == "skipped"  # a duplicate task while the lease holds
    assert deliver_due_outbox_messages() == 0
    OutboxMessage.objects.filter(pk=message.pk).update(leased_until=timezone.now() - timedelta(seconds=1))
    assert deliver_due_outbox_messages() == 1
    change.refresh_from_db()
    message.refresh_from_db()
    assert (message.status, message.attempts) == (OutboxStatus.DELIVERED, 2)
    assert len(fake_itsm.store) == 1
    assert "found by correlation id" in change.events.get(event_type="change.delivered").detail


def test_a_cancel_waits_for_a_create_that_is_being_sent(fake_system, fake_itsm, draft):
    change = draft()
    actions.submit(change, external_system=fake_system)
    create = OutboxMessage.objects.get(kind=OutboxKind.CHANGE_CREATE)
    outbox.claim(create.pk)  # a worker is sending the create right now
    actions.cancel(change, reason="not needed")
    cancel = OutboxMessage.objects.get(kind=OutboxKind.CHANGE_CANCEL)
    assert outbox.deliver(cancel.pk) == OutboxStatus.PENDING  # deferred, not failed, and not counted
    cancel.refresh_from_db()
    assert cancel.attempts == 0 and cancel.next_attempt_at > timezone.now()
    assert fake_itsm.calls == []
    # The create finishes (its lease is given back by a normal delivery); then the cancel goes out.
    OutboxMessage.objects.filter(pk=create.pk).update(leased_until=None)
    assert outbox.deliver(create.pk) == OutboxStatus.DELIVERED
    assert outbox.deliver(cancel.pk) == OutboxStatus.DELIVERED
    assert fake_itsm.calls == ["find_change", "create_change", "cancel_change"]
