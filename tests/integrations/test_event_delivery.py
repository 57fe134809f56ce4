"""Events leave through the outbox: per sink, oldest first, in batches within the sink's limits, at least once
with the event id as idempotency key; per-event results, backoff, dead letters, and a sink whose credentials
are refused paused without a retry storm."""

from datetime import timedelta

import pytest
from django.utils import timezone

from syncplane.integrations import outbox
from syncplane.integrations.errors import AuthenticationError, PermanentError, TransientError
from syncplane.integrations.events import emit_event
from syncplane.integrations.models import ExternalSystem, IntegrationHealth, OutboxMessage, OutboxStatus
from syncplane.integrations.outbox import deliver_due_outbox_messages, deliver_sink_events
from tests.integrations.eventsink import RecordingSink, make_sink, recording_sink_fixture  # noqa: F401 (the fixture)

pytestmark = pytest.mark.django_db


def emit(count, *, size=0, event_type="sync.completed"):
    for number in range(count):
        emit_event(event_type, subject={"type": "integration", "id": str(number), "name": f"n{number}"},
                   data={"number": number, "padding": "x" * size})
    ids = dict.fromkeys(OutboxMessage.objects.order_by("id").values_list("payload__id", flat=True))  # one per event
    return list(ids)[-count:]


def statuses():
    return list(OutboxMessage.objects.order_by("id").values_list("status", flat=True))


def make_all_due():
    OutboxMessage.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_events_go_in_order_in_batches_of_at_most_max_batch_events(recording_sink):
    sink = make_sink()
    ids = emit(7)
    assert deliver_sink_events(sink.pk) == 7
    assert recording_sink.calls == [ids[:3], ids[3:6], ids[6:]]  # oldest first, 3 at most per call
    assert statuses() == [OutboxStatus.DELIVERED] * 7
    assert set(OutboxMessage.objects.values_list("attempts", flat=True)) == {1}
    assert ExternalSystem.objects.get(pk=sink.pk).outbox_leased_until is None


def test_a_batch_stays_within_max_batch_bytes(recording_sink):
    sink = make_sink()
    ids = emit(4, size=1200)  # about 1.4 kB each: two fit in 4000 bytes, three do not
    deliver_sink_events(sink.pk)
    assert recording_sink.calls == [ids[:2], ids[2:]]


def test_an_event_too_large_is_truncated_and_one_too_large_even_so_is_a_dead_letter(recording_sink):
    sink = make_sink()
    [big] = emit(1, size=5000)
    emit_event("sync.failed", subject={"type": "integration", "id": "9", "name": "n" * 3000}, data={})
    assert deliver_sink_events(sink.pk) == 1
    sent = recording_sink.received[big]
    assert sent["data"]["truncated"] is True and sent["data"]["original_bytes"] > 5000
    assert "larger than this sink accepts" in sent["data"]["note"]
    assert sent["subject"]["id"] == "0" and sent["type"] == "sync.completed"  # the rest is kept
    huge = OutboxMessage.objects.latest("id")
    assert huge.status == OutboxStatus.FAILED and recording_sink.calls == [[big]]
    assert "bytes even without its data; Recording sink takes at most 1500" in huge.last_error


def test_one_delivery_in_effect_when_a_worker_dies_between_the_send_and_the_commit(recording_sink, monkeypatch):
    sink = make_sink()
    ids = emit(2)

    class WorkerKilled(BaseException):
        pass

    def killed(*args):
        raise WorkerKilled

    with monkeypatch.context() as patch:
        patch.setattr(outbox, "_record_results", killed)
        with pytest.raises(WorkerKilled):
            deliver_sink_events(sink.pk)
    assert statuses() == [OutboxStatus.PENDING] * 2  # the sink has them; Syncplane does not know it
    # A killed worker leaves its lease to expire; the beat job then hands the sink to another worker.
    ExternalSystem.objects.filter(pk=sink.pk).update(outbox_leased_until=timezone.now() - timedelta(seconds=1))
    assert deliver_due_outbox_messages() == 1
    assert recording_sink.calls == [ids, ids]  # sent again, with the same ids ...
    assert list(recording_sink.received) == ids  # ... and stored once
    assert statuses() == [OutboxStatus.DELIVERED] * 2
    assert list(OutboxMessage.objects.values_list("attempts", flat=True)) == [2, 2]


