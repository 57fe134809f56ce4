"""`syncplane sync <id-or-name>`: a foreground sync with a progress bar and a summary, or a clear error."""

import fcntl
import os
import pty
import re
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from syncplane.integrations.choices import RunStatus, SyncMode, Trigger
from syncplane.integrations.engine import start_sync
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog, SyncRecordOutcome
from syncplane.inventory.models import Asset, AssetSource

pytestmark = pytest.mark.django_db


def sync(*args, **options):
    """Run the command; (stdout, stderr) written through the command's own streams."""
    out, err = StringIO(), StringIO()
    call_command("sync", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def latest_log(system) -> IntegrationSyncLog:
    return IntegrationSyncLog.objects.filter(external_system=system).order_by("-id").first()


def test_full_sync_by_name_prints_the_summary(servicenow):
    out, _ = sync("ServiceNow test", "--no-progress")
    log = latest_log(servicenow)
    assert log.status == RunStatus.SUCCESS and log.trigger == Trigger.CLI and log.requested_by == "cli"
    assert log.mode == SyncMode.FULL and not log.dry_run
    first, counts = out.strip().splitlines()[:2]
    assert first.startswith(f"Sync #{log.pk} of ServiceNow test: SUCCESS in ")
    assert re.search(r" in \d+\.\d s ", first), first  # the duration
    assert f"(full, correlation id {log.correlation_id})" in first and log.correlation_id
    assert counts.strip() == "read 250, created 250, updated 0, unchanged 0, deleted 0, failed 0"
    assert f"  details and record errors: /api/v1/integration-sync-logs/{log.pk}/" in out.splitlines()
    assert AssetSource.objects.filter(external_system=servicenow).count() == 250


def test_sync_by_id_then_incremental_reads_only_the_changes(servicenow, simulator):
    sync(str(servicenow.pk), "--no-progress")
    simulator.servicenow.touch(count=3)
    out, _ = sync(str(servicenow.pk), "--mode", "incremental", "--no-progress")
    log = latest_log(servicenow)
    assert log.mode == SyncMode.INCREMENTAL and log.status == RunStatus.SUCCESS
    assert log.records_updated == 3 and log.records_created == 0 and log.records_deleted == 0
    assert log.records_read < 250  # from the cursor, not the whole table
    assert "(incremental, correlation id " in out
    assert f"read {log.records_read}, created 0, updated 3, " in out


def test_dry_run_writes_nothing_to_the_inventory(servicenow):
    out, _ = sync("ServiceNow test", "--dry-run", "--no-progress")
    log = latest_log(servicenow)
    assert log.dry_run and log.status == RunStatus.SUCCESS and log.records_created == 250
    assert "(full, dry run, correlation id " in out
    assert "would be created 250" in out and "would be deleted 0" in out
    assert Asset.objects.count() == 0 and AssetSource.objects.count() == 0
    # Only planned outcomes (a sample) are kept as evidence, nothing marked applied.
    statuses = set(SyncRecordOutcome.objects.filter(sync_log=log).values_list("status", flat=True))
    assert statuses == {"planned"}


def test_unknown_integration_lists_the_integrations(servicenow):
    with pytest.raises(CommandError) as caught:
        sync("no-such-thing", "--no-progress")
    message = str(caught.value)
    assert "'no-such-thing'" in message and f"{servicenow.pk}:ServiceNow test" in message
    assert not IntegrationSyncLog.objects.exists()


def test_unknown_numeric_id_and_archived_integrations_are_not_found(servicenow):
    with pytest.raises(CommandError, match="no integration '99999'"):
        sync("99999", "--no-progress")
    ExternalSystem.objects.filter(pk=servicenow.pk).update(archived_at="2025-01-01T00:00:00Z")
    with pytest.raises(CommandError, match="integrations: none yet"):
        sync(str(servicenow.pk), "--no-progress")


def test_a_second_sync_while_one_is_queued_is_refused(servicenow, simulator):
    queued = start_sync(servicenow)
    with pytest.raises(CommandError, match="already") as caught:
        sync("ServiceNow test", "--no-progress")
    assert f"sync log {queued.pk}" in str(caught.value)
    assert IntegrationSyncLog.objects.filter(external_system=servicenow).count() == 1
    assert simulator.servicenow.stats["requests"] == 0  # refused before touching the source


def test_a_failing_sync_raises_with_the_reason_and_still_prints_the_summary(servicenow, simulator):
    simulator.servicenow.inject_fault("status", status=403, count=100)
    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("sync", "ServiceNow test", "--no-progress", stdout=out, stderr=StringIO())
    message = str(caught.value)
    assert message.startswith("sync failed (permanent): ")
    assert "403" in message
    log = latest_log(servicenow)
    assert log.status == RunStatus.FAILED and log.error_summary and log.error_summary in message
    assert f"Sync #{log.pk} of ServiceNow test: FAILED" in out.getvalue()
    assert AssetSource.objects.count() == 0


def test_progress_goes_to_stderr_one_line_per_page_when_not_a_terminal(servicenow):
    out, progress = sync("ServiceNow test")
    assert progress.splitlines() == [
        f"ServiceNow test (full): {read}/250 records read, page {page}"
        for page, read in enumerate(range(50, 251, 50), start=1)
    ]
    assert "ServiceNow test (full)" not in out  # progress stays off stdout, which carries the summary

    _, quiet = sync("ServiceNow test", "--dry-run", "--no-progress")
    assert "ServiceNow test" not in quiet


def test_the_summary_gives_the_runs_address_under_the_public_url(servicenow, settings):
    settings.SYNCPLANE_PUBLIC_URL = "https://syncplane.example.com/"
    out, _ = sync("ServiceNow test", "--no-progress")
    log = latest_log(servicenow)
    assert f"  details and record errors: https://syncplane.example.com/api/v1/integration-sync-logs/{log.pk}/" in out


# --- cancel and Ctrl-C ------------------------------------------------------------------------------------


def test_cancel_a_queued_sync_from_the_command_line(servicenow):
    queued = start_sync(servicenow)
    out, _ = sync("ServiceNow test", "--cancel")
    assert out.strip() == f"Sync #{queued.pk} of ServiceNow test cancelled: cancelled by cli before it started."
    queued.refresh_from_db()
    assert queued.status == RunStatus.CANCELLED and queued.cancel_requested_by == "cli"
    with pytest.raises(CommandError, match="no sync of ServiceNow test is queued or running"):
        sync("ServiceNow test", "--cancel")


def test_cancel_a_running_sync_from_the_command_line(servicenow):
    running = start_sync(servicenow)
    IntegrationSyncLog.objects.filter(pk=running.pk).update(status=RunStatus.RUNNING)
    out, _ = sync(str(servicenow.pk), "--cancel")
    assert out.strip() == (f"Cancel requested for sync #{running.pk} of ServiceNow test: its worker stops it at "
                           f"its next page (/api/v1/integration-sync-logs/{running.pk}/).")
    running.refresh_from_db()
    assert running.status == RunStatus.RUNNING and running.cancel_requested_at is not None


def test_a_refused_second_sync_says_how_to_cancel_the_first(servicenow):
    start_sync(servicenow)
    with pytest.raises(CommandError, match=r"`syncplane sync --cancel ServiceNow test` stops it$"):
        sync("ServiceNow test", "--no-progress")


def test_ctrl_c_cancels_the_run_keeps_its_checkpoint_and_says_so_in_one_line(servicenow, simulator,
                                                                             transactional_db):
    # Autocommit, as the command runs: inside a test's transaction, a query PostgreSQL cancels for the Ctrl-C would
    # leave the whole transaction aborted, which a real run (whose pages are transactions of their own) never is.
    simulator.servicenow.inject_fault("slow", delay=0.4, count=None)
    # Ctrl-C is SIGINT to the process; Python raises KeyboardInterrupt in the main thread, wherever it is. It is
    # pressed once the first page is committed (its progress line written), whatever time that took: the rest of
    # the pages still take 0.4 s each to come.
    err = StringIO()
    done = threading.Event()

    def ctrl_c_after_the_first_page():
        deadline = time.monotonic() + 30
        while not done.is_set() and time.monotonic() < deadline:
            if "page 1\n" in err.getvalue():
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=ctrl_c_after_the_first_page, daemon=True)
    watcher.start()
    try:
        with pytest.raises(SystemExit) as exited:
            call_command("sync", "ServiceNow test", stdout=StringIO(), stderr=err)
    finally:
        done.set()
        watcher.join(timeout=30)
    assert exited.value.code == 130
    log = latest_log(servicenow)
    assert log.status == RunStatus.CANCELLED and 1 <= log.pages < 5
    line = err.getvalue().splitlines()[-1]
    assert line == (f"Interrupted: sync #{log.pk} of ServiceNow test is cancelled: interrupted (Ctrl-C), with "
                    f"{log.pages} pages committed; the next run resumes from its checkpoint.")
    simulator.servicenow.clear_faults()
    out, _ = sync("ServiceNow test", "--no-progress")  # nothing locked: the next run starts and resumes
    resumed = latest_log(servicenow)
    assert resumed.status == RunStatus.SUCCESS and resumed.resumed_from_id == log.pk
    assert AssetSource.objects.values("external_id").distinct().count() == 250


