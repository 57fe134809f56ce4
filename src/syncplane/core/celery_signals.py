"""Carry the correlation id from the code that queues a task into the task that runs."""

from celery import signals

from syncplane.core.context import (
    clean_correlation_id,
    get_correlation_id,
    reset_correlation_id,
    set_correlation_id,
)

_HEADER = "correlation_id"
_tokens = {}


@signals.before_task_publish.connect
def _attach_correlation_id(headers=None, **_):
    if headers is not None and _HEADER not in headers:
        correlation_id = get_correlation_id()
        if correlation_id:
            headers[_HEADER] = correlation_id


@signals.task_prerun.connect
def _restore_correlation_id(task_id=None, task=None, **_):
    sent = getattr(task.request, _HEADER, None) if task else None
    _tokens[task_id] = set_correlation_id(clean_correlation_id(sent))


@signals.task_postrun.connect
def _forget_correlation_id(task_id=None, **_):
    token = _tokens.pop(task_id, None)
    if token is not None:
        reset_correlation_id(token)
