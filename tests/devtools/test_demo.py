"""The demo's change request: one ServiceNow ITSM integration, one sample change submitted once."""

import httpx

from syncplane.changes.choices import ChangeState
from syncplane.changes.models import ChangeRequest
from syncplane.devtools.management.commands.demo import DEMO_CAB_SECONDS, Command


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
