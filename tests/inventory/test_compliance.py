"""Compliance in the inventory (issue 11): which source's verdict an asset shows, and the Entra deviceId rule
that joins an Entra device object, its Intune record and its Defender machine into one asset."""

import itertools
from datetime import UTC, datetime

import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from syncplane.config import DEFAULT_PRECEDENCE, precedence
from syncplane.inventory.models import Asset
from tests.inventory.helpers import ANDROID_SAYS, DEVICE_ID, INTUNE_SAYS, asset_of, ingest, live_groups, source_id

pytestmark = pytest.mark.django_db


# --- which verdict -------------------------------------------------------------------------------------------


def test_two_mdms_disagreeing_precedence_decides_and_reasons_and_time_follow_the_winner(integrations, settings):
    ingest(integrations["entra_id"], {"intune:1": INTUNE_SAYS})
    ingest(integrations["android_enterprise"], {"enterprises/e1/devices/1": ANDROID_SAYS})
    asset = asset_of(integrations["entra_id"], "intune:1")
    intune = source_id(integrations["entra_id"], "intune:1")
    assert asset.compliance_state == "noncompliant"  # entra_id (Intune) before android_enterprise by default
    assert asset.compliance_reasons == ["BitLocker is off", "OS version below minimum"]
    assert asset.compliance_checked_at == datetime(2026, 11, 30, 8, tzinfo=UTC)
    assert asset.attribute_sources["compliance_state"] == intune
    assert asset.attribute_sources["compliance_reasons"] == intune
    assert asset.attribute_sources["compliance_checked_at"] == intune

    # The other order: the compliant verdict wins, and Intune's reasons do not stay behind to explain it.
    settings.SYNCPLANE_PRECEDENCE = {**settings.SYNCPLANE_PRECEDENCE,
                                     "compliance_state": ["android_enterprise", "entra_id"]}
    ingest(integrations["android_enterprise"], {"enterprises/e1/devices/1": {**ANDROID_SAYS, "model": "Pixel 8"}})
    asset.refresh_from_db()
    android = source_id(integrations["android_enterprise"], "enterprises/e1/devices/1")
    assert asset.compliance_state == "compliant"
    assert asset.compliance_reasons == []
    assert asset.compliance_checked_at == datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    assert asset.attribute_sources["compliance_state"] == android
    assert asset.attribute_sources["compliance_checked_at"] == android
    assert "compliance_reasons" not in asset.attribute_sources  # the winner gave none


def test_the_winners_missing_check_time_is_not_filled_in_from_the_loser(integrations):
    ingest(integrations["android_enterprise"], {"a": {**INTUNE_SAYS, "compliance_checked_at": None}})
    ingest(integrations["apple_business_manager"], {"b": ANDROID_SAYS})
    asset = asset_of(integrations["android_enterprise"], "a")
    assert asset.compliance_state == "compliant"  # apple_business_manager comes first by default
    assert asset.compliance_reasons == []
    assert asset.compliance_checked_at == datetime(2026, 12, 1, 9, 30, tzinfo=UTC)

    ingest(integrations["apple_business_manager"], {"b": {**ANDROID_SAYS, "compliance_checked_at": None}})
    ingest(integrations["android_enterprise"], {"a": INTUNE_SAYS})
    asset.refresh_from_db()
    assert asset.compliance_state == "compliant"
    assert asset.compliance_checked_at is None  # not Android's time for Apple's verdict


def test_a_source_that_does_not_know_never_outweighs_one_that_does(integrations):
    # The Entra device object (isCompliant null -> unknown) comes before Android in compliance precedence.
    ingest(integrations["entra_id"], {"device-object-1": {"serial_number": "SER-U1", "compliance_state": "unknown"}})
    ingest(integrations["android_enterprise"], {"d1": {"serial_number": "SER-U1", "compliance_state": "noncompliant",
                                                  "compliance_reasons": ["passcode too short"]}})
    asset = asset_of(integrations["entra_id"], "device-object-1")
    assert asset.compliance_state == "noncompliant"
    assert asset.compliance_reasons == ["passcode too short"]
    assert asset.attribute_sources["compliance_state"] == source_id(integrations["android_enterprise"], "d1")

    # "Not applicable" (no policy covers it) is weaker than a verdict, stronger than unknown.
    ingest(integrations["defender_endpoint"], {"m1": {"serial_number": "SER-U1", "compliance_state": "not_applicable"}})
    asset.refresh_from_db()
    assert asset.compliance_state == "noncompliant"
    ingest(integrations["android_enterprise"], {"d1": {"serial_number": "SER-U1", "compliance_state": ""}})
    asset.refresh_from_db()
    assert asset.compliance_state == "not_applicable"
    assert asset.compliance_reasons == []
    assert asset.attribute_sources["compliance_state"] == source_id(integrations["defender_endpoint"], "m1")


