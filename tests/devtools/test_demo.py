"""The demo's change request: one ServiceNow ITSM integration, one sample change submitted once."""

import httpx

from syncplane.changes.choices import ChangeState
from syncplane.changes.models import ChangeRequest
from syncplane.devtools.management.commands.demo import (
    DEMO_CAB_SECONDS,
    DEMO_ENTRA,
    DEMO_INTEGRATIONS,
    Command,
)
from syncplane.integrations.engine import start_sync
from syncplane.integrations.models import ExternalSystem, SyncState


def test_the_demo_submits_one_sample_change_to_a_self_approving_cab(simulator, make_user,
                                                                   django_capture_on_commit_callbacks):
    make_user("admin", "admin")
    command = Command()
    base = f"{simulator.url}"
    with django_capture_on_commit_callbacks(execute=True):
        change = command._change_demo(base, 1, "admin")
    assert change is not None
    change.refresh_from_db()
    assert change.state == ChangeState.ASSESS and change.external_change_request_id == "CHG0030001"
    control = f"{simulator.url}/servicenow/_control"
    assert httpx.get(f"{control}/cab").json() == {"auto_approve_seconds": DEMO_CAB_SECONDS}
    assert httpx.get(f"{control}/webhook").json()["secret_set"] is True
    assert change.external_system.webhook_secret.startswith("enc:")
    # A restart creates nothing new and submits nothing twice.
    with django_capture_on_commit_callbacks(execute=True):
        again = command._change_demo(base, 1, "admin")
    assert again.pk == change.pk
    assert ChangeRequest.objects.count() == 1
    assert len(httpx.get(f"{control}/changes").json()["changes"]) == 1


def test_the_banner_lists_every_integration_the_demo_creates_with_its_url(simulator, make_user,
                                                                         django_capture_on_commit_callbacks):
    make_user("admin", "admin")
    command = Command()
    started = [(command._integration(spec, simulator.url), None) for spec in [*DEMO_INTEGRATIONS, DEMO_ENTRA]]
    started = [(system, start_sync(system)) for system, _ in started]
    with django_capture_on_commit_callbacks(execute=True):
        change = command._change_demo(simulator.url, 1, "admin")
    text = command.banner(8000, simulator.url, "admin", "pw", started, change)
    systems = ExternalSystem.objects.all()
    assert systems.count() == 5  # three CMDBs, Entra ID and the ITSM integration
    for system in systems:
        assert f"{system.name}" in text and f"http://127.0.0.1:8000/integrations/{system.pk}/" in text
    for _system, log in started:
        assert f"http://127.0.0.1:8000/sync-logs/{log.pk}/" in text
    assert "Integrations (5)" in text and f"http://127.0.0.1:8000/changes/{change.pk}/" in text
    # The web UI's dashboard comes first: what a newcomer opens.
    assert text.index("http://127.0.0.1:8000/  (the dashboard)") < text.index("/api/v1/")


def test_the_help_names_what_the_demo_creates():
    help_text = " ".join(Command().help.split())
    assert "three CMDBs" in help_text and "first ServiceNow sync" not in help_text
    for name in ("ServiceNow", "Jira Assets", "Freshservice", "Entra ID", "Active Directory", "ServiceNow ITSM"):
        assert name in help_text


def test_a_new_simulator_port_moves_the_integrations_and_starts_their_sync_over(simulator, db):
    command = Command()
    system = command._integration(DEMO_ENTRA, "http://127.0.0.1:8900")
    SyncState.objects.create(external_system=system,
                             cursor={"users": "http://127.0.0.1:8900/graph/v1.0/users/delta?$deltatoken=1"})
    moved = command._integration(DEMO_ENTRA, simulator.url)
    assert moved.pk == system.pk and moved.base_url == f"{simulator.url}/graph/v1.0"
    assert moved.config["authority_url"] == f"{simulator.url}/graph/login"
    state = SyncState.objects.get(external_system=system)
    assert state.cursor is None and state.checkpoint is None  # the delta links pointed at the old port
