"""The Jira Assets mapping as a pure function, on payloads shaped like the note's (Cloud search, single read, DC)."""

import copy
import json
from pathlib import Path

import pytest

from syncplane.integrations.connectors.jira.assets import (
    DEFAULT_STATUS_MAP,
    DEFAULT_TYPE_MAP,
    attribute_names,
    map_object,
)
from syncplane.integrations.errors import RecordError
from syncplane.inventory.models import CANONICAL_FIELDS

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures/jira"
PAGE = json.loads((FIXTURES / "aql_page.json").read_text())
SINGLE = json.loads((FIXTURES / "object_single.json").read_text())
DC = json.loads((FIXTURES / "dc_aql_objects.json").read_text())
NAMES = attribute_names(PAGE["objectTypeAttributes"])
LAPTOP, SERVER, SWITCH = PAGE["values"]


def mapped(raw, **kwargs):
    return map_object(raw, names=kwargs.pop("names", NAMES), **kwargs)


def test_a_laptop_maps_every_canonical_field():
    record = mapped(LAPTOP)
    assert record.external_id == "88"
    assert record.attributes == {
        "name": "LT-BER-0142",
        "asset_type": "laptop",
        "status": "active",
        "serial_number": "5CG1234XYZ",  # trimmed, case kept (reconciliation normalises)
        "asset_tag": "P000142",
        "manufacturer": "HP",  # the referenced object's label
        "model": "HP EliteBook 840 G8",
        "hostname": "lt-ber-0142",
        "fqdn": "lt-ber-0142.acme.example",
        "ip_address": "10.20.30.42",
        "mac_address": "00:1a:2b:3c:4d:5e",
        "operating_system": "Windows 11 Enterprise",
        "os_version": "10.0.22631",
        "owner_email": "juergen.mueller@acme.example",  # Owner (a user) has no e-mail on Cloud: Owner Email
        "location": "Berlin HQ",
        "department": "Finance",
        "last_seen_at": "2024-05-19T22:10:05+00:00",  # from `value`, never the localised displayValue
    }
    assert set(record.attributes) <= set(CANONICAL_FIELDS)


def test_empty_missing_and_blank_values_are_all_empty():
    attributes = mapped(SERVER).attributes
    assert attributes["asset_type"] == "server"
    assert attributes["status"] == "retired"  # "decommissioned": status names match case-insensitively
    assert attributes["serial_number"] == ""  # empty value list
    assert attributes["owner_email"] == ""  # value ""
    assert attributes["hostname"] == ""  # attribute missing altogether
    assert attributes["name"] == "SRV-FRA-0007"
    assert attributes["last_seen_at"] == "2023-11-02T00:00:00+00:00"  # a date-only value


def test_unmapped_types_and_statuses_fall_back():
    attributes = mapped(SWITCH).attributes
    assert attributes["asset_type"] == "network_device"  # Switch is in the default type map
    assert attributes["status"] == "unknown"  # "Quarantined" is not in the status map
    assert mapped(SWITCH).unmapped == {"status": "Quarantined"}  # counted on the run, not silently unknown
    assert mapped(SWITCH, type_map={"Switch": "other"}).attributes["asset_type"] == "other"
    configured = mapped(SWITCH, status_map={"quarantined": "in_maintenance"})
    assert (configured.attributes["status"], configured.unmapped) == ("in_maintenance", {})


def test_configured_maps_extend_the_defaults():
    # A map of one entry keeps every default one (it used to replace the whole table).
    assert mapped(SWITCH, type_map={"Laptop": "laptop"}).attributes["asset_type"] == "network_device"
    assert mapped(LAPTOP, status_map={"Quarantined": "in_maintenance"}).attributes["status"] == "active"


def test_names_are_per_object_type():
    # Without the Laptop's attribute ids the Laptop maps nothing but its label; the Server's names do not leak.
    server_names = {k: v for k, v in NAMES.items() if k.startswith("4")}
    attributes = mapped(LAPTOP, names=server_names).attributes
    assert attributes["name"] == "LT-BER-0142" and attributes["serial_number"] == ""


def test_a_single_read_with_embedded_attribute_definitions_maps_without_names():
    attributes = map_object(SINGLE).attributes
    assert (attributes["serial_number"], attributes["status"], attributes["manufacturer"]) == ("5CG1234XYZ", "active",
                                                                                              "HP")


def test_data_center_objects_with_numeric_ids_locale_dates_and_user_emails():
    names = attribute_names(DC["objectTypeAttributes"])
    record = map_object(DC["objectEntries"][0], names=names,
                        attribute_map={"Serial Number": "serial_number", "Status": "status", "Owner": "owner_email",
                                       "Support Group": "department"})
    assert record.external_id == "88"
    assert record.attributes["owner_email"] == "juergen.mueller@acme.example"  # DC users carry emailAddress
    assert record.attributes["department"] == "it-hardware"  # a group attribute: its name
    assert record.attributes["status"] == "active"


def test_a_custom_attribute_map_extends_the_default_and_is_read_first():
    attributes = mapped(LAPTOP, attribute_map={"Hostname": "name", "Serial Number": "asset_tag"}).attributes
    assert attributes["name"] == "lt-ber-0142" and attributes["asset_tag"] == "5CG1234XYZ"
    assert attributes["serial_number"] == ""  # a configured attribute name replaces its default target
    assert attributes["manufacturer"] == "HP"  # the attributes not configured keep their default mapping


@pytest.mark.parametrize(
    ("name", "status"),
    [("In Use", "active"), ("in use", "active"), ("Running", "active"), ("In Stock", "in_stock"),
     ("Spare", "in_stock"), ("In Repair", "in_maintenance"), ("Retired", "retired"), ("Disposed", "disposed"),
     ("Scrapped", "disposed"), ("Lost", "unknown"), ("Something else", "unknown")],
)
def test_status_table(name, status):
    raw = copy.deepcopy(LAPTOP)
    raw["attributes"][2]["objectAttributeValues"][0]["status"]["name"] = name
    assert mapped(raw).attributes["status"] == status
    assert DEFAULT_STATUS_MAP.get(name, "unknown") in (status, "unknown")


def test_type_table_covers_the_note():
    assert {DEFAULT_TYPE_MAP[t] for t in ("Laptop", "Notebook")} == {"laptop"}
    assert DEFAULT_TYPE_MAP["Phone"] == "mobile" and DEFAULT_TYPE_MAP["Virtual Machine"] == "virtual_machine"
    assert DEFAULT_TYPE_MAP["Printer"] == "printer" and DEFAULT_TYPE_MAP["Access Point"] == "network_device"


def _broken(path, value):
    raw = copy.deepcopy(LAPTOP)
    target = raw
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return raw


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_broken(["id"], KeyError), "no numeric id"),
        (_broken(["id"], "ITAM-88"), "no numeric id"),
        (_broken(["objectType"], None), "objectType"),
        (_broken(["updated"], "18/May/24 7:01 AM"), "updated"),
        (_broken(["attributes"], {"a": 1}), "attributes is not a list"),
        (_broken(["attributes", 1, "objectAttributeValues"], "5CG"), "not a list"),
        (_broken(["attributes", 1, "objectAttributeValues", 0, "value"], {"x": 1}), "not text"),
        (_broken(["attributes", 10, "objectAttributeValues", 0, "value"], "yesterday"), "Last Seen"),
        ("not an object", "not an object"),
    ],
)
def test_malformed_objects_are_refused_with_a_reason(raw, reason):
    with pytest.raises(RecordError, match=reason):
        mapped(raw)
