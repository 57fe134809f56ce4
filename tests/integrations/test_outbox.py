"""The generic outbox, with a message kind of its own (no change, no ITSM tool): claim and lease, retries with
backoff and Retry-After, the dead letter, a dead worker's lease taken over, deferral, crashes."""

from datetime import timedelta

import pytest
from django.utils import timezone

from syncplane.integrations import outbox, registry
from syncplane.integrations.base import Connector
from syncplane.integrations.errors import PermanentError, TransientError
from syncplane.integrations.models import ExternalSystem, OutboxMessage, OutboxStatus
from syncplane.integrations.tasks import deliver_due_outbox_messages

KIND = "test.ping"


class PingConnector(Connector):
    system_type = "test_ping"
    category = "monitoring"
    display_name = "Ping sink"
    auth_types = ("none",)
    closed = 0

    def close(self):
        type(self).closed += 1


class PingHandler:
    """Sends a ping per message. `outcomes` holds what the next sends raise; `sent` the attempts seen."""

    def __init__(self):
        self.outcomes: list[Exception] = []
        self.sent: list[int] = []
        self.delivered: list[str] = []
        self.dead: list[str] = []

    def send(self, message, connector):
        assert isinstance(connector, PingConnector)
        self.sent.append(message.attempts)
        if self.outcomes:
            raise self.outcomes.pop(0)
        return lambda: self.delivered.append(message.subject_id)

    def dead_letter(self, message, reason):
        assert message.status == OutboxStatus.PENDING  # called before the message is marked failed
        self.dead.append(reason)


@pytest.fixture
def handler(monkeypatch):
    monkeypatch.setattr(outbox, "_handlers", dict(outbox._handlers))
    monkeypatch.setitem(registry._connectors, PingConnector.system_type, PingConnector)
    monkeypatch.setattr(PingConnector, "closed", 0)
    ping = PingHandler()
    outbox.register_handler(KIND, ping)
    return ping


@pytest.fixture
def message(db, handler):
    system = ExternalSystem.objects.create(name="Ping sink", system_type=PingConnector.system_type,
                                           category="monitoring", base_url="https://ping.example", auth_type="none")
    return OutboxMessage.objects.create(kind=KIND, external_system=system, subject_type="ping", subject_id="7",
                                        idempotency_key="ping-7")


def make_due(message):
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def reload(message):
    message.refresh_from_db()
    return message


def test_a_delivery_holds_a_lease_and_acts_once(handler, message):
    claimed = outbox.claim(message.pk)
    assert claimed is not None and claimed.attempts == 1
    assert claimed.leased_until > timezone.now() + timedelta(seconds=outbox.LEASE_SECONDS - 5)
    assert outbox.claim(message.pk) is None  # a second worker moves on
    assert outbox.deliver(message.pk) == outbox.SKIPPED
    OutboxMessage.objects.filter(pk=message.pk).update(leased_until=None)
    assert outbox.deliver(message.pk) == OutboxStatus.DELIVERED
    assert outbox.deliver(message.pk) == outbox.SKIPPED  # delivered is final
    message = reload(message)
    assert (message.status, message.attempts, message.leased_until) == (OutboxStatus.DELIVERED, 2, None)
    assert message.delivered_at is not None
    assert handler.delivered == ["7"] and PingConnector.closed == 1


@pytest.mark.parametrize(("retry_after", "expected"), [
    (None, outbox.RETRY_DELAYS[0]),  # the backoff
    (10, outbox.RETRY_DELAYS[0]),  # a shorter Retry-After does not shorten the backoff
    (90, 90),  # a longer one wins
    (10 * 3600, outbox.MAX_RETRY_AFTER),  # within reason
])
def test_a_transient_failure_is_retried_when_due_honouring_retry_after(handler, message, retry_after, expected):
    handler.outcomes = [TransientError("HTTP 429 from Ping", status_code=429, retry_after=retry_after)]
    before = timezone.now()
    assert outbox.deliver(message.pk) == OutboxStatus.PENDING
    message = reload(message)
    assert (message.attempts, message.leased_until) == (1, None)
    assert "HTTP 429" in message.last_error
    assert expected <= (message.next_attempt_at - before).total_seconds() < expected + 5
    assert deliver_due_outbox_messages() == 0  # not due yet
    make_due(message)
    assert deliver_due_outbox_messages() == 1
    message = reload(message)
    assert (message.status, message.attempts, message.last_error) == (OutboxStatus.DELIVERED, 2, "")
    assert handler.sent == [1, 2] and handler.dead == []