def test_a_sink_held_by_a_worker_is_left_alone(recording_sink):
    sink = make_sink()
    emit(1)
    assert outbox.claim_sink(sink.pk)
    assert deliver_sink_events(sink.pk) is None and outbox.due_sinks() == []
    assert recording_sink.calls == []


def test_per_event_results_one_retried_one_dead_lettered(recording_sink):
    sink = make_sink()
    retried, rejected, fine, later = emit(4)
    recording_sink.script = [{retried: "retry", rejected: "rejected"}]
    before = timezone.now()
    assert deliver_sink_events(sink.pk) == 1  # the first batch; the retried event then holds back `later`
    rows = {row.payload["id"]: row for row in OutboxMessage.objects.all()}
    assert rows[fine].status == OutboxStatus.DELIVERED
    assert rows[rejected].status == OutboxStatus.FAILED
    assert rows[rejected].last_error == "Recording sink rejected the event: sink says rejected"
    assert rows[retried].status == OutboxStatus.PENDING and rows[retried].last_error == "sink says retry"
    wait = (rows[retried].next_attempt_at - before).total_seconds()
    assert 90 <= wait < 95  # the sink's Retry-After (90 s) beats the first backoff step (30 s)
    assert rows[later].status == OutboxStatus.PENDING and rows[later].attempts == 0
    assert recording_sink.calls == [[retried, rejected, fine]]
    assert ExternalSystem.objects.get(pk=sink.pk).health == IntegrationHealth.DEGRADED  # a dead letter
    make_all_due()
    assert deliver_sink_events(sink.pk) == 2
    assert recording_sink.calls[-1] == [retried, later]  # the retried one first: the order is kept
    assert sorted(recording_sink.received) == sorted([fine, retried, later])


def test_a_retried_event_is_a_dead_letter_after_max_attempts(recording_sink):
    sink = make_sink()
    [event] = emit(1)
    recording_sink.script = [{event: "retry"}] * outbox.MAX_ATTEMPTS
    for _ in range(outbox.MAX_ATTEMPTS):
        make_all_due()
        deliver_sink_events(sink.pk)
    message = OutboxMessage.objects.get()
    assert (message.status, message.attempts) == (OutboxStatus.FAILED, outbox.MAX_ATTEMPTS)
    assert message.last_error == f"gave up after {outbox.MAX_ATTEMPTS} attempts: sink says retry"
    make_all_due()
    assert deliver_sink_events(sink.pk) == 0 and len(recording_sink.calls) == outbox.MAX_ATTEMPTS


def test_a_transient_failure_retries_the_batch_after_retry_after(recording_sink):
    sink = make_sink()
    ids = emit(2)
    recording_sink.script = [TransientError("HTTP 429 from sink", status_code=429, retry_after=120)]
    before = timezone.now()
    assert deliver_sink_events(sink.pk) == 0
    for message in OutboxMessage.objects.all():
        assert message.status == OutboxStatus.PENDING and message.last_error == "HTTP 429 from sink"
        assert 120 <= (message.next_attempt_at - before).total_seconds() < 125
    assert deliver_due_outbox_messages() == 0  # not due yet: nothing is sent before Retry-After
    stored = ExternalSystem.objects.get(pk=sink.pk)
    assert (stored.health, stored.consecutive_failures) == (IntegrationHealth.DEGRADED, 1)
    make_all_due()
    assert deliver_due_outbox_messages() == 1
    assert recording_sink.calls == [ids, ids] and statuses() == [OutboxStatus.DELIVERED] * 2
    assert ExternalSystem.objects.get(pk=sink.pk).health == IntegrationHealth.HEALTHY


def test_a_batch_refused_as_a_whole_is_dead_lettered(recording_sink):
    sink = make_sink()
    emit(2)
    recording_sink.script = [PermanentError("HTTP 400 from sink: mapping conflict", status_code=400)]
    deliver_sink_events(sink.pk)
    assert statuses() == [OutboxStatus.FAILED] * 2
    assert set(OutboxMessage.objects.values_list("last_error", flat=True)) == {"HTTP 400 from sink: mapping conflict"}


