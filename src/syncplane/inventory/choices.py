"""The asset vocabularies, defined with the canonical records the connectors produce (one definition)."""

from syncplane.integrations.records import AssetStatus, AssetType, ComplianceState

__all__ = ["AssetStatus", "AssetType", "ComplianceState"]
