"""ServiceNow CMDB, read through the Table API.

Auth and paging: the Table API's, in common.py (Basic or the instance's OAuth; sysparm_offset following the
Link header, X-Total-Count as the fallback).
Streams: one table (default cmdb_ci_computer, rows of every subclass), ordered by sys_updated_on, sys_id.
Incremental: sys_updated_on >= the greatest raw value of the last run; the boundary rows come back again
and are unchanged by fingerprint. A run resumed after a crash restarts the same way from its checkpoint.
Every value comes as {"display_value", "value"}: codes and dates from "value" (dates are UTC), names from
"display_value".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from syncplane.core.normalize import normalize_mac
from syncplane.integrations.base import (
    RATE_MAX,
    RATE_MIN,
    ConnectionResult,
    Connector,
    ConnectorContext,
    MappedRecord,
    Page,
)
from syncplane.integrations.choices import Capability, Category, RecordKind, SystemType
from syncplane.integrations.connectors.servicenow.common import (
    AUTH_TYPES,
    BASE_URL_EXAMPLE,
    BASE_URL_HELP,
    LOOKUP_BATCH,
    ORDER,
    OWNED_PATH_SUFFIXES,
    TableApiPaginator,
    parse_instance_date,
    table_api_client,
    total,
    value,
)
from syncplane.integrations.errors import PermanentError, RecordError
from syncplane.integrations.records import AssetAttributes
from syncplane.integrations.registry import register

FIELDS = (
    "sys_id", "name", "sys_class_name", "serial_number", "asset_tag", "manufacturer", "model_id", "host_name",
    "fqdn", "ip_address", "mac_address", "os", "os_version", "assigned_to", "assigned_to.email", "location",
    "department", "install_status", "operational_status", "virtual", "form_factor", "last_discovered",
    "sys_created_on", "sys_updated_on",
)

# install_status code -> canonical status (runbook: docs/runbooks/integration-setup.md)
INSTALL_STATUS = {
    "1": "active",  # Installed
    "2": "in_stock",  # On Order
    "3": "in_maintenance",  # In Maintenance
    "4": "in_stock",  # Pending Install
    "5": "in_maintenance",  # Pending Repair
    "6": "in_stock",  # In Stock
    "7": "retired",  # Retired
    "8": "disposed",  # Stolen
    "100": "unknown",  # Absent
}
FORM_FACTORS = {"laptop": "laptop", "notebook": "laptop", "desktop": "desktop", "tablet": "tablet"}
VIRTUAL_CLASSES = ("cmdb_ci_vm_instance", "cmdb_ci_vmware_instance")


def display(raw: dict, name: str) -> str:
    field = raw.get(name, "")
    if type(field) is dict:  # noqa: E721
        field = field.get("display_value", "") or ""
    if type(field) is str:  # noqa: E721
        return field.strip()
    raise RecordError(f"field {name} is not a string: {type(field).__name__}")


def asset_type(raw: dict) -> str:
    cls = value(raw, "sys_class_name")
    if cls in VIRTUAL_CLASSES:
        return "virtual_machine"
    if cls == "cmdb_ci_server" or cls.endswith("_server"):
        return "virtual_machine" if value(raw, "virtual") == "true" else "server"
    return FORM_FACTORS.get(value(raw, "form_factor").lower(), "other")


def map_computer(raw: dict) -> MappedRecord:
    """A cmdb_ci_computer row (display_value=all) -> canonical asset attributes."""
    if not isinstance(raw, dict):
        raise RecordError("record is not an object")
    sys_id = value(raw, "sys_id")
    if not sys_id:
        raise RecordError("record has no sys_id")
    parse_instance_date(value(raw, "sys_updated_on"), "sys_updated_on")
    last_discovered = parse_instance_date(value(raw, "last_discovered"), "last_discovered")
    install_status = value(raw, "install_status")
    attributes: AssetAttributes = {
        "name": value(raw, "name"),
        "asset_type": asset_type(raw),
        "status": INSTALL_STATUS.get(install_status, "unknown"),
        "serial_number": value(raw, "serial_number"),
        "asset_tag": value(raw, "asset_tag"),
        "manufacturer": display(raw, "manufacturer"),
        "model": display(raw, "model_id"),
        "hostname": value(raw, "host_name"),
        "fqdn": value(raw, "fqdn").lower(),
        "ip_address": value(raw, "ip_address"),
        "mac_address": normalize_mac(value(raw, "mac_address")),
        "operating_system": display(raw, "os"),
        "os_version": value(raw, "os_version"),
        "owner_email": value(raw, "assigned_to.email").lower(),
        "location": display(raw, "location"),
        "department": display(raw, "department"),
        "last_seen_at": last_discovered.isoformat() if last_discovered else None,
    }
    # An instance's own install_status choice is counted on the run (the engine names it), not silently unknown.
    unmapped = {"status": install_status} if install_status and install_status not in INSTALL_STATUS else {}
    return MappedRecord(external_id=sys_id, attributes=attributes, raw=raw, unmapped=unmapped)


@register
class ServiceNowCMDBConnector(Connector):
    system_type = SystemType.SERVICENOW_CMDB
    category = Category.CMDB
    display_name = "ServiceNow CMDB"
    base_url_help = BASE_URL_HELP
    base_url_example = BASE_URL_EXAMPLE
    owned_path_suffixes = OWNED_PATH_SUFFIXES
    record_kind = RecordKind.ASSET
    auth_types = AUTH_TYPES
    capabilities = frozenset({
        Capability.TEST_CONNECTION, Capability.FULL, Capability.INCREMENTAL, Capability.DRY_RUN, Capability.LOOKUP,
    })
    config_schema = {
        "type": "object",
        "properties": {
            "table": {
                "type": "string",
                "pattern": "^[a-z0-9_]{1,80}$",
                "default": "cmdb_ci_computer",
                "description": "CMDB table to read; rows of its subclasses come too (sys_class_name).",
            },
            "query": {
                "type": "string",
                "maxLength": 2000,
                "pattern": "^[^\\n\\r]*$",
                "default": "",
                "description": "Extra encoded query AND-ed to every request, e.g. install_status!=7. "
                "ServiceNow silently ignores unknown fields: check it with a dry run.",
            },
            "page_size": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000},
            "rate_limit_per_second": {"type": "number", "minimum": RATE_MIN, "maximum": RATE_MAX, "default": 20},
            "timeout_seconds": {"type": "number", "minimum": 1, "maximum": 300, "default": 60},
        },
        "additionalProperties": False,
    }

    def __init__(self, context: ConnectorContext):
        super().__init__(context)
        self.client = table_api_client(context, self.config)
        self.table_path = f"/api/now/v2/table/{self.config['table']}"

    def close(self) -> None:
        self.client.close()

    def _query(self, cursor: str | None) -> str:
        parts = [self.config["query"]] if self.config["query"] else []
        if cursor:
            parts.append(f"sys_updated_on>={cursor}")
        parts.append(ORDER)
        return "^".join(parts)

    def _params(self, query: str, offset: int, limit: int) -> dict:
        return {
            "sysparm_query": query,
            "sysparm_display_value": "all",
            "sysparm_exclude_reference_link": "true",
            "sysparm_fields": ",".join(FIELDS),
            "sysparm_limit": str(limit),
            "sysparm_offset": str(offset),
        }

    def _get(self, params: dict) -> tuple[list, httpx.Response]:
        response = self.client.get(self.table_path, params=params)
        body = self.client.json(response)
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, list):
            raise PermanentError(f"GET {self.table_path} answered without a result list")
        return result, response

    def test_connection(self) -> ConnectionResult:
        _, response = self._get(self._params(self._query(None), 0, 1) | {"sysparm_fields": "sys_id"})
        visible = response.headers.get("X-Total-Count")
        return ConnectionResult(
            ok=True,
            message=f"Connected to {self.config['table']}"
            + (f": {visible} records visible." if visible is not None else "."),
            details={"table": self.config["table"], "total": int(visible) if visible and visible.isdigit() else None},
        )

    def fetch(self, mode: str, cursor: Any = None, resume: dict | None = None) -> Iterator[Page]:
        # A resumed run continues from the last committed change marker rather than an offset: offsets
        # shift when records change or vanish between the crash and the resume, change markers do not.
        since = resume.get("since") if resume else (cursor if mode == "incremental" else None)
        query, limit = self._query(since), self.config["page_size"]
        greatest = since
        pages = TableApiPaginator(limit)
        for records, response in pages.pages(lambda offset: self._get(self._params(query, offset, limit))):
            for raw in records:
                updated = value(raw, "sys_updated_on") if isinstance(raw, dict) else ""
                if updated and (greatest is None or updated > greatest):
                    greatest = updated
            resume_token = None if pages.finished else {"since": greatest}
            yield Page(records=records, resume=resume_token, cursor=greatest, total=total(response))

    def still_present(self, external_ids: list[str]) -> set[str]:
        present = set()
        for start in range(0, len(external_ids), LOOKUP_BATCH):
            batch = external_ids[start : start + LOOKUP_BATCH]
            params = self._params(f"sys_idIN{','.join(batch)}", 0, len(batch)) | {"sysparm_fields": "sys_id"}
            records, _ = self._get(params)
            present.update(value(raw, "sys_id") for raw in records if isinstance(raw, dict))
        return present

    def map_record(self, raw: dict) -> MappedRecord:
        return map_computer(raw)

    def external_id(self, raw: Any) -> str:
        try:
            return value(raw, "sys_id")[:255] if isinstance(raw, dict) else ""
        except RecordError:
            return ""
