"""The Freshservice mapping as a pure function, on real-shaped payloads (include=type_fields)."""

import copy
import json
from pathlib import Path

import pytest

from syncplane.integrations.base import ConnectorContext
from syncplane.integrations.connectors.freshservice.cmdb import (
    FreshserviceCMDBConnector,
    build_lookups,
    map_asset,
    type_field_values,
)
from syncplane.integrations.errors import ConfigurationError, RecordError
from syncplane.inventory.models import CANONICAL_FIELDS

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures/freshservice"
PAGE = json.loads((FIXTURES / "assets_page.json").read_text())
LISTS = {**json.loads((FIXTURES / "asset_types.json").read_text()),
         **json.loads((FIXTURES / "references.json").read_text())}
LAPTOP, SERVER, TABLET = PAGE["assets"]
LOOKUPS = build_lookups(LISTS)


def mapped(raw, lookups=LOOKUPS):
    return map_asset(raw, lookups).attributes


def test_a_laptop_maps_every_canonical_field():
    record = map_asset(LAPTOP, LOOKUPS)
    assert record.external_id == "101"  # display_id: what URLs and people use
    assert record.attributes == {
        "name": "LT-BER-0142",
        "asset_type": "laptop",
        "status": "active",
        "serial_number": "5CG1234XYZ",  # trimmed, case kept (reconciliation normalises)
        "asset_tag": "ASSET-101",
        "manufacturer": "HP Inc.",  # product -> manufacturer
        "model": "HP EliteBook 840 G8",  # product -> name
        "hostname": "lt-ber-0142",
        "fqdn": "",
        "ip_address": "10.20.3.41",
        "mac_address": "3c:52:82:11:aa:01",  # normalised from the dashed upper-case form
        "operating_system": "Windows",
        "os_version": "11 23H2",
        "owner_email": "juergen.mueller@acme.example",  # requester's primary_email, lower-cased
        "location": "Berlin HQ",
        "department": "Finance",
        "last_seen_at": "2024-05-18T07:01:44+00:00",
    }
    assert set(record.attributes) <= set(CANONICAL_FIELDS)


def test_server_with_nulls_placeholder_serial_and_fqdn_hostname():
    server = mapped(SERVER)
    assert server["asset_type"] == "server" and server["status"] == "in_maintenance"
    assert server["serial_number"] == "To be filled by O.E.M."  # kept; reconciliation ignores placeholders
    assert server["hostname"] == "srv-fra-0007" and server["fqdn"] == "srv-fra-0007.fra.acme.example"
    assert server["asset_tag"] == "" and server["owner_email"] == "" and server["location"] == ""
    assert server["manufacturer"] == "" and server["model"] == "" and server["mac_address"] == ""


def test_fields_from_another_defining_type_and_an_agent_owner():
    """A tablet's os/mac come suffixed with the Mobile Devices type id; its owner is an agent."""
    tablet = mapped(TABLET)
    assert tablet["asset_type"] == "tablet"
    assert (tablet["operating_system"], tablet["os_version"]) == ("iPadOS", "17.4.1")
    assert tablet["mac_address"] == "a4:83:e7:00:00:31"
    assert tablet["owner_email"] == "anna.schmidt@acme.example"
    assert tablet["status"] == "unknown"  # asset_state null
    assert tablet["location"] == "München Office"


def test_type_fields_suffix_is_stripped_only_when_it_is_a_type_id():
    ids = frozenset({21000855267})
    assert type_field_values({"serial_number_21000855267": "A", "cost_2023": 5, "salvage": None}, ids) == {
        "serial_number": "A", "cost_2023": 5, "salvage": None}
    # Without reference data, long numeric suffixes are taken for type ids.
    assert type_field_values({"os_21000855272": "Linux", "disk_2": 1}) == {"os": "Linux", "disk_2": 1}
    assert type_field_values(None) == {}


def test_custom_child_type_takes_its_ancestors_canonical_type():
    raw = {**LAPTOP, "asset_type_id": 21000855308}  # Developer Workstation -> Laptop -> Computer
    assert mapped(raw)["asset_type"] == "laptop"
    assert mapped({**LAPTOP, "asset_type_id": 21000855272})["asset_type"] == "other"  # Computer itself
    assert mapped({**LAPTOP, "asset_type_id": 21000855314})["asset_type"] == "other"  # Software
    assert mapped({**LAPTOP, "asset_type_id": 12345})["asset_type"] == "other"  # unknown type


