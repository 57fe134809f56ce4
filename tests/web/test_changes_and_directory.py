"""Change pages (create, edit a draft, submit, cancel, the timeline) and the directory pages."""

import pytest
from django.utils import timezone

from syncplane.changes.choices import ChangeState
from syncplane.changes.models import ChangeRequest
from syncplane.directory.models import DirectoryAccount, DirectoryGroup
from syncplane.integrations.choices import Category, SystemType
from syncplane.integrations.models import ExternalSystem, OutboxMessage
from syncplane.inventory.models import Asset

pytestmark = pytest.mark.django_db


@pytest.fixture
def itsm():
    return ExternalSystem.objects.create(
        name="ServiceNow ITSM", system_type=SystemType.SERVICENOW_ITSM, category=Category.ITSM,
        base_url="https://127.0.0.1:8443", credentials={"username": "sync", "password": "env:SN_PASSWORD"},
    )


@pytest.fixture
def laptop():
    now = timezone.now()
    return Asset.objects.create(name="laptop-7", serial_number="C02XK1ABCDEF", created_at=now, updated_at=now)


def test_an_operator_creates_edits_submits_and_sees_the_timeline(browser_as, itsm, laptop):
    operator = browser_as("operator")
    response = operator.post("/changes/new/", {
        "title": "Patch the VPN", "description": "Firmware 7.2", "risk_score": "40",
        "planned_start": "2027-01-10T20:00", "planned_end": "2027-01-10T22:00",
        "affected_assets": "laptop-7\nc02xk1abcdef", "external_system": str(itsm.pk),
    })
    change = ChangeRequest.objects.get()
    assert response["Location"] == f"/changes/{change.pk}/"
    assert change.requester.username == "user-operator" and list(change.affected_assets.all()) == [laptop]
    operator.post(f"/changes/{change.pk}/edit/", {"title": "Patch the VPN gateways", "risk_score": "60",
                                                   "affected_assets": "laptop-7"})
    change.refresh_from_db()
    assert change.title == "Patch the VPN gateways" and change.risk_score == 60
    operator.post(f"/changes/{change.pk}/submit/", {"external_system": str(itsm.pk)})
    change.refresh_from_db()
    assert change.state == ChangeState.SUBMITTED
    assert OutboxMessage.objects.filter(subject_id=str(change.pk)).count() == 1
    page = operator.get(f"/changes/{change.pk}/").content.decode()
    assert "change.submitted" in page and "to ServiceNow ITSM" in page
    # No longer a draft: the edit form refuses.
    assert operator.get(f"/changes/{change.pk}/edit/")["Location"] == f"/changes/{change.pk}/"


def test_the_form_names_what_is_wrong(browser_as, itsm):
    page = browser_as("operator").post("/changes/new/", {
        "title": "x", "risk_score": "101", "affected_assets": "no-such-laptop",
        "planned_start": "2027-01-10T22:00", "planned_end": "2027-01-10T20:00",
    }).content.decode()
    assert "no asset is called no-such-laptop" in page
    assert "less than or equal to 100" in page
    assert not ChangeRequest.objects.exists()


def test_the_end_before_the_start_is_refused_by_the_apis_rule(browser_as):
    page = browser_as("operator").post("/changes/new/", {
        "title": "x", "risk_score": "1", "planned_start": "2027-01-10T22:00", "planned_end": "2027-01-10T20:00",
    }).content.decode()
    assert "must be after the planned start" in page


def test_a_cancel_is_recorded_with_its_reason(browser_as, itsm):
    change = ChangeRequest.objects.create(title="Old plan")
    browser_as("operator").post(f"/changes/{change.pk}/cancel/", {"reason": "superseded"})
    change.refresh_from_db()
    assert change.state == ChangeState.CANCELLED
    assert "superseded" in browser_as("viewer").get(f"/changes/{change.pk}/").content.decode()


def test_viewers_see_no_change_buttons_and_are_refused(browser_as):
    change = ChangeRequest.objects.create(title="Draft")
    viewer = browser_as("viewer")
    page = viewer.get(f"/changes/{change.pk}/").content.decode()
    assert "Submit to the CAB" not in page and "New change" not in viewer.get("/changes/").content.decode()
    assert viewer.get("/changes/new/").status_code == 403
    assert viewer.post(f"/changes/{change.pk}/cancel/").status_code == 403


def test_directory_users_show_their_role_and_the_group_that_granted_it(browser_as, make_user):
    entra = ExternalSystem.objects.create(
        name="Entra", system_type=SystemType.ENTRA_ID, category=Category.IDENTITY, base_url="https://127.0.0.1:8443",
        config={"role_mapping": {"IT Ops": "operator"}},
    )
    user = make_user("operator", username="ada@example.org")
    now = timezone.now()
    DirectoryAccount.objects.create(external_system=entra, external_id="u1", user=user, username="ada@example.org",
                                    fingerprint="x", first_seen_at=now, last_seen_at=now)
    from django.contrib.auth.models import Group

    django_group = Group.objects.create(name=f"{entra.pk}:IT Ops")
    user.groups.add(django_group)
    DirectoryGroup.objects.create(external_system=entra, external_id="g1", name="IT Ops", group=django_group,
                                  fingerprint="x", first_seen_at=now, last_seen_at=now)
    viewer = browser_as("viewer")
    users = viewer.get("/directory/users/").content.decode()
    assert "ada@example.org" in users and "IT Ops → operator" in users
    groups = viewer.get("/directory/groups/").content.decode()
    assert "IT Ops" in groups and "operator" in groups