# --- the real command, on a terminal ----------------------------------------------------------------------

SECRET = "tests-only-secret-key-0123456789-abcdefghijklmnop"


def command_env(data_dir: Path, **extra) -> dict:
    # A database and broker of its own, in data_dir, whatever this run's DATABASE_URL (CI runs on PostgreSQL).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SYNCPLANE_", "DJANGO_", "SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL"))}
    env.update(SECRET_KEY=SECRET, SYNCPLANE_DATA_DIR=str(data_dir), SYNCPLANE_ALLOW_INSECURE_OUTBOUND="1",
               SYNCPLANE_LOG_FORMAT="json", **extra)
    return env


def syncplane(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syncplane", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def on_a_terminal(args, env) -> tuple[subprocess.Popen, int]:
    """Start `syncplane <args>` with stdout and stderr on a pseudo-terminal 100 columns wide."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "syncplane", *args], env=env, stdin=subprocess.DEVNULL,
                               stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    return process, master


def read_terminal(master: int, until=None, timeout: float = 60) -> str:
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        output += chunk
        if until and until(output.decode(errors="replace")):
            break
    return output.decode(errors="replace")


@pytest.fixture
def installed(tmp_path, simulator):
    """A database of its own (the command runs in another process), with one integration on the simulator."""
    env = command_env(tmp_path)
    assert syncplane("migrate", "-v", "0", env=env).returncode == 0
    create = (
        "from syncplane.integrations.models import ExternalSystem; "
        "from syncplane.integrations.secrets import to_reference; "
        "ExternalSystem.objects.create(name='ServiceNow test', system_type='servicenow_cmdb', category='cmdb', "
        f"base_url='{simulator.url}/servicenow', credentials={{'username': 'syncplane.integration', "
        "'password': to_reference('demo-password')}, config={'page_size': 50})"
    )
    assert syncplane("shell", "-c", create, env=env).returncode == 0
    return env, tmp_path / "syncplane.sqlite3"


@pytest.mark.django_db(databases=[])
def test_on_a_terminal_the_bar_is_drawn_in_place_plainly_without_json_logs(installed, simulator):
    env, database = installed
    simulator.servicenow.inject_fault("slow", delay=0.3, count=None)
    process, master = on_a_terminal(["sync", "ServiceNow test"], env)
    screen = read_terminal(master)
    assert process.wait(timeout=60) == 0, screen
    os.close(master)
    assert "\x1b[31" not in screen  # not red (Django colours what a command writes to stderr)
    drawn = screen.split("Sync #1 of ServiceNow test: SUCCESS")[0]
    assert drawn.count("\r") >= 3 and "250/250" in drawn  # redrawn in place, to the total
    assert drawn.count("\n") <= 1  # one line, not a line per update
    assert '{"' not in screen  # no JSON log line across the bar
    assert "details and record errors: /api/v1/integration-sync-logs/1/" in screen


@pytest.mark.django_db(databases=[])
def test_ctrl_c_on_a_terminal_leaves_nothing_locked(installed, simulator):
    env, database = installed
    simulator.servicenow.inject_fault("slow", delay=0.5, count=None)
    process, master = on_a_terminal(["sync", "ServiceNow test"], env)
    read_terminal(master, until=lambda text: "100/250" in text)
    process.send_signal(signal.SIGINT)
    rest = read_terminal(master)
    assert process.wait(timeout=60) == 130
    os.close(master)
    assert "Traceback" not in rest
    assert re.search(r"Interrupted: sync #1 of ServiceNow test is cancelled: interrupted \(Ctrl-C\), with \d pages "
                     r"committed; the next run resumes from its checkpoint\.", rest), rest
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT status FROM integrations_integrationsynclog").fetchall() == [("cancelled",)]


def test_without_a_secret_key_the_command_says_what_to_set_in_one_line(tmp_path):
    env = command_env(tmp_path)
    del env["SECRET_KEY"]
    done = syncplane("sync", "anything", env=env)
    assert done.returncode == 2
    assert done.stderr == ("syncplane: SECRET_KEY is not set: set it to a long random string (at least 32 "
                           "characters), or set SYNCPLANE_DEMO=1 for the demo, which generates one.\n")