def test_asset_type_map_and_state_map_are_configurable():
    lookups = build_lookups(LISTS, {"Computer": "desktop", "laptop": "laptop"}, {"in use": "in_stock"})
    assert mapped({**LAPTOP, "asset_type_id": 21000855272}, lookups)["asset_type"] == "desktop"
    assert mapped(LAPTOP, lookups)["asset_type"] == "laptop"  # names match case-insensitively
    assert mapped(LAPTOP, lookups)["status"] == "in_stock"


def test_a_configured_state_map_extends_the_default_table():
    # The runbook's example: only two states listed; every default state still maps.
    lookups = build_lookups(LISTS, None, {"In Use": "active", "Lost": "unknown", "on loan": "in_stock"})
    for state, status in (("In Stock", "in_stock"), ("Retired", "retired"), ("On Loan", "in_stock"),
                          ("Lost", "unknown")):
        raw = copy.deepcopy(LAPTOP)
        raw["type_fields"]["asset_state_21000855267"] = state
        record = map_asset(raw, lookups)
        assert (record.attributes["status"], record.unmapped) == (status, {})
    overriding = build_lookups(LISTS, None, {"in stock": "in_maintenance"})  # a configured name wins
    raw = copy.deepcopy(LAPTOP)
    raw["type_fields"]["asset_state_21000855267"] = "In Stock"
    assert mapped(raw, overriding)["status"] == "in_maintenance"


@pytest.mark.parametrize(("state", "unmapped"), [("Lost in space", {"status": "Lost in space"}),
                                                 ("Missing", {}), (None, {})])
def test_a_state_no_map_knows_is_marked_unmapped(state, unmapped):
    raw = copy.deepcopy(LAPTOP)
    raw["type_fields"]["asset_state_21000855267"] = state
    record = map_asset(raw, LOOKUPS)
    assert record.attributes["status"] == "unknown" and record.unmapped == unmapped


@pytest.mark.parametrize(("state", "status"), [("In Use", "active"), ("In Stock", "in_stock"),
                                               ("In Transit", "in_stock"), ("In Repair", "in_maintenance"),
                                               ("Under Maintenance", "in_maintenance"), ("Retired", "retired"),
                                               ("Disposed", "disposed"), ("Missing", "unknown"),
                                               ("Lost in space", "unknown"), (None, "unknown")])
def test_asset_state_table(state, status):
    raw = copy.deepcopy(LAPTOP)
    raw["type_fields"]["asset_state_21000855267"] = state
    assert mapped(raw)["status"] == status


def test_unresolved_references_map_to_empty_values():
    bare = build_lookups({"asset_types": LISTS["asset_types"]})
    attributes = mapped(LAPTOP, bare)
    assert attributes["owner_email"] == attributes["location"] == attributes["department"] == ""
    assert attributes["manufacturer"] == attributes["model"] == ""
    assert attributes["serial_number"] == "5CG1234XYZ"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"display_id": None}, "display_id"),
        ({"display_id": "101"}, "display_id"),
        ({"id": 2.1e10}, "id is not an integer"),
        ({"updated_at": "18.05.2024 09:01"}, "updated_at"),
        ({"name": 5}, "not a string"),
        ({"type_fields": ["x"]}, "type_fields"),
    ],
)
def test_malformed_records_are_refused_with_a_reason(change, reason):
    with pytest.raises(RecordError, match=reason):
        map_asset({**LAPTOP, **change}, LOOKUPS)


def test_non_objects_are_refused():
    with pytest.raises(RecordError, match="not an object"):
        map_asset(["x"], LOOKUPS)


def context(config=None, auth_type="api_key"):
    return ConnectorContext(base_url="https://acme.freshservice.com", auth_type=auth_type, config=config or {},
                            credentials={"api_key": "k"}, resolve_secret=lambda ref: ref)


def test_config_defaults_and_validation():
    config = FreshserviceCMDBConnector.validated_config({})
    assert config["page_size"] == 100 and config["workspace_id"] is None
    assert config["asset_type_map"]["Laptop"] == "laptop" and config["state_map"]["In Use"] == "active"
    for bad, where in (({"page_size": 101}, "page_size"), ({"asset_type_map": {"Laptop": "notebook"}},
                                                           "asset_type_map.Laptop"),
                       ({"state_map": {"In Use": "running"}}, "state_map"), ({"per_page": 5}, "per_page"),
                       ({"rate_limit_per_second": 0}, "rate_limit_per_second")):
        with pytest.raises(ConfigurationError, match=where):
            FreshserviceCMDBConnector.validated_config(bad)


def test_only_the_api_key_credential_shape_is_accepted():
    with pytest.raises(ConfigurationError, match="API key"):
        FreshserviceCMDBConnector(context(auth_type="basic"))
    described = FreshserviceCMDBConnector.describe()
    assert described["credential_schema"]["api_key"]["properties"]["api_key"]["x-secret"] is True
