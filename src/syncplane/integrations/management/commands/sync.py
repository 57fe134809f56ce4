from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from syncplane.integrations.choices import RunStatus, SyncMode, Trigger
from syncplane.integrations.engine import SyncAlreadyRunning, run_sync, start_sync
from syncplane.integrations.models import ExternalSystem


def find_integration(ref: str) -> ExternalSystem:
    live = ExternalSystem.objects.live()
    system = live.filter(pk=int(ref)).first() if ref.isdigit() else None
    system = system or live.filter(name=ref).first()
    if system is None:
        names = ", ".join(f"{s.pk}:{s.name}" for s in live[:20]) or "none yet"
        raise CommandError(f"no integration {ref!r}; integrations: {names}")
    return system


class Command(BaseCommand):
    help = "Run a sync of one integration in the foreground, with a progress bar, and print its summary."

    def add_arguments(self, parser):
        parser.add_argument("integration", help="Integration id or name")
        parser.add_argument("--mode", choices=SyncMode.values, default=SyncMode.FULL)
        parser.add_argument("--dry-run", action="store_true", help="Show what would change; write nothing")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar (for logs and CI)")

    def handle(self, *args, integration, mode, dry_run, no_progress, **options):
        system = find_integration(integration)
        try:
            log = start_sync(system, mode=mode, dry_run=dry_run, trigger=Trigger.CLI, requested_by="cli")
        except SyncAlreadyRunning as exc:
            raise CommandError(str(exc)) from None
        bar = tqdm(desc=f"{system.name} ({mode}{', dry run' if dry_run else ''})", unit=" records",
                   disable=no_progress, dynamic_ncols=True, file=self.stderr)

        def progress(current):
            if current.total_expected and bar.total is None:
                bar.total = current.total_expected
            bar.update(current.records_read - bar.n)

        try:
            log = run_sync(log.pk, progress=progress)
        finally:
            bar.close()
        self.stdout.write(summary(log))
        if log.status == RunStatus.FAILED:
            raise CommandError(f"sync failed ({log.error_kind}): {log.error_summary}")


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
    ]
    if log.error_summary:
        lines.append(f"  {log.error_summary}")
    return "\n".join(lines)