def test_when_nothing_knows_the_first_source_that_said_unknown_is_the_source(integrations):
    ingest(integrations["android_enterprise"], {"d": {"serial_number": "SER-U2", "compliance_state": "unknown",
                                                 "compliance_checked_at": "2026-12-01T00:00:00Z"}})
    ingest(integrations["servicenow_cmdb"], {"s": {"serial_number": "SER-U2", "name": "LT-U2"}})
    asset = asset_of(integrations["servicenow_cmdb"], "s")
    assert asset.compliance_state == "unknown"
    assert asset.compliance_checked_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert asset.attribute_sources["compliance_state"] == source_id(integrations["android_enterprise"], "d")


def test_reasons_without_a_state_explain_nothing_and_are_not_shown(integrations):
    ingest(integrations["android_enterprise"], {"lonely": {"serial_number": "SER-R1", "compliance_reasons": ["x"],
                                                      "compliance_checked_at": "2026-12-01T00:00:00Z"}})
    asset = asset_of(integrations["android_enterprise"], "lonely")
    assert (asset.compliance_state, asset.compliance_reasons, asset.compliance_checked_at) == ("unknown", [], None)
    ingest(integrations["servicenow_cmdb"], {"s": {"serial_number": "SER-R1"}})  # two sources: the other path
    asset.refresh_from_db()
    assert (asset.compliance_state, asset.compliance_reasons, asset.compliance_checked_at) == ("unknown", [], None)


EXAMPLES = itertools.count()
VERDICTS = [
    ("entra_id", {"compliance_state": "noncompliant", "compliance_reasons": ["a"],
                  "compliance_checked_at": "2026-12-01T00:00:00Z", "last_seen_at": "2026-12-01T00:00:00Z"}),
    ("entra_id", {"compliance_state": "compliant", "compliance_checked_at": "2026-12-02T00:00:00Z",
                  "last_seen_at": "2026-12-02T00:00:00Z"}),
    ("android_enterprise", {"compliance_state": "noncompliant", "compliance_reasons": ["b"]}),
    ("defender_endpoint", {"compliance_state": "unknown", "compliance_checked_at": "2026-12-03T00:00:00Z"}),
    ("servicenow_cmdb", {"compliance_state": "compliant", "compliance_reasons": ["c"]}),
]


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_verdict_does_not_depend_on_the_order_sources_arrive_in(integrations, data):
    """Whatever order and pages the sources come in, the same one judges: here the most recently seen Intune
    record (entra_id ranks before the others; unknown Defender counts only when nothing else knows)."""
    device = f"SER-H{next(EXAMPLES)}"  # each example its own device: the database outlives examples
    chosen = data.draw(st.lists(st.sampled_from(range(len(VERDICTS))), min_size=1, max_size=5, unique=True))
    order = data.draw(st.permutations(chosen))
    cut = data.draw(st.integers(min_value=1, max_value=len(order)))
    for page in (order[:cut], order[cut:]):
        for index in page:  # one page per system: a page belongs to one integration
            system_type, verdict = VERDICTS[index]
            ingest(integrations[system_type], {f"{device}-{index}": {"serial_number": device, **verdict}})
    judged = [i for i in chosen if VERDICTS[i][1]["compliance_state"] != "unknown"] or chosen
    rank = [*DEFAULT_PRECEDENCE["compliance_state"], "servicenow_cmdb"]
    expected = min(judged, key=lambda i: (rank.index(VERDICTS[i][0]), -i))  # 1 is the later Intune record
    asset = Asset.objects.get(serial_number=device, merged_into__isnull=True)
    verdict = VERDICTS[expected][1]
    assert asset.compliance_state == verdict["compliance_state"]
    assert asset.compliance_reasons == verdict.get("compliance_reasons", [])
    checked = verdict.get("compliance_checked_at")
    assert asset.compliance_checked_at == (datetime.fromisoformat(checked) if checked else None)


def test_defender_and_assignment_fields_take_their_own_precedence(integrations):
    ingest(integrations["servicenow_cmdb"], {"s": {"serial_number": "SER-P1", "assigned_to": "issued.to@acme.example",
                                              "exposure_level": "low"}})
    ingest(integrations["entra_id"], {"intune:p1": {"serial_number": "SER-P1", "assigned_to": "uses.it@acme.example",
                                               "azure_ad_device_id": DEVICE_ID}})
    ingest(integrations["defender_endpoint"], {"m": {"azure_ad_device_id": DEVICE_ID.upper(), "exposure_level": "high",
                                                "risk_score": "medium", "health_status": "active",
                                                "onboarding_status": "onboarded"}})
    asset = asset_of(integrations["servicenow_cmdb"], "s")
    assert asset.assigned_to == "uses.it@acme.example"  # the MDM before the CMDB
    assert asset.azure_ad_device_id == DEVICE_ID  # Entra's own spelling
    assert (asset.exposure_level, asset.risk_score, asset.health_status, asset.onboarding_status) == (
        "high", "medium", "active", "onboarded")


