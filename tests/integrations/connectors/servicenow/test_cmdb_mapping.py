"""The ServiceNow mapping as a pure function, on real-shaped payloads (display_value=all)."""

import json
from pathlib import Path

import pytest

from syncplane.integrations.connectors.servicenow.cmdb import INSTALL_STATUS, map_computer
from syncplane.integrations.errors import RecordError

PAGE = json.loads((Path(__file__).resolve().parents[3] / "fixtures/servicenow/cmdb_ci_computer_page.json").read_text())
LAPTOP, ESX, LINUX_VM = PAGE["result"]


def test_a_laptop_maps_every_canonical_field():
    mapped = map_computer(LAPTOP)
    assert mapped.external_id == "7c1e4f2a1b8c4d5e9f0a1b2c3d4e5f60"
    assert mapped.attributes == {
        "name": "LT-BER-0142",
        "asset_type": "laptop",
        "status": "active",
        "serial_number": "5CG1234XYZ",  # trimmed, case kept (reconciliation normalises)
        "asset_tag": "P000142",
        "manufacturer": "HP Inc.",  # the display value, not the sys_id
        "model": "HP EliteBook 840 G8",
        "hostname": "lt-ber-0142",
        "fqdn": "lt-ber-0142.acme.example",
        "ip_address": "10.20.30.42",
        "mac_address": "00:1a:2b:3c:4d:5e",
        "operating_system": "Windows 11 Enterprise",
        "os_version": "10.0.22631",
        "owner_email": "juergen.mueller@acme.example",
        "location": "Berlin HQ",
        "department": "Finance",
        "last_seen_at": "2024-05-18T07:01:44+00:00",  # the raw UTC value; the display value is Berlin time
    }


def test_servers_virtual_machines_and_empty_values():
    esx = map_computer(ESX).attributes
    assert esx["asset_type"] == "server" and esx["status"] == "in_maintenance"
    assert esx["serial_number"].startswith("VMware-42 1a")  # VMware serials keep their spaces
    assert esx["owner_email"] == "" and esx["location"] == "" and esx["last_seen_at"] is None
    vm = map_computer(LINUX_VM).attributes
    assert vm["asset_type"] == "virtual_machine" and vm["status"] == "retired"
    assert vm["mac_address"] == "00:50:56:ab:cd:ef"  # Cisco dotted form normalised


@pytest.mark.parametrize(("code", "status"), [("1", "active"), ("2", "in_stock"), ("3", "in_maintenance"),
                                              ("4", "in_stock"), ("5", "in_maintenance"), ("6", "in_stock"),
                                              ("7", "retired"), ("8", "disposed"), ("100", "unknown"),
                                              ("", "unknown"), ("42", "unknown")])
def test_install_status_table(code, status):
    record = {**LAPTOP, "install_status": {"display_value": "x", "value": code}}
    assert map_computer(record).attributes["status"] == status
    assert INSTALL_STATUS.get(code, "unknown") == status
    # An instance's own choice is named for the run's summary; Absent (100) and no value are known.
    assert map_computer(record).unmapped == ({"status": "42"} if code == "42" else {})


def test_default_display_modes_map_the_same():
    """With display_value=false (plain strings) codes and ids still map; only names degrade to sys_ids."""
    plain = {name: field["value"] for name, field in LAPTOP.items()}
    mapped = map_computer(plain).attributes
    assert mapped["status"] == "active" and mapped["serial_number"] == "5CG1234XYZ"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"sys_id": {"display_value": "", "value": ""}}, "no sys_id"),
        ({"sys_updated_on": {"display_value": "x", "value": "18.05.2024 09:01"}}, "sys_updated_on"),
        ({"last_discovered": {"display_value": "x", "value": "not-a-date"}}, "last_discovered"),
        ({"name": {"display_value": 5, "value": 5}}, "not a string"),
    ],
)
def test_malformed_records_are_refused_with_a_reason(change, reason):
    with pytest.raises(RecordError, match=reason):
        map_computer({**LAPTOP, **change})