def test_the_backoff_grows_then_the_message_is_a_dead_letter(handler, message):
    handler.outcomes = [TransientError("HTTP 503 from Ping", status_code=503)] * outbox.MAX_ATTEMPTS
    waits = []
    for _ in range(outbox.MAX_ATTEMPTS):
        before = timezone.now()
        make_due(message)
        deliver_due_outbox_messages()
        message = reload(message)
        waits.append(round((message.next_attempt_at - before).total_seconds()))
    assert waits[:-1] == list(outbox.RETRY_DELAYS)
    assert (message.status, message.attempts) == (OutboxStatus.FAILED, outbox.MAX_ATTEMPTS)
    assert handler.dead == [f"gave up after {outbox.MAX_ATTEMPTS} attempts: HTTP 503 from Ping"]
    make_due(message)
    assert outbox.due_messages() == [] and deliver_due_outbox_messages() == 0  # failed is final
    assert len(handler.sent) == outbox.MAX_ATTEMPTS


def test_a_refusal_is_a_dead_letter_at_once_and_can_be_resent(handler, message):
    handler.outcomes = [PermanentError("HTTP 400 from Ping: bad event", status_code=400)]
    assert outbox.deliver(message.pk) == OutboxStatus.FAILED
    message = reload(message)
    assert (message.attempts, message.last_error) == (1, "HTTP 400 from Ping: bad event")
    assert handler.dead == ["HTTP 400 from Ping: bad event"]
    outbox.resend(message, grace=timedelta(0))
    assert outbox.deliver(message.pk) == OutboxStatus.DELIVERED
    assert reload(message).attempts == 1  # counted afresh


def test_a_dead_workers_lease_is_taken_over_once_it_expires(handler, message):
    assert outbox.claim(message.pk) is not None  # the worker took the message, then was killed
    make_due(message)
    assert outbox.due_messages() == []  # the lease keeps the beat job off it
    assert outbox.deliver(message.pk) == outbox.SKIPPED
    OutboxMessage.objects.filter(pk=message.pk).update(leased_until=timezone.now() - timedelta(seconds=1))
    assert outbox.due_messages() == [message.pk]
    assert deliver_due_outbox_messages() == 1
    message = reload(message)
    assert (message.status, message.attempts) == (OutboxStatus.DELIVERED, 2)
    assert handler.sent == [2]


def test_a_deferral_is_not_an_attempt(handler, message):
    later = timezone.now() + timedelta(minutes=5)
    handler.outcomes = [outbox.Defer(later)]
    assert outbox.deliver(message.pk) == OutboxStatus.PENDING
    message = reload(message)
    assert (message.attempts, message.leased_until, message.next_attempt_at) == (0, None, later)
    assert handler.dead == []


def test_a_crash_is_counted_and_retried_then_gives_up(handler, message):
    handler.outcomes = [RuntimeError("bug")] * outbox.MAX_ATTEMPTS
    with pytest.raises(RuntimeError):
        outbox.deliver(message.pk)
    message = reload(message)
    assert (message.status, message.attempts, message.leased_until) == (OutboxStatus.PENDING, 1, None)
    assert message.last_error == "internal error (RuntimeError); see the worker log"
    assert message.next_attempt_at > timezone.now()
    for _ in range(outbox.MAX_ATTEMPTS - 1):
        make_due(message)
        with pytest.raises(RuntimeError):
            outbox.deliver(message.pk)
    assert reload(message).status == OutboxStatus.FAILED


def test_a_kind_without_a_handler_fails_with_the_reason(handler, message):
    OutboxMessage.objects.filter(pk=message.pk).update(kind="test.unknown")
    assert outbox.deliver(message.pk) == OutboxStatus.FAILED
    assert "no outbox handler is registered for message kind 'test.unknown'" in reload(message).last_error


def test_two_handlers_cannot_claim_one_kind(handler):
    outbox.register_handler(KIND, handler)  # the same one again (an app's ready() run twice) is fine
    with pytest.raises(RuntimeError, match="two outbox handlers"):
        outbox.register_handler(KIND, PingHandler())
