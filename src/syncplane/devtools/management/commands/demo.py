"""`syncplane demo`: everything on one machine, on SQLite, with nothing else to install.

Starts the simulators, a Celery worker, Celery beat and the web server as child processes, creates an admin
user and the demo's integrations pointed at the simulators — three CMDBs (ServiceNow CMDB, Jira Assets,
Freshservice CMDB), Entra ID, Defender for Endpoint, Apple Business Manager, Active Directory (slapd, when
installed) and ServiceNow ITSM with one sample change request, plus three monitoring sinks (Datadog, Splunk
HEC, Elastic) that receive every event — and queues a sync of each inbound one (full
the first time, incremental after a restart). A restart with another --simulator-port moves the integrations
to it; what their incremental cursors pointed at is reset with the address (ExternalSystem.save), so that run
is full. Ctrl-C stops every child (devtools/supervisor.py says how).
"""

import json
import os
import secrets
import sys
import time

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from syncplane.core import roles
from syncplane.core.logging import configure_logging
from syncplane.devtools.supervisor import Children, ChildStopped, port_is_free, wait_for
from syncplane.integrations.base import is_secret_field
from syncplane.integrations.choices import AuthType, RunStatus, SyncMode, SystemType, Trigger
from syncplane.integrations.engine import SyncAlreadyRunning, start_sync
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog, SyncState
from syncplane.integrations.registry import get_connector_class
from syncplane.integrations.secrets import to_reference
from syncplane.integrations.tasks import queue_sync
from syncplane_simulators.android_enterprise import DEFAULT_ENTERPRISE as ANDROID_ENTERPRISE
from syncplane_simulators.android_enterprise import make_service_account_key
from syncplane_simulators.apple_business_manager import DEFAULT_CLIENT_ID as APPLE_CLIENT_ID
from syncplane_simulators.apple_business_manager import DEFAULT_KEY_ID as APPLE_KEY_ID
from syncplane_simulators.datadog import DEFAULT_API_KEY as DATADOG_API_KEY
from syncplane_simulators.defender_endpoint import DEFAULT_CLIENT_ID as DEFENDER_CLIENT_ID
from syncplane_simulators.defender_endpoint import DEFAULT_CLIENT_SECRET as DEFENDER_CLIENT_SECRET
from syncplane_simulators.defender_endpoint import DEFAULT_TENANT as DEFENDER_TENANT
from syncplane_simulators.elastic import DEFAULT_ENCODED_KEY as ELASTIC_API_KEY
from syncplane_simulators.entra_id import DEFAULT_CLIENT_ID as GRAPH_CLIENT_ID
from syncplane_simulators.entra_id import DEFAULT_CLIENT_SECRET as GRAPH_CLIENT_SECRET
from syncplane_simulators.entra_id import DEFAULT_TENANT as GRAPH_TENANT
from syncplane_simulators.splunk_hec import DEFAULT_TOKEN as SPLUNK_HEC_TOKEN

