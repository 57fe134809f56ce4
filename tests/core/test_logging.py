"""Structured logs: one JSON object per line, with the correlation id of the work in progress."""

import json
import logging
from io import StringIO

import pytest
import structlog

from syncplane.core.context import reset_correlation_id, set_correlation_id
from syncplane.core.logging import configure_logging


@pytest.fixture
def json_lines():
    """Switch logging to JSON into a buffer; afterwards, back to the tests' console configuration."""
    root = logging.getLogger()
    original_stream = next(h.stream for h in root.handlers if type(h) is logging.StreamHandler)
    configure_logging("json", "INFO")
    handler = next(h for h in root.handlers if type(h) is logging.StreamHandler)
    buffer = StringIO()
    handler.setStream(buffer)

    def read(raw: bool = False) -> list:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if raw:
            return text.splitlines()
        return [json.loads(line) for line in text.splitlines()]  # every line must be one JSON object

    try:
        yield read
    finally:
        configure_logging("console", "INFO")
        for h in root.handlers:
            if type(h) is logging.StreamHandler:
                h.setStream(original_stream)


@pytest.fixture
def no_correlation_id():
    token = set_correlation_id(None)
    yield
    reset_correlation_id(token)


def test_a_line_is_one_json_object_with_the_standard_keys(json_lines, no_correlation_id):
    logging.getLogger("syncplane.test").warning("disk %s is %d%% full", "/data", 93)
    (line,) = json_lines()
    assert line["event"] == "disk /data is 93% full"
    assert line["level"] == "warning"
    assert line["logger"] == "syncplane.test"
    assert line["timestamp"].endswith("Z") and line["timestamp"][:2] == "20"  # ISO 8601, UTC
    assert "correlation_id" not in line  # none set: no key, rather than a null one


def test_the_current_correlation_id_is_on_every_line(json_lines):
    token = set_correlation_id("corr-log-1")
    try:
        logging.getLogger("syncplane.sync").info("sync started")
        logging.getLogger("django.request").error("boom")  # a third-party logger gets it too
    finally:
        reset_correlation_id(token)
    lines = json_lines()
    assert [(line["logger"], line["correlation_id"]) for line in lines] == [
        ("syncplane.sync", "corr-log-1"),
        ("django.request", "corr-log-1"),
    ]


def test_extra_fields_become_keys(json_lines, no_correlation_id):
    logging.getLogger("syncplane.sync").info(
        "sync finished", extra={"sync_log_id": 42, "status": "success", "seconds": 1.5, "dry_run": False}
    )
    (line,) = json_lines()
    assert line["event"] == "sync finished"
    assert (line["sync_log_id"], line["status"], line["seconds"], line["dry_run"]) == (42, "success", 1.5, False)


def test_an_explicit_correlation_id_is_not_overwritten(json_lines):
    token = set_correlation_id("current")
    try:
        logging.getLogger("syncplane.test").info("from a message", extra={"correlation_id": "of-the-message"})
    finally:
        reset_correlation_id(token)
    (line,) = json_lines()
    assert line["correlation_id"] == "of-the-message"


def test_multiline_messages_and_tracebacks_stay_on_one_line(json_lines, no_correlation_id):
    log = logging.getLogger("syncplane.test")
    log.info("first\nsecond")
    try:
        raise ValueError("broken\nvalue")
    except ValueError:
        log.exception("sync crashed", extra={"sync_log_id": 7})
    first, crashed = json_lines()  # exactly two lines, each parsed as JSON
    assert first["event"] == "first\nsecond"
    assert crashed["level"] == "error" and crashed["sync_log_id"] == 7
    assert "Traceback" in crashed["exception"] and "ValueError: broken" in crashed["exception"]


def test_levels_below_the_configured_one_are_dropped(json_lines, no_correlation_id):
    log = logging.getLogger("syncplane.test")
    log.debug("not shown")
    log.info("shown")
    assert [line["event"] for line in json_lines()] == ["shown"]


