import logging
import sys
from contextlib import contextmanager

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from syncplane.core.logging import configure_logging
from syncplane.integrations.choices import RunStatus, SyncMode, Trigger
from syncplane.integrations.engine import (
    SyncAlreadyFinished,
    SyncAlreadyRunning,
    request_cancel,
    run_sync,
    start_sync,
)
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog


def find_integration(ref: str) -> ExternalSystem:
    live = ExternalSystem.objects.live()
    system = live.filter(pk=int(ref)).first() if ref.isdigit() else None
    system = system or live.filter(name=ref).first()
    if system is None:
        names = ", ".join(f"{s.pk}:{s.name}" for s in live[:20]) or "none yet"
        raise CommandError(f"no integration {ref!r}; integrations: {names}")
    return system


class Command(BaseCommand):
    help = (
        "Run a sync of one integration in the foreground, with a progress bar, and print its summary. Ctrl-C "
        "stops it cleanly (the next run resumes from its checkpoint); --cancel stops a sync running elsewhere."
    )

    def add_arguments(self, parser):
        parser.add_argument("integration", help="Integration id or name")
        parser.add_argument("--mode", choices=SyncMode.values, default=SyncMode.FULL)
        parser.add_argument("--dry-run", action="store_true", help="Show what would change; write nothing")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar (for logs and CI)")
        parser.add_argument("--cancel", action="store_true",
                            help="Cancel the queued or running sync of the integration instead of starting one")

    def handle(self, *args, integration, mode, dry_run, no_progress, cancel, **options):
        system = find_integration(integration)
        if cancel:
            return self._cancel(system)
        try:
            log = start_sync(system, mode=mode, dry_run=dry_run, trigger=Trigger.CLI, requested_by="cli")
        except SyncAlreadyRunning as exc:
            raise CommandError(f"{exc}; `syncplane sync --cancel {integration}` stops it") from None
        description = f"{system.name} ({mode}{', dry run' if dry_run else ''})"
        try:
            with Progress(self.stderr, description, enabled=not no_progress) as progress:
                log = run_sync(log.pk, progress=progress.update)
        except KeyboardInterrupt:
            # The engine has finished the log as cancelled, keeping its checkpoint.
            log = IntegrationSyncLog.objects.get(pk=log.pk)
            self.stderr.write(f"Interrupted: sync #{log.pk} of {log.system_name} is {log.status}: "
                              f"{log.error_summary}.", ending="\n")
            sys.exit(130)
        self.stdout.write(summary(log))
        if log.status == RunStatus.FAILED:
            raise CommandError(f"sync failed ({log.error_kind}): {log.error_summary}")

    def _cancel(self, system: ExternalSystem) -> None:
        active = IntegrationSyncLog.objects.active().filter(external_system=system).first()
        if active is None:
            raise CommandError(f"no sync of {system.name} is queued or running")
        try:
            log = request_cancel(active.pk, requested_by="cli")
        except SyncAlreadyFinished as exc:
            raise CommandError(str(exc)) from None
        if log.is_finished:
            self.stdout.write(f"Sync #{log.pk} of {log.system_name} cancelled: {log.error_summary}.")
        else:
            self.stdout.write(f"Cancel requested for sync #{log.pk} of {log.system_name}: its worker stops it at "
                              f"its next page ({api_url(log)}).")


class Progress:
    """The progress of a CLI run. On a terminal, a bar drawn in place, with log lines (console format, warnings
    and up) printed above it; elsewhere (a pipe, CI), one plain line per committed page."""

    def __init__(self, stream, description: str, *, enabled: bool = True):
        # The command's OutputWrapper would end every write with a newline (and colour stderr red): the bar
        # writes to the stream underneath.
        self.file = getattr(stream, "_out", stream)
        self.description = description
        self.enabled = enabled
        self.terminal = enabled and self.file.isatty()
        self.bar = None

    def __enter__(self) -> "Progress":
        if self.terminal:
            self.bar = tqdm(desc=self.description, unit=" records", dynamic_ncols=True, file=self.file)
            self._logs = self._logs_above_the_bar()
            self._logs.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.bar is not None:
            self.bar.close()
            self._logs.__exit__(*exc_info)

    @contextmanager
    def _logs_above_the_bar(self):
        root = logging.getLogger()
        level = root.level
        configure_logging("console", logging.getLevelName(max(level, logging.WARNING)))
        try:
            with logging_redirect_tqdm():
                yield
        finally:
            configure_logging(settings.LOG_FORMAT, logging.getLevelName(level))

    def update(self, log) -> None:
        if self.bar is not None:
            if log.total_expected and self.bar.total is None:
                self.bar.total = log.total_expected
            self.bar.update(log.records_read - self.bar.n)
        elif self.enabled:
            total = f"/{log.total_expected}" if log.total_expected else ""
            self.file.write(f"{self.description}: {log.records_read}{total} records read, page {log.pages}\n")
            self.file.flush()


def api_url(log) -> str:
    path = reverse("integration-sync-log-detail", args=[log.pk])
    return f"{settings.SYNCPLANE_PUBLIC_URL.rstrip('/')}{path}"


def summary(log) -> str:
    seconds = (log.duration_ms or 0) / 1000
    verb = "would be " if log.dry_run else ""
    lines = [
        f"Sync #{log.pk} of {log.system_name}: {log.status.upper()} in {seconds:.1f} s "
        f"({log.mode}{', dry run' if log.dry_run else ''}, correlation id {log.correlation_id})",
        f"  read {log.records_read}, {verb}created {log.records_created}, {verb}updated {log.records_updated}, "
        f"unchanged {log.records_unchanged}, {verb}deleted {log.records_deleted}, failed {log.records_failed}",
        # Fetching overlaps writing (read-ahead), so the phases add up to less than the total.
        f"  phases: waiting for pages {log.fetch_seconds:.1f} s, mapping {log.map_seconds:.1f} s, "
        f"writing {log.write_seconds:.1f} s, reconciling {log.reconcile_seconds:.1f} s",
        f"  details and record errors: {api_url(log)}",
    ]
    if log.error_summary:
        lines.append(f"  {log.error_summary}")
    return "\n".join(lines)