def test_refused_credentials_pause_the_sink_until_an_admin_saves_it(recording_sink, api_as):
    sink = make_sink()
    other = make_sink("Other sink")
    ids = emit(2)
    recording_sink.script = [AuthenticationError("HTTP 401 from sink: invalid API key", status_code=401)]
    assert deliver_sink_events(sink.pk) == 0
    stored = ExternalSystem.objects.get(pk=sink.pk)
    assert stored.delivery_paused_at is not None and stored.health == IntegrationHealth.FAILING
    assert stored.last_error == "HTTP 401 from sink: invalid API key"
    mine = OutboxMessage.objects.filter(external_system=sink)
    # Waiting, their attempt given back; the sink's own integration.unhealthy waits behind them.
    assert list(mine.values_list("payload__type", "status", "attempts")) == [
        ("sync.completed", OutboxStatus.PENDING, 0), ("sync.completed", OutboxStatus.PENDING, 0),
        ("integration.unhealthy", OutboxStatus.PENDING, 0)]
    # No retry storm: neither the beat job nor a stray task sends anything to the paused sink ...
    make_all_due()
    deliver_due_outbox_messages()
    assert deliver_sink_events(sink.pk) is None
    assert recording_sink.calls_by_sink["Sink"] == [ids]
    # ... while the other sink gets its events, the integration.unhealthy about the paused one among them.
    delivered_elsewhere = OutboxMessage.objects.filter(external_system=other, status=OutboxStatus.DELIVERED)
    assert "integration.unhealthy" in set(delivered_elsewhere.values_list("payload__type", flat=True))
    # An admin fixes the sink: saving it resumes the delivery.
    response = api_as("admin").patch(f"/api/v1/integrations/{sink.pk}/", {"config": {"event_types": ["*"]}},
                                     format="json")
    assert response.status_code == 200, response.content
    assert response.json()["delivery_paused"] is False
    deliver_sink_events(sink.pk)
    assert set(mine.values_list("status", flat=True)) == {OutboxStatus.DELIVERED}
    stored = ExternalSystem.objects.get(pk=sink.pk)
    assert stored.health == IntegrationHealth.HEALTHY


def test_a_failing_sink_does_not_hold_up_another(recording_sink):
    slow, fine = make_sink("Slow"), make_sink("Fine")
    emit(2)
    recording_sink.script = [TransientError("HTTP 503 from sink", status_code=503)]
    deliver_sink_events(slow.pk)
    deliver_sink_events(fine.pk)
    assert set(OutboxMessage.objects.filter(external_system=slow).values_list("status", flat=True)) == {"pending"}
    assert set(OutboxMessage.objects.filter(external_system=fine).values_list("status", flat=True)) == {"delivered"}


def test_the_change_outbox_is_not_touched_by_the_sinks(recording_sink):
    """Event messages never go through the one-by-one path (which has no handler for them)."""
    make_sink()
    emit(1)
    make_all_due()
    assert outbox.due_messages() == []
    assert RecordingSink.calls == []


def outbox_writes(queries):
    return [q["sql"] for q in queries if q["sql"].startswith("UPDATE") and "integrations_outboxmessage" in q["sql"]]


def test_a_batch_costs_the_same_statements_whatever_its_size(recording_sink, monkeypatch):
    """Delivered events are marked with one UPDATE ... WHERE id IN (...) per batch, not a statement (nor a CASE
    branch) per event: the database work of a batch does not grow with the number of its events."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    monkeypatch.setattr(RecordingSink, "max_batch_events", 400)
    monkeypatch.setattr(RecordingSink, "max_batch_bytes", 10_000_000)
    sink = make_sink()
    counts = []
    for size in (5, 400):
        emit(size)
        with CaptureQueriesContext(connection) as queries:
            assert deliver_sink_events(sink.pk) == size
        counts.append((len(queries), len(outbox_writes(queries))))
        assert not any("CASE" in sql for sql in outbox_writes(queries))
    assert counts[0] == counts[1]
    assert counts[0][1] == 2  # the attempt counted, then the outcome
    assert set(statuses()) == {OutboxStatus.DELIVERED}
    assert len(RecordingSink.received) == 405


def test_outcomes_of_one_batch_are_written_per_outcome(recording_sink, monkeypatch):
    """Delivered, retried and dead-lettered events of one batch each get their own fields; an event delivered
    after an earlier failed attempt loses that attempt's error."""
    monkeypatch.setattr(outbox, "UPDATE_CHUNK", 2)  # several chunks for the delivered ones
    monkeypatch.setattr(RecordingSink, "max_batch_events", 10)
    monkeypatch.setattr(RecordingSink, "max_batch_bytes", 100_000)
    sink = make_sink()
    ids = emit(8)
    OutboxMessage.objects.filter(payload__id=ids[0]).update(last_error="HTTP 503 from sink", attempts=1)
    recording_sink.script = [{ids[5]: "retry", ids[6]: "rejected"}]
    before = timezone.now()
    assert deliver_sink_events(sink.pk) == 6
    rows = {row.payload["id"]: row for row in OutboxMessage.objects.all()}
    for event_id in ids[:5] + ids[7:]:
        row = rows[event_id]
        assert (row.status, row.last_error) == (OutboxStatus.DELIVERED, "")
        assert before <= row.delivered_at <= timezone.now()
    assert rows[ids[0]].attempts == 2
    retried, rejected = rows[ids[5]], rows[ids[6]]
    assert (retried.status, retried.last_error, retried.delivered_at) == (OutboxStatus.PENDING, "sink says retry", None)
    assert 90 <= (retried.next_attempt_at - before).total_seconds() < 95
    assert rejected.status == OutboxStatus.FAILED and rejected.delivered_at is None
    assert rejected.last_error == "Recording sink rejected the event: sink says rejected"


