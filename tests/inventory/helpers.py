"""What the inventory tests of MDM and security sources share: their integrations and a sink that takes pages."""

from django.db import transaction
from django.utils import timezone

from syncplane.integrations.base import MappedRecord
from syncplane.integrations.models import ExternalSystem
from syncplane.inventory.models import Asset, AssetSource
from syncplane.inventory.sink import AssetSink

CATEGORIES = {
    "servicenow_cmdb": "cmdb", "entra_id": "identity", "android_enterprise": "mdm",
    "apple_business_manager": "mdm", "defender_endpoint": "security",
}
DEVICE_ID = "6f1c2a4e-0d3b-4c7a-9e55-1b2c3d4e5f60"


def device_integrations() -> dict[str, ExternalSystem]:
    return {
        system_type: ExternalSystem.objects.create(
            name=system_type, system_type=system_type, category=category, base_url="https://example.com"
        )
        for system_type, category in CATEGORIES.items()
    }


def ingest(system, records: dict[str, dict]):
    """One page of mapped records through the asset sink, validated as the engine does."""
    sink = AssetSink(system.pk)
    mapped = [MappedRecord(external_id, dict(attributes), raw={"id": external_id})
              for external_id, attributes in records.items()]
    for record in mapped:
        sink.validate(record)
    with transaction.atomic():
        sink.apply(sink.plan(mapped), timezone.now())


def asset_of(system, external_id) -> Asset:
    return AssetSource.objects.get(external_system=system, external_id=external_id).asset


def source_id(system, external_id) -> str:
    return str(AssetSource.objects.get(external_system=system, external_id=external_id).pk)


def live_groups() -> set[frozenset]:
    """The inventory as sets of (system type, external id), one set per asset with live sources."""
    by_asset: dict = {}
    for source in AssetSource.objects.filter(deleted_at__isnull=True).select_related("external_system"):
        by_asset.setdefault(source.asset_id, set()).add((source.external_system.system_type, source.external_id))
    return {frozenset(members) for members in by_asset.values()}


INTUNE_SAYS = {"serial_number": "C02XK1ABJG5H", "compliance_state": "noncompliant",
               "compliance_reasons": ["BitLocker is off", "OS version below minimum"],
               "compliance_checked_at": "2026-11-30T08:00:00+00:00"}
ANDROID_SAYS = {"serial_number": "C02XK1ABJG5H", "compliance_state": "compliant", "compliance_reasons": [],
                "compliance_checked_at": "2026-12-01T09:30:00+00:00"}