# The three CMDBs of the demo, all pointed at the simulators: they share 60% of their devices, so the
# inventory shows assets reconciled from several sources.
DEMO_INTEGRATIONS = [
    {
        "name": "ServiceNow CMDB (simulator)",
        "system_type": SystemType.SERVICENOW_CMDB,
        "path": "servicenow",
        "auth_type": AuthType.BASIC,
        "credentials": {"username": "syncplane.integration", "password": "demo-password"},
        "config": {"table": "cmdb_ci_computer", "page_size": 500},
    },
    {
        "name": "Jira Assets (simulator)",
        "system_type": SystemType.JIRA_ASSETS,
        "path": "jira",
        "auth_type": AuthType.BASIC,
        "credentials": {"username": "syncplane@acme.example", "password": "demo-jira-token"},
        "config": {"object_types": ["Laptop", "Desktop", "Server", "Virtual Machine", "Tablet"],
                   "assets_api_base": "{simulators}/jira", "rate_limit_per_second": 50},
    },
    {
        "name": "Freshservice CMDB (simulator)",
        "system_type": SystemType.FRESHSERVICE_CMDB,
        "path": "freshservice",
        "auth_type": AuthType.API_KEY,
        "credentials": {"api_key": "demo-freshservice-key"},
        "config": {"rate_limit_per_second": 50},
    },
]
# Entra ID against the Graph simulator (msal's authority pointed at it); members of "Syncplane Operators"
# (directly or through the nested "Platform Team") get the operator role. Intune's managed devices too: their
# serials join the CMDBs' laptops, their Entra deviceId the device objects, and they bring compliance.
DEMO_ENTRA = {
    "name": "Entra ID (simulator)",
    "system_type": SystemType.ENTRA_ID,
    "path": "graph/v1.0",
    "auth_type": AuthType.OAUTH2_CLIENT_CREDENTIALS,
    "credentials": {"client_id": GRAPH_CLIENT_ID, "client_secret": GRAPH_CLIENT_SECRET},
    "config": {"tenant_id": GRAPH_TENANT, "authority_url": "{simulators}/graph/login",
               "role_mapping": {"Syncplane Operators": "operator"}, "include_intune_devices": True},
}
# Defender for Endpoint: machines (the Entra devices' own, by aadDeviceId) with their vulnerabilities and
# compliance scores; its machines join the assets of the Entra devices whatever order the syncs run in.
DEMO_DEFENDER = {
    "name": "Defender for Endpoint (simulator)",
    "system_type": SystemType.DEFENDER_ENDPOINT,
    "path": "defender",
    "auth_type": AuthType.OAUTH2_CLIENT_CREDENTIALS,
    "credentials": {"client_id": DEFENDER_CLIENT_ID, "client_secret": DEFENDER_CLIENT_SECRET},
    "config": {"tenant_id": DEFENDER_TENANT, "authority_url": "{simulators}/defender/login",
               "rate_limit_per_second": 50},
}
# Apple Business Manager through the Apple Business API (an API account; its key is made at start): the devices
# Apple sold the organisation, 60% of them with serials the CMDBs know (in another case now and then).
DEMO_APPLE = {
    "name": "Apple Business Manager (simulator)",
    "system_type": SystemType.APPLE_BUSINESS_MANAGER,
    "path": "apple/v1",
    "auth_type": AuthType.OAUTH2_CLIENT_ASSERTION,
    "credentials": {"client_id": APPLE_CLIENT_ID, "key_id": APPLE_KEY_ID},
    "config": {"token_url": "{simulators}/apple/auth/oauth2/token", "rate_limit_per_second": 50},
}
# Android Enterprise through the Android Management API (a service account; its key is made at start): company
# phones and personal work profiles, a few company ones with serials of the CMDBs' tablets.
DEMO_ANDROID = {
    "name": "Android Enterprise (simulator)",
    "system_type": SystemType.ANDROID_ENTERPRISE,
    "path": "android/v1",
    "auth_type": AuthType.GOOGLE_SERVICE_ACCOUNT,
    "credentials": {},  # the key file, made at start
    "config": {"enterprise_id": f"enterprises/{ANDROID_ENTERPRISE}"},
}
# Monitoring sinks: every event (sync.completed, change.approved, ...) goes to the three simulators, which keep
# what they received (GET <simulators>/<path>/_control/received). Created before the first syncs, so those reach them.
DEMO_SINKS = [
    {"name": "Datadog (simulator)", "system_type": SystemType.DATADOG, "path": "datadog",
     "auth_type": AuthType.API_KEY, "credentials": {"api_key": DATADOG_API_KEY}, "config": {}},
    {"name": "Splunk HEC (simulator)", "system_type": SystemType.SPLUNK_HEC, "path": "splunk",
     "auth_type": AuthType.API_KEY, "credentials": {"api_key": SPLUNK_HEC_TOKEN}, "config": {"index": "itgov"}},
    {"name": "Elastic (simulator)", "system_type": SystemType.ELASTIC, "path": "elastic",
     "auth_type": AuthType.API_KEY, "credentials": {"api_key": ELASTIC_API_KEY}, "config": {}},
]
# The ITSM side: a CAB change request submitted to the ServiceNow simulator, approved there by itself.
DEMO_ITSM = {
    "name": "ServiceNow ITSM (simulator)",
    "system_type": SystemType.SERVICENOW_ITSM,
    "path": "servicenow",
    "auth_type": AuthType.BASIC,
    "credentials": {"username": "syncplane.integration", "password": "demo-password"},
    "config": {},
}
DEMO_CHANGE = {
    "title": "Rotate TLS certificates on the edge load balancers",
    "description": "Quarterly certificate rotation (demo change request).",
    "risk_score": 45,
}
DEMO_CAB_SECONDS = 20
# Active Directory: slapd with an AD-like schema, when the OS package is there (ldap://, ldaps:// ports).
DEMO_LDAP_PORTS = (8389, 8636)
DEMO_DIRECTORY_USERS = 400
class Command(BaseCommand):
    help = (
        "Start the demo: simulators, worker, beat and web server; integrations with three CMDBs (ServiceNow, "
        "Jira Assets, Freshservice), Entra ID, Active Directory (with slapd installed) and ServiceNow ITSM, "
        "pointed at the simulators, each inbound one synced at once."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="Web server port (default 8000)")
        parser.add_argument("--simulator-port", type=int, default=8900, help="Simulators port (default 8900)")
        parser.add_argument("--records", type=int, default=3000,
                            help="Devices in each CMDB simulator (default 3000, 60%% shared between them)")

    def handle(self, *args, port, simulator_port, records, **options):
        if not settings.SYNCPLANE_DEMO:
            raise CommandError("run the demo with SYNCPLANE_DEMO=1 (make demo does)")
        # The children read these; this process needs them too (it checks the simulator's URL on save).
        os.environ["SYNCPLANE_DEMO"] = "1"
        os.environ["SYNCPLANE_ALLOW_INSECURE_OUTBOUND"] = "1"
        settings.SYNCPLANE_ALLOW_INSECURE_OUTBOUND = True
        if "SYNCPLANE_LOG_FORMAT" not in os.environ:  # readable logs on a terminal, here and in the children
            os.environ["SYNCPLANE_LOG_FORMAT"] = "console"
            configure_logging("console", settings.LOG_LEVEL)
        os.environ["PYTHONUNBUFFERED"] = "1"  # children write through a pipe: show their lines as they come

        children = Children(settings.DATA_DIR / "logs", self.stdout)
        children.trap_signals()
        try:
            self._run(children, port, simulator_port, records)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping the demo...")
            children.stop()
            self.stdout.write("Demo stopped.")
        except ChildStopped as exc:
            child = exc.child
            children.stop()
            when = "while the demo was running" if children.running else "at start-up"
            raise CommandError(
                f"the {child.name} process ({child.description}) stopped {when} with exit code "
                f"{child.process.returncode}, so the demo stopped everything. Its output is above, on the lines "
                f"starting with '{child.name} |', and in {child.log_path}."
            ) from None
        except BaseException:
            children.stop()
            raise

    def _run(self, children: "Children", port: int, simulator_port: int, records: int) -> None:
        for what, number in (("web server", port), ("simulators", simulator_port)):
            if not port_is_free(number):
                raise CommandError(
                    f"port {number} (the {what}) is already in use: is another demo still running? Stop it, or "
                    f"pick another port with --port / --simulator-port."
                )
        call_command("migrate", interactive=False, verbosity=0)
        username, password = self._admin()

        cli = [sys.executable, "-m", "syncplane"]
        celery = [sys.executable, "-m", "celery", "-A", "syncplane"]
        children.start("simulators", "syncplane simulate",
                       [*cli, "simulate", "--port", str(simulator_port), "--records", str(records)], stop_last=True)
        children.start("worker", "celery worker",
                       [*celery, "worker", "-Q", "integrations", "--pool", "solo", "--loglevel", "INFO",
                        "--without-gossip", "--without-mingle", "--without-heartbeat"])
        children.start("beat", "celery beat",
                       [*celery, "beat", "--loglevel", "INFO", "--scheduler",
                        "django_celery_beat.schedulers:DatabaseScheduler"])
        children.start("web", "syncplane runserver",
                       [*cli, "runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"])
        directory = self._start_directory(children)

        simulators = f"http://127.0.0.1:{simulator_port}"
        wait_for(f"{simulators}/servicenow/_control/state", children)
        wait_for(f"http://127.0.0.1:{port}/healthz", children)
        sinks = [self._integration(spec, simulators) for spec in DEMO_SINKS]
        started = []
        for spec in DEMO_INTEGRATIONS:
            system = self._integration(spec, simulators)
            started.append((system, self._first_sync(system)))
        system = self._integration(DEMO_ENTRA, simulators)
        started.append((system, self._first_sync(system)))
        system = self._integration(DEMO_DEFENDER, simulators)
        started.append((system, self._first_sync(system)))
        system = self._apple_business_manager(simulators)
        started.append((system, self._first_sync(system)))
        system = self._android_enterprise(simulators)
        started.append((system, self._first_sync(system)))
        if directory is not None:
            system = self._active_directory(directory)
            started.append((system, self._first_sync(system)))
        change = self._change_demo(simulators, port, username)
        self.stdout.write(self.banner(port, simulators, username, password, started, change, sinks))
        children.running = True
        for _system, log in started:
            self._follow(log, children)
        self._scan_reports(username)
        children.wait()

    def _scan_reports(self, username: str) -> list:
        """Once the first syncs have filled the inventory: one generated report of each scanner, uploaded as the
        admin through the upload API's own path (its serializer, the tool's parser, ingest_scan), so assets show
        findings: a Trivy file-system scan of a server the inventory knows (target asset:<its host name>), a
        Grype scan of an image and a Snyk project. Returns the Scans (none if the inventory has no host yet)."""
        from django.core.files.uploadedfile import SimpleUploadedFile

        from syncplane.devtools import scan_reports
        from syncplane.findings.api import ScanUploadSerializer
        from syncplane.findings.ingest import ingest_scan, report_records
        from syncplane.findings.models import Scan
        from syncplane.inventory.models import Asset

        host = (Asset.objects.filter(asset_type="server").exclude(hostname="").order_by("hostname").first()
                or Asset.objects.exclude(hostname="").order_by("hostname").first())
        if host is None:
            self.stdout.write(self.style.WARNING("No scanner reports uploaded: the inventory has no host yet"))
            return []
        user = get_user_model().objects.get(username=username)
        reports = [
            ("trivy", scan_reports.trivy_report(40, image="/", artifact_type="filesystem"),
             f"asset:{host.hostname}"),
            ("grype", scan_reports.grype_report(30, seed=2), None),
            ("snyk", scan_reports.snyk_project(25, seed=3), None),
        ]
        scans = []
        for tool, report, target in reports:
            body = ScanUploadSerializer(data={
                "file": SimpleUploadedFile(f"demo-{tool}.json", scan_reports.report_bytes(report)), "tool": tool,
                **({"target": target} if target else {}),
            })
            body.is_valid(raise_exception=True)
            data = body.validated_data
            result = ingest_scan(tool=tool, records=report_records(tool, data["file"], data.get("target")),
                                 uploaded_by=user, filename=data["file"].name)
            scans.append(Scan.objects.get(pk=result.scan_id))
        self.stdout.write(self.style.SUCCESS(
            f"Scanner reports uploaded: Trivy of {host.hostname}, Grype of an image, Snyk of a project "
            f"({sum(scan.total for scan in scans)} findings)"))
        return scans

    def _apple_business_manager(self, simulators: str) -> ExternalSystem:
        """Apple Business Manager through an API account whose P-256 key pair is made at each start: the simulator
        (which forgets keys when it stops) gets the public half, the integration the private half as an encrypted
        reference. No key is ever written to a file."""
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
            PublicFormat,
        )

        key = ec.generate_private_key(ec.SECP256R1())
        private = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
        public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
        httpx.post(f"{simulators}/apple/_control/keys", json={"client_id": APPLE_CLIENT_ID, "key_id": APPLE_KEY_ID,
                                                              "public_key": public}, timeout=10).raise_for_status()
        return self._integration({**DEMO_APPLE, "credentials": {**DEMO_APPLE["credentials"], "private_key": private}},
                                 simulators)

    def _android_enterprise(self, simulators: str) -> ExternalSystem:
        """Android Enterprise with a service-account key made at each start, like a key file downloaded from the
        Cloud console: the simulator (which forgets keys when it stops) gets the public half, the integration the
        key file as an encrypted reference. No key is ever written to a file."""
        key, public = make_service_account_key(f"{simulators}/android/token")
        httpx.post(f"{simulators}/android/_control/service-accounts", json={
            "client_email": key["client_email"], "public_key_pem": public, "private_key_id": key["private_key_id"],
        }, timeout=10).raise_for_status()
        return self._integration({**DEMO_ANDROID, "credentials": {"service_account_key": json.dumps(key)}},
                                 simulators)

    def _admin(self) -> tuple[str, str]:
        """The demo admin; its password is kept in the data folder so a restart can print it again."""
        password_file = settings.DATA_DIR / "demo-admin-password"
        if not password_file.exists():
            fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(12))
        password = password_file.read_text().strip()
        user, _ = get_user_model().objects.get_or_create(username="admin", defaults={"email": "admin@example.com"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        roles.grant_role(user, roles.ADMIN)
        return "admin", password

    def _integration(self, spec: dict, simulators: str) -> ExternalSystem:
        connector = get_connector_class(spec["system_type"])
        config = {key: value.format(simulators=simulators) if isinstance(value, str) else value
                  for key, value in spec["config"].items()}
        credentials = {
            name: to_reference(value) if is_secret_field(spec["auth_type"], name) else value
            for name, value in spec["credentials"].items()
        }
        system, _ = ExternalSystem.objects.live().update_or_create(
            name=spec["name"],
            defaults={
                "system_type": spec["system_type"],
                "category": connector.category,
                "base_url": f"{simulators}/{spec['path']}",
                "auth_type": spec["auth_type"],
                "credentials": credentials,
                "config": connector.validated_config(config),
                "sync_interval_minutes": min(15, connector.default_sync_interval_minutes),
            },
        )
        return system

    def _change_demo(self, simulators: str, port: int, username: str):
        """A ServiceNow ITSM integration whose simulator approves each new change by itself and tells the web
        server by webhook (shared secret), and one sample change, created once and submitted."""
        from syncplane.changes import actions
        from syncplane.changes.choices import ChangeState
        from syncplane.changes.models import ChangeRequest

        try:
            system = self._integration(DEMO_ITSM, simulators)
            # A fresh secret each run: the simulator forgets its webhook target when it stops.
            secret = secrets.token_urlsafe(24)
            system.webhook_secret = to_reference(secret)
            system.save(update_fields=["webhook_secret", "updated_at"])
            control = f"{simulators}/servicenow/_control"
            httpx.post(f"{control}/webhook", json={"url": f"http://127.0.0.1:{port}/api/v1/webhooks/{system.pk}/",
                                                   "secret": secret}, timeout=10).raise_for_status()
            httpx.post(f"{control}/cab", json={"auto_approve_seconds": DEMO_CAB_SECONDS},
                       timeout=10).raise_for_status()
            change, _ = ChangeRequest.objects.get_or_create(
                title=DEMO_CHANGE["title"],
                defaults={**DEMO_CHANGE, "requester": get_user_model().objects.get(username=username)},
            )
            if change.state == ChangeState.DRAFT:
                change = actions.submit(change, user=change.requester, external_system=system)
            return change
        except Exception as exc:  # the change demo is a bonus: the CMDB demo goes on without it
            self.stdout.write(self.style.WARNING(f"The change request demo could not start: {exc}"))
            return None

    def _start_directory(self, children: "Children"):
        """slapd with an AD-like schema and data (simulators/slapd.py) as one more child, on fixed ports, when
        the OS package is installed; the demo goes on without it otherwise."""
        from syncplane_simulators.active_directory import SlapdDirectory, slapd_available

        if not slapd_available():
            self.stdout.write(self.style.WARNING("Active Directory skipped: install slapd (apt-get install slapd)"))
            return None
        busy = [number for number in DEMO_LDAP_PORTS if not port_is_free(number)]
        if busy:
            self.stdout.write(self.style.WARNING(f"Active Directory skipped: port {busy[0]} is already in use"))
            return None
        directory = SlapdDirectory(settings.DATA_DIR / "slapd", ldap_port=DEMO_LDAP_PORTS[0],
                                   ldaps_port=DEMO_LDAP_PORTS[1], users=DEMO_DIRECTORY_USERS)
        directory.prepare()  # fresh data and certificates each start: the same GUIDs, so syncs stay stable
        children.start("slapd", "OpenLDAP slapd as Active Directory", directory.command())
        deadline = time.monotonic() + 30
        while not all(not port_is_free(number) for number in DEMO_LDAP_PORTS):
            children.check()
            if time.monotonic() > deadline:
                raise CommandError(f"slapd did not listen on {DEMO_LDAP_PORTS} within 30 s; see {children.log_dir}")
            time.sleep(0.2)
        return directory

    def _active_directory(self, directory) -> ExternalSystem:
        connector = get_connector_class(SystemType.ACTIVE_DIRECTORY)
        system, _ = ExternalSystem.objects.live().update_or_create(
            name="Active Directory (slapd)",
            defaults={
                "system_type": SystemType.ACTIVE_DIRECTORY,
                "category": connector.category,
                "base_url": directory.ldaps_url,
                "auth_type": AuthType.BASIC,
                "credentials": {"username": directory.service_dn,
                                "password": to_reference(directory.service_password)},
                "config": connector.validated_config({
                    "base_dn": directory.base_dn,
                    "ca_file": str(directory.ca_file),
                    "role_mapping": {"Syncplane Viewers": "viewer"},
                }),
                "sync_interval_minutes": 15,
            },
        )
        return system

    def _first_sync(self, system: ExternalSystem) -> IntegrationSyncLog:
        """A full sync the first time; after a restart, an incremental one (or the run still in progress)."""
        synced_before = IntegrationSyncLog.objects.filter(
            external_system=system, status=RunStatus.SUCCESS, mode=SyncMode.FULL, dry_run=False
        ).exists()
        # No cursor (never synced, or the base URL moved: a new --simulator-port): the first run is a full one.
        has_cursor = SyncState.objects.filter(external_system=system, cursor__isnull=False).exists()
        mode = SyncMode.INCREMENTAL if synced_before and has_cursor else SyncMode.FULL
        try:
            log = start_sync(system, mode=mode, trigger=Trigger.MANUAL, requested_by="demo")
        except SyncAlreadyRunning as exc:
            return exc.log
        queue_sync(log.pk)
        return log

    def banner(self, port, simulators, username, password, started, change=None, sinks=()) -> str:
        """What the demo prints once everything runs: every integration it created, with its URL and the
        sync it queued (the ITSM one syncs on the schedule and by webhook)."""
        web = f"http://127.0.0.1:{port}"
        rows = [(system, log) for system, log in started]
        if change is not None and change.external_system_id:
            rows.append((change.external_system, None))
        width = max(len(system.name) for system, _ in rows) + 1
        integrations = "".join(
            f"  {system.name:<{width}} {web}/integrations/{system.pk}/"
            + (f"  (sync {web}/sync-logs/{log.pk}/)" if log else "") + "\n"
            for system, log in rows
        )
        first = started[0][0]
        text = (
            self.style.SUCCESS("\nSyncplane demo is running.\n") + "\n"
            f"  Start here            {web}/  (the dashboard)\n"
            f"  Browsable API         {web}/api/v1/\n"
            f"  Swagger UI            {web}/api/docs/\n"
            f"  Admin                 {web}/admin/\n"
            f"  Log in as             {username} / {password}\n"
            f"  Simulators            {simulators}/servicenow, /jira, /freshservice, /graph, /defender, /apple, "
            "/android, /datadog, /splunk, /elastic\n"
            f"\n  Integrations ({len(rows)}):\n{integrations}\n"
            f"  Sync logs             {web}/sync-logs/\n"
            f"  Inventory             {web}/assets/  (merged assets: {web}/api/v1/assets/?source_system={first.pk})\n"
            f"  Directory             {web}/directory/users/\n"
            f"  Findings              {web}/findings/  (scanner reports uploaded once the first syncs end)\n"
        )
        if change is not None:
            text += (f"  Change request        {web}/changes/{change.pk}/ "
                     f"(the simulated CAB approves it within {DEMO_CAB_SECONDS} s)\n")
        if sinks:
            text += "\n  Event sinks (what each simulator received):\n" + "".join(
                f"  {system.name:<{width}} {system.base_url}/_control/received\n" for system in sinks) + "\n"
        return text + (
            f"  From a shell          SYNCPLANE_DEMO=1 .venv/bin/syncplane sync {first.pk} --mode incremental\n"
            f"  Logs                  {settings.DATA_DIR / 'logs'}/\n"
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
                self.stdout.write(style("Sync finished:\n" + summary(log)))
                return
            time.sleep(1)
        self.stdout.write(self.style.WARNING("The sync is still running; watch it in the API."))
