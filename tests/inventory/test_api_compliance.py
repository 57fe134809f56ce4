"""The asset API's compliance and assignment (issue 11): filters, the compliance source, each source's own
verdict in the detail, the user an asset is assigned to, and a query count that does not grow with the page."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from syncplane.inventory.models import AssetSource
from tests.inventory.helpers import ANDROID_SAYS, INTUNE_SAYS, ingest

pytestmark = pytest.mark.django_db

User = get_user_model()


def asset_id(system, external_id) -> str:
    return str(AssetSource.objects.get(external_system=system, external_id=external_id).asset_id)


@pytest.fixture
def disputed(integrations):
    """One laptop two MDMs disagree on, assigned to a directory user; and a compliant phone."""
    ingest(integrations["servicenow_cmdb"], {"sn-1": {"name": "LT-1", "serial_number": "C02XK1ABJG5H"}})
    ingest(integrations["entra_id"], {"intune:1": {**INTUNE_SAYS, "assigned_to": "alice@acme.example"}})
    ingest(integrations["android_enterprise"], {"enterprises/e1/devices/1": ANDROID_SAYS,
                                           "enterprises/e1/devices/2": {
                                               "name": "Pixel", "serial_number": "PIX-0002",
                                               "compliance_state": "compliant",
                                               "assigned_to": "nobody@acme.example"}})
    ingest(integrations["defender_endpoint"], {"m-1": {"serial_number": "C02XK1ABJG5H", "exposure_level": "high",
                                                  "risk_score": "medium", "health_status": "active",
                                                  "onboarding_status": "onboarded", "compliance_score": 40}})
    User.objects.create_user("alice@acme.example", email="Alice@Acme.example", first_name="Alice",
                             last_name="Liddell")
    return {"laptop": asset_id(integrations["servicenow_cmdb"], "sn-1"),
            "phone": asset_id(integrations["android_enterprise"], "enterprises/e1/devices/2"), **integrations}


def by_name(response) -> dict:
    return {asset["name"]: asset for asset in response.data["results"]}


def test_the_list_shows_compliance_its_source_the_defender_fields_and_the_assigned_user(api_as, disputed):
    response = api_as("viewer").get("/api/v1/assets/")
    assert response.status_code == 200
    laptop = by_name(response)["LT-1"]
    assert laptop["compliance_state"] == "noncompliant"
    assert laptop["compliance_reasons"] == INTUNE_SAYS["compliance_reasons"]
    assert laptop["compliance_checked_at"] == "2026-11-30T08:00:00Z"
    intune = disputed["entra_id"]
    assert laptop["compliance_source"] == {
        "source": laptop["compliance_source"]["source"], "external_system": intune.pk,
        "external_system_name": "entra_id", "system_type": "entra_id",
    }
    assert (laptop["exposure_level"], laptop["risk_score"], laptop["health_status"],
            laptop["onboarding_status"], laptop["compliance_score"]) == ("high", "medium", "active", "onboarded", 40)
    alice = User.objects.get(username="alice@acme.example")
    assert laptop["assigned_to"] == "alice@acme.example"
    assert laptop["assigned_user"] == {"id": alice.pk, "username": "alice@acme.example",
                                       "display_name": "Alice Liddell", "is_active": True}
    phone = by_name(response)["Pixel"]
    assert phone["assigned_to"] == "nobody@acme.example"
    assert phone["assigned_user"] is None
    assert phone["compliance_source"]["system_type"] == "android_enterprise"


def test_the_detail_shows_every_sources_own_compliance(api_as, disputed):
    detail = api_as("viewer").get(f"/api/v1/assets/{disputed['laptop']}/")
    assert detail.status_code == 200
    assert detail.data["compliance_state"] == "noncompliant"
    views = detail.data["compliance_by_source"]
    assert [(v["system_type"], v["compliance_state"], v["chosen"]) for v in views] == [
        ("entra_id", "noncompliant", True), ("android_enterprise", "compliant", False),
    ]
    assert views[0]["compliance_reasons"] == INTUNE_SAYS["compliance_reasons"]
    assert views[0]["compliance_checked_at"] == "2026-11-30T08:00:00Z"
    assert views[0]["source"] == detail.data["compliance_source"]["source"]
    assert views[1]["compliance_reasons"] == []
    assert views[1]["external_id"] == "enterprises/e1/devices/1"
    assert detail.data["attributes"]["compliance_state"] == {"value": "noncompliant",
                                                             "source": views[0]["source"]}
    assert detail.data["attributes"]["compliance_checked_at"]["value"] == "2026-11-30T08:00:00Z"
    assert detail.data["assigned_user"]["username"] == "alice@acme.example"


def test_filters_by_compliance_and_assignment(api_as, disputed):
    viewer = api_as("viewer")
    noncompliant = viewer.get("/api/v1/assets/", {"compliance_state": "noncompliant"})
    assert [a["id"] for a in noncompliant.data["results"]] == [disputed["laptop"]]
    compliant = viewer.get("/api/v1/assets/", {"compliance_state": "compliant"})
    assert [a["id"] for a in compliant.data["results"]] == [disputed["phone"]]
    assert viewer.get("/api/v1/assets/", {"compliance_state": "not_applicable"}).data["results"] == []
    assigned = viewer.get("/api/v1/assets/", {"assigned_to": "ALICE@acme.example"})
    assert [a["id"] for a in assigned.data["results"]] == [disputed["laptop"]]
    both = viewer.get("/api/v1/assets/", {"assigned_to": "alice@acme.example", "compliance_state": "compliant"})
    assert both.data["results"] == []
    searched = viewer.get("/api/v1/assets/", {"search": "alice@"})
    assert [a["id"] for a in searched.data["results"]] == [disputed["laptop"]]


@pytest.mark.parametrize("name", ["compliance_state", "asset_type", "status"])
def test_a_bad_choice_is_refused_naming_the_allowed_values(api_as, disputed, name):
    response = api_as("viewer").get("/api/v1/assets/", {name: "bogus"})
    assert response.status_code == 400
    message = str(response.data[name][0])
    assert message.startswith("bogus is not one of: ")
    if name == "compliance_state":
        assert message.endswith("compliant, noncompliant, unknown, not_applicable")


def test_assignment_prefers_the_user_name_then_an_active_users_email(api_as, integrations):
    ingest(integrations["entra_id"], {
        "intune:a": {"name": "A", "serial_number": "SER-A1", "assigned_to": "carol@x.example"},
        "intune:b": {"name": "B", "serial_number": "SER-B1", "assigned_to": "dave@x.example"},
        "intune:c": {"name": "C", "serial_number": "SER-C1", "assigned_to": "Eve@X.example"},
    })
    carol = User.objects.create_user("carol@x.example")  # a directory user: named by the lower-cased UPN
    User.objects.create_user("c.local", email="carol@x.example")  # a local user with the same mailbox
    User.objects.create_user("a-dave", email="dave@x.example", is_active=False)
    dave = User.objects.create_user("z-dave", email="DAVE@x.example", first_name="Dave")
    eve = User.objects.create_user("eve", email="eve@x.example")
    assets = by_name(api_as("viewer").get("/api/v1/assets/"))
    assert assets["A"]["assigned_user"]["id"] == carol.pk
    assert assets["A"]["assigned_user"]["display_name"] == "carol@x.example"  # no name: the user name
    assert assets["B"]["assigned_user"] == {"id": dave.pk, "username": "z-dave", "display_name": "Dave",
                                            "is_active": True}
    assert assets["C"]["assigned_user"]["id"] == eve.pk


def test_the_number_of_queries_does_not_grow_with_the_page(api_as, integrations, django_assert_max_num_queries):
    viewer = api_as("viewer")

    def add(start: int, stop: int) -> None:
        records = {f"intune:{i}": {"name": f"LT-{i:03}", "serial_number": f"SER-Q{i:03}",
                                   "compliance_state": "noncompliant", "compliance_reasons": [f"reason {i}"],
                                   "assigned_to": f"user{i}@acme.example"} for i in range(start, stop)}
        ingest(integrations["entra_id"], records)
        ingest(integrations["android_enterprise"], {f"d{i}": {"serial_number": f"SER-Q{i:03}",
                                                         "compliance_state": "compliant"}
                                               for i in range(start, stop)})
        for i in range(start, stop):
            User.objects.create_user(f"user{i}@acme.example")

    def count(path: str) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert viewer.get(path).status_code == 200
        return len(queries)

    add(0, 3)
    few = count("/api/v1/assets/")
    add(3, 30)
    with django_assert_max_num_queries(few):
        response = viewer.get("/api/v1/assets/")
    assert len(response.data["results"]) == 30
    assert all(a["assigned_user"] and a["compliance_source"] for a in response.data["results"])

    # The detail: as many queries for an asset with many sources as for one with two.
    first = response.data["results"][0]
    assert first["serial_number"] == "SER-Q000"
    two_sources = count(f"/api/v1/assets/{first['id']}/")
    ingest(integrations["defender_endpoint"], {f"m{i}": {"serial_number": "SER-Q000", "compliance_state": "unknown"}
                                               for i in range(8)})
    ingest(integrations["servicenow_cmdb"], {f"s{i}": {"serial_number": "SER-Q000"} for i in range(8)})
    with django_assert_max_num_queries(two_sources):
        detail = viewer.get(f"/api/v1/assets/{first['id']}/")
    assert len(detail.data["sources"]) == 18
    assert len(detail.data["compliance_by_source"]) == 10
