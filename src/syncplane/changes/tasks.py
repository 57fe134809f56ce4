"""Celery tasks of the change outbox: deliver one message, and the beat job that re-sends due ones."""

import logging

from celery import shared_task
from django.db import transaction

from syncplane.changes import outbox

logger = logging.getLogger("syncplane.outbox")


@shared_task(name="syncplane.changes.tasks.deliver_outbox_message")
def deliver_outbox_message(message_id: int) -> str:
    return outbox.deliver(message_id)


def queue_delivery(message_id: int) -> None:
    """Send the task once the message row is committed, so the worker always finds it."""
    transaction.on_commit(lambda: deliver_outbox_message.delay(message_id))


@shared_task(name="syncplane.changes.tasks.deliver_due_outbox_messages")
def deliver_due_outbox_messages() -> int:
    """Pending messages whose time has come: retries after a transient failure, and messages whose first
    task was lost with a worker that died. Each is its own task, so one slow vendor holds up nothing else."""
    due = outbox.due_messages()
    for message_id in due:
        deliver_outbox_message.delay(message_id)
    return len(due)
