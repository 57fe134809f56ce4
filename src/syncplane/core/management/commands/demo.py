"""`syncplane demo`: everything on one machine, on SQLite, with nothing else to install.

Starts the simulators, a Celery worker, Celery beat and the web server as child processes, creates an admin
user and a ServiceNow CMDB integration pointed at the simulator, and queues its first sync. Ctrl-C stops
every child.
"""

import os
import secrets
import signal
import subprocess
import sys
import time

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from syncplane.core import roles
from syncplane.integrations.choices import AuthType, RunStatus, SystemType, Trigger
from syncplane.integrations.engine import SyncAlreadyRunning, start_sync
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog
from syncplane.integrations.secrets import to_reference
from syncplane.integrations.tasks import queue_sync

DEMO_INTEGRATION = "ServiceNow CMDB (simulator)"


class Command(BaseCommand):
    help = "Start the demo: simulators, worker, beat and web server, with a first ServiceNow sync."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="Web server port (default 8000)")
        parser.add_argument("--simulator-port", type=int, default=8900, help="Simulators port (default 8900)")
        parser.add_argument("--records", type=int, default=3000, help="CIs in the ServiceNow simulator")

    def handle(self, *args, port, simulator_port, records, **options):
        if not settings.SYNCPLANE_DEMO:
            raise CommandError("run the demo with SYNCPLANE_DEMO=1 (make demo does)")
        os.environ["SYNCPLANE_DEMO"] = "1"
        os.environ["SYNCPLANE_ALLOW_INSECURE_OUTBOUND"] = "1"
        os.environ.setdefault("SYNCPLANE_LOG_FORMAT", "console")
        call_command("migrate", interactive=False, verbosity=0)
        username, password = self._admin()
        children = Children()
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            cli = [sys.executable, "-m", "syncplane"]
            celery = [sys.executable, "-m", "celery", "-A", "syncplane"]
            children.start("simulators", [*cli, "simulate", "--port", str(simulator_port),
                                          "--records", str(records)])
            children.start("worker", [*celery, "worker", "-Q", "integrations", "--pool", "solo",
                                      "--loglevel", "INFO"])
            children.start("beat", [*celery, "beat", "--loglevel", "INFO", "--scheduler",
                                    "django_celery_beat.schedulers:DatabaseScheduler"])
            children.start("web", [*cli, "runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"])
            simulators = f"http://127.0.0.1:{simulator_port}"
            wait_for(f"{simulators}/servicenow/_control/state", children)
            wait_for(f"http://127.0.0.1:{port}/healthz", children)
            system = self._integration(f"{simulators}/servicenow")
            log = self._first_sync(system)
            self._banner(port, simulators, username, password, system, log)
            self._follow(log, children)
            children.wait()
        except KeyboardInterrupt:
            self.stdout.write("\nStopping the demo...")
        finally:
            children.stop()

    def _admin(self) -> tuple[str, str]:
        """The demo admin; its password is kept in the data folder so a restart can print it again."""
        password_file = settings.DATA_DIR / "demo-admin-password"
        if not password_file.exists():
            password_file.write_text(secrets.token_urlsafe(12))
            password_file.chmod(0o600)
        password = password_file.read_text().strip()
        user, _ = get_user_model().objects.get_or_create(username="admin", defaults={"email": "admin@example.com"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        roles.grant_role(user, roles.ADMIN)
        return "admin", password

    def _integration(self, base_url: str) -> ExternalSystem:
        system, _ = ExternalSystem.objects.live().update_or_create(
            name=DEMO_INTEGRATION,
            defaults={
                "system_type": SystemType.SERVICENOW_CMDB,
                "category": "cmdb",
                "base_url": base_url,
                "auth_type": AuthType.BASIC,
                "credentials": {"username": "syncplane.integration", "password": to_reference("demo-password")},
                "config": {"table": "cmdb_ci_computer", "page_size": 500},
                "sync_interval_minutes": 15,
            },
        )
        return system

    def _first_sync(self, system: ExternalSystem) -> IntegrationSyncLog:
        try:
            log = start_sync(system, trigger=Trigger.MANUAL, requested_by="demo")
        except SyncAlreadyRunning as exc:
            return exc.log
        queue_sync(log.pk)
        return log

    def _banner(self, port, simulators, username, password, system, log):
        web = f"http://127.0.0.1:{port}"
        self.stdout.write(self.style.SUCCESS("\nSyncplane demo is running.\n"))
        self.stdout.write(
            f"  Web / browsable API   {web}/api/v1/\n"
            f"  Swagger UI            {web}/api/docs/\n"
            f"  Admin                 {web}/admin/\n"
            f"  Log in as             {username} / {password}\n"
            f"  Simulators            {simulators}/servicenow\n"
            f"  Integration           #{system.pk} {system.name}\n"
            f"  First sync            {web}/api/v1/integration-sync-logs/{log.pk}/\n"
            f"  From a shell          SYNCPLANE_DEMO=1 .venv/bin/syncplane sync {system.pk} --mode incremental\n"
            "\nPress Ctrl-C to stop everything.\n"
        )

    def _follow(self, log, children, timeout: float = 300):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            children.check()
            log.refresh_from_db()
            if log.is_finished:
                from syncplane.integrations.management.commands.sync import summary

                style = self.style.SUCCESS if log.status == RunStatus.SUCCESS else self.style.WARNING
                self.stdout.write(style("First sync finished:\n" + summary(log)))
                return
            time.sleep(1)
        self.stdout.write(self.style.WARNING("The first sync is still running; watch it in the API."))


class Children:
    """The demo's child processes: started together, watched, and stopped together."""

    def __init__(self):
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str]) -> None:
        self.processes[name] = subprocess.Popen(command, env=os.environ.copy())

    def check(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise CommandError(f"the {name} process stopped (exit code {process.returncode})")

    def wait(self) -> None:
        while True:
            self.check()
            time.sleep(1)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()


def wait_for(url: str, children: Children, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children.check()
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise CommandError(f"{url} did not answer within {timeout:.0f} s")