def test_structlog_loggers_write_the_same_shape(json_lines):
    token = set_correlation_id("corr-struct")
    try:
        structlog.get_logger("syncplane.struct").info("outbox delivered", delivery_id=9)
    finally:
        reset_correlation_id(token)
    (line,) = json_lines()
    assert line["event"] == "outbox delivered" and line["delivery_id"] == 9
    assert line["level"] == "info" and line["logger"] == "syncplane.struct"
    assert line["correlation_id"] == "corr-struct" and "timestamp" in line


def test_non_ascii_is_written_as_is(json_lines, no_correlation_id):
    logging.getLogger("syncplane.test").info("owner Jürgen")
    (text,) = json_lines(raw=True)
    assert "Jürgen" in text and json.loads(text)["event"] == "owner Jürgen"


def test_console_format_is_not_json(json_lines):
    # SYNCPLANE_LOG_FORMAT=console (what the tests and a developer's terminal use) really switches the renderer.
    configure_logging("console", "INFO")
    root = logging.getLogger()
    handler = next(h for h in root.handlers if type(h) is logging.StreamHandler)
    buffer = StringIO()
    handler.setStream(buffer)
    logging.getLogger("syncplane.test").info("plain line", extra={"k": 1})
    text = buffer.getvalue()
    assert "plain line" in text and "k=1" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


# --- a failed or retried sync says so, under the run's own correlation id ---------------------------------


@pytest.mark.django_db
def test_a_failed_sync_logs_an_error_with_the_vendors_text_under_the_runs_id(json_lines, servicenow, simulator):
    from syncplane.integrations.engine import run_sync, start_sync

    simulator.servicenow.inject_fault("status", status=401, count=100)
    log = run_sync(start_sync(servicenow).pk)
    lines = json_lines()
    (failed,) = [line for line in lines if line["event"] == "sync failed"]
    assert failed["level"] == "error" and failed["logger"] == "syncplane.sync"
    assert failed["correlation_id"] == log.correlation_id and failed["sync_log_id"] == log.pk
    assert failed["error_kind"] == "permanent" and failed["error"] == log.error_summary and "401" in failed["error"]
    assert all(line.get("correlation_id") == log.correlation_id for line in lines if line["logger"] == "syncplane.sync")
    assert "demo-password" not in "\n".join(map(str, lines))


@pytest.mark.django_db
def test_a_retried_sync_logs_a_warning_and_celery_lines_carry_the_runs_id(json_lines, servicenow, simulator,
                                                                        django_capture_on_commit_callbacks):
    from unittest import mock

    from syncplane.integrations.models import IntegrationSyncLog
    from syncplane.integrations.tasks import queue_sync, run_integration_sync

    simulator.servicenow.inject_fault("status", status=503, count=1000)
    token = set_correlation_id("the-beat-job")  # whoever queues it, the task runs under the log's id
    try:
        log = IntegrationSyncLog.objects.create(external_system=servicenow, system_name=servicenow.name,
                                                system_type=servicenow.system_type, correlation_id="run-17")
        published = []
        with mock.patch.object(run_integration_sync, "apply_async", side_effect=lambda *a, **kw: published.append(kw)):
            with django_capture_on_commit_callbacks(execute=True):
                queue_sync(log.pk)
    finally:
        reset_correlation_id(token)
    assert published == [{"headers": {"correlation_id": "run-17"}}]

    with mock.patch("syncplane.integrations.http.time.sleep"), pytest.raises(Exception, match="Retry"):
        run_integration_sync.apply(args=(log.pk,), headers={"correlation_id": "run-17"}, throw=True)
    retry = [line for line in json_lines() if line["event"] == "sync attempt failed, will retry"]
    assert len(retry) == 1 and retry[0]["level"] == "warning" and retry[0]["correlation_id"] == "run-17"
    assert "answered 503" in retry[0]["error"] and retry[0]["error_kind"] == "transient"