def test_a_task_drains_the_whole_backlog_within_its_time_budget(recording_sink, monkeypatch):
    sink = make_sink()
    emit(75)  # 25 batches of 3: more than a handful of batches per task
    queued = []
    monkeypatch.setattr(outbox, "queue_sink_delivery", queued.append)  # what emitting queued is left aside
    assert deliver_sink_events(sink.pk) == 75
    assert len(recording_sink.calls) == 25 and queued == []
    assert ExternalSystem.objects.get(pk=sink.pk).outbox_leased_until is None


def test_a_task_past_its_time_budget_hands_the_rest_to_a_fresh_task(recording_sink, monkeypatch):
    sink = make_sink()
    ids = emit(7)
    queued = []
    monkeypatch.setattr(outbox, "queue_sink_delivery", queued.append)
    monkeypatch.setattr(outbox, "DRAIN_SECONDS", 0)
    assert deliver_sink_events(sink.pk) == 3  # one batch, then the budget is spent
    assert queued == [sink.pk] and recording_sink.calls == [ids[:3]]
    assert ExternalSystem.objects.get(pk=sink.pk).outbox_leased_until is None  # free for the fresh task
    assert deliver_sink_events(sink.pk) == 3 and deliver_sink_events(sink.pk) == 1
    assert recording_sink.calls == [ids[:3], ids[3:6], ids[6:]]


def test_delivered_events_leave_the_outbox_after_the_keeping_time_the_rest_stays(recording_sink, settings,
                                                                                 monkeypatch):
    settings.SYNCPLANE_DELIVERED_EVENTS_KEEP_DAYS = 7
    monkeypatch.setattr(outbox, "PRUNE_CHUNK", 2)  # several statements
    sink = make_sink()
    old, recent, dead, pending = emit(5), emit(1), emit(1), emit(1)
    now = timezone.now()
    events = OutboxMessage.objects.filter(kind="event")
    events.filter(payload__id__in=old).update(status=OutboxStatus.DELIVERED, delivered_at=now - timedelta(days=8))
    events.filter(payload__id__in=recent).update(status=OutboxStatus.DELIVERED, delivered_at=now - timedelta(days=6))
    events.filter(payload__id__in=dead).update(status=OutboxStatus.FAILED, created_at=now - timedelta(days=30))
    change = OutboxMessage.objects.create(kind="change.create", external_system=sink, subject_type="change",
                                          subject_id="1", idempotency_key="change-1", status=OutboxStatus.DELIVERED,
                                          delivered_at=now - timedelta(days=90))
    assert outbox.prune_delivered_events() == 5
    left = set(OutboxMessage.objects.filter(kind="event").values_list("payload__id", flat=True))
    assert left == {*recent, *dead, *pending}
    assert OutboxMessage.objects.filter(pk=change.pk).exists()  # the CAB's evidence
    settings.SYNCPLANE_DELIVERED_EVENTS_KEEP_DAYS = 0  # keep them for ever
    events.filter(payload__id__in=recent).update(delivered_at=now - timedelta(days=400))
    assert outbox.prune_delivered_events() == 0 and events.count() == 3


def test_the_beat_prunes_delivered_events_every_hour(settings):
    job = settings.CELERY_BEAT_SCHEDULE["prune-delivered-events"]
    assert job["schedule"] == 3600.0
    assert job["task"] == outbox.prune_delivered_events_task.name