def test_the_compliance_followers_cannot_be_ordered_on_their_own():
    assert "compliance_state" in DEFAULT_PRECEDENCE
    assert precedence('{"compliance_state": ["android_enterprise"]}')["compliance_state"] == ["android_enterprise"]
    with pytest.raises(ImproperlyConfigured, match="compliance_reasons.*source of compliance_state"):
        precedence('{"compliance_reasons": ["android_enterprise"]}')


# --- identification by the Entra deviceId ----------------------------------------------------------------


def test_a_cmdb_asset_gains_mdm_sources_and_compliance_by_serial(integrations):
    ingest(integrations["servicenow_cmdb"], {"sn-1": {"name": "LT-BER-0142", "serial_number": "5CG1234XYZ",
                                                 "location": "Berlin"}})
    cmdb_asset = asset_of(integrations["servicenow_cmdb"], "sn-1")
    assert cmdb_asset.compliance_state == "unknown"
    assert "compliance_state" not in cmdb_asset.attribute_sources

    ingest(integrations["entra_id"], {"intune:abc": {**INTUNE_SAYS, "serial_number": " 5cg1234xyz",
                                                "name": "DESKTOP-42", "assigned_to": "alice@acme.example"}})
    ingest(integrations["android_enterprise"],
           {"enterprises/e1/devices/9": {**ANDROID_SAYS, "serial_number": "5CG1234XYZ"}})
    assert live_groups() == {frozenset({("servicenow_cmdb", "sn-1"), ("entra_id", "intune:abc"),
                                        ("android_enterprise", "enterprises/e1/devices/9")})}
    cmdb_asset.refresh_from_db()
    assert cmdb_asset.name == "LT-BER-0142"  # the CMDB still names it
    assert cmdb_asset.location == "Berlin"
    assert cmdb_asset.compliance_state == "noncompliant"
    assert cmdb_asset.compliance_reasons == INTUNE_SAYS["compliance_reasons"]
    assert cmdb_asset.assigned_to == "alice@acme.example"


@pytest.mark.parametrize("one_page", [True, False])
def test_an_entra_device_and_its_intune_record_sharing_only_the_device_id_are_one_asset(integrations, one_page):
    entra_object = {"device-object-7": {"name": "DESKTOP-7", "azure_ad_device_id": DEVICE_ID.upper(),
                                        "compliance_state": "unknown"}}
    intune_record = {"intune:7": {"name": "desktop-7-intune", "serial_number": "PF3ABCDE",
                                  "azure_ad_device_id": DEVICE_ID, "compliance_state": "compliant",
                                  "compliance_checked_at": "2026-12-01T00:00:00Z"}}
    if one_page:
        ingest(integrations["entra_id"], {**intune_record, **entra_object})
    else:
        ingest(integrations["entra_id"], entra_object)
        ingest(integrations["entra_id"], intune_record)
    ingest(integrations["defender_endpoint"],
           {"machine-7": {"hostname": "defender-name", "azure_ad_device_id": DEVICE_ID, "exposure_level": "medium"}})
    assert live_groups() == {frozenset({("entra_id", "device-object-7"), ("entra_id", "intune:7"),
                                        ("defender_endpoint", "machine-7")})}
    asset = asset_of(integrations["entra_id"], "device-object-7")
    assert asset.compliance_state == "compliant"
    assert asset.serial_number == "PF3ABCDE"
    assert asset.exposure_level == "medium"


def test_different_serials_sharing_a_device_id_stay_two_assets(integrations):
    """A re-imaged machine re-registered under an old deviceId, or a bad record: the serial rule comes first."""
    ingest(integrations["entra_id"], {"intune:a": {"serial_number": "SER-AAA1", "azure_ad_device_id": DEVICE_ID}})
    ingest(integrations["defender_endpoint"], {"m-b": {"serial_number": "SER-BBB2", "azure_ad_device_id": DEVICE_ID}})
    assert live_groups() == {frozenset({("entra_id", "intune:a")}), frozenset({("defender_endpoint", "m-b")})}


def test_personally_owned_devices_without_serial_or_shared_keys_stay_apart(integrations):
    byod = {"model": "Pixel 7", "manufacturer": "Google", "name": "Pixel 7", "asset_type": "mobile",
            "compliance_state": "compliant"}
    ingest(integrations["android_enterprise"], {
        "enterprises/e1/devices/p1": {**byod, "assigned_to": "ann@acme.example"},
        "enterprises/e1/devices/p2": {**byod, "assigned_to": "ben@acme.example", "serial_number": "unknown"},
        "enterprises/e1/devices/p3": {**byod, "hostname": "localhost",
                                      "azure_ad_device_id": "00000000-0000-0000-0000-000000000000"},
    })
    ingest(integrations["entra_id"], {"intune:p4": {**byod, "serial_number": ""}})
    assert len(live_groups()) == 4
    assert Asset.objects.filter(merged_into__isnull=True).count() == 4
