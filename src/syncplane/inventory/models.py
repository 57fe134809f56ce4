from django.db import models
from django.db.models import Q

from syncplane.core.models import UUIDModel
from syncplane.inventory.choices import AssetStatus, AssetType, ComplianceState

# The canonical attributes of an asset, in the order the API shows them. A connector's mapping produces a
# dict with (some of) these keys; the sync engine writes nothing else onto an Asset.
CANONICAL_FIELDS = (
    "name", "asset_type", "status", "serial_number", "asset_tag", "manufacturer", "model", "hostname", "fqdn",
    "ip_address", "mac_address", "operating_system", "os_version", "owner_email", "location", "department",
    "compliance_state", "compliance_score", "last_seen_at",
    # MDM and endpoint security (integrations/records.py, AssetAttributes)
    "compliance_reasons", "compliance_checked_at", "assigned_to", "azure_ad_device_id",
    "exposure_level", "risk_score", "health_status", "onboarding_status",
)


class Asset(UUIDModel):
    """One thing in the estate, as reconciled from every source that knows it."""

    name = models.CharField(max_length=255, blank=True)
    asset_type = models.CharField(max_length=20, choices=AssetType.choices, default=AssetType.OTHER)
    status = models.CharField(max_length=20, choices=AssetStatus.choices, default=AssetStatus.UNKNOWN)
    serial_number = models.CharField(max_length=255, blank=True, db_index=True)
    asset_tag = models.CharField(max_length=255, blank=True)
    manufacturer = models.CharField(max_length=255, blank=True)
    model = models.CharField(max_length=255, blank=True)
    hostname = models.CharField(max_length=255, blank=True)
    fqdn = models.CharField(max_length=255, blank=True)
    ip_address = models.CharField(max_length=64, blank=True, help_text="IPv4 or IPv6 address, as reported.")
    mac_address = models.CharField(max_length=64, blank=True, help_text="Normalised aa:bb:cc:dd:ee:ff.")
    operating_system = models.CharField(max_length=255, blank=True)
    os_version = models.CharField(max_length=255, blank=True)
    owner_email = models.CharField(max_length=255, blank=True)
    location = models.CharField(max_length=255, blank=True)
    department = models.CharField(max_length=255, blank=True)
    compliance_state = models.CharField(
        max_length=20, choices=ComplianceState.choices, default=ComplianceState.UNKNOWN
    )
    compliance_score = models.PositiveSmallIntegerField(null=True, blank=True, help_text="0-100")
    last_seen_at = models.DateTimeField(null=True, blank=True, help_text="When a source last saw the device.")
    compliance_reasons = models.JSONField(
        default=list, blank=True, help_text="Why the source of compliance_state judged it so, in its words."
    )
    compliance_checked_at = models.DateTimeField(
        null=True, blank=True, help_text="When the source of compliance_state last evaluated it."
    )
    assigned_to = models.CharField(
        max_length=255, blank=True, help_text="UPN or e-mail of the person an MDM says holds the device."
    )
    azure_ad_device_id = models.CharField(
        max_length=64, blank=True, help_text="Entra deviceId, shared by Entra ID, Intune and Defender."
    )
    exposure_level = models.CharField(max_length=20, blank=True, help_text="Defender exposure level.")
    risk_score = models.CharField(max_length=20, blank=True, help_text="Defender risk score.")
    health_status = models.CharField(max_length=40, blank=True, help_text="Endpoint sensor health.")
    onboarding_status = models.CharField(max_length=40, blank=True, help_text="Endpoint security onboarding.")
    attribute_sources = models.JSONField(
        default=dict, blank=True, help_text="For each attribute, the id of the source its value came from."
    )
    is_orphaned = models.BooleanField(
        default=False, help_text="No live source knows this asset any more (never deleted)."
    )
    # No index of its own: the live-list indexes below begin with merged_into and serve every lookup by it.
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False,
        help_text="Set when reconciliation found this asset to be the same device as another: kept, never lost.",
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["name", "id"]
        # Every list shows live assets (merged_into IS NULL): partial indexes of them serve the API's cursor pages
        # in name order and the UI's sorts on both databases (PostgreSQL does not take `IS NULL` on a leading
        # column as fixing it, so (merged_into, name, id) could not give it the name order). Each index costs
        # every asset write a page at a random place (docs/performance.md), so there is none for what no query
        # asks: no host name (the `hostname` filter is case-blind: the trigram index serves it on PostgreSQL).
        indexes = [
            models.Index(fields=["name", "id"], name="asset_live_list_order", condition=Q(merged_into__isnull=True)),
            models.Index(fields=["updated_at", "id"], name="asset_live_list_updated",
                         condition=Q(merged_into__isnull=True)),
        ]

    def __str__(self):
        return self.name or str(self.pk)


class AssetSource(UUIDModel):
    """What one external system says about one asset, with the raw record it said it in."""

    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="sources")
    # No index of its own: unique_source_record begins with external_system and serves every lookup by it.
    external_system = models.ForeignKey(
        "integrations.ExternalSystem", on_delete=models.PROTECT, related_name="asset_sources", db_index=False
    )
    external_id = models.CharField(max_length=255, help_text="The record's id in the external system.")
    attributes = models.JSONField(default=dict, help_text="The record mapped to canonical attributes.")
    raw_payload = models.JSONField(default=dict, help_text="The record as the external system sent it.")
    fingerprint = models.CharField(max_length=32, help_text="Hash of the mapped attributes: unchanged = equal.")
    # Normalised identification keys (inventory.identity): how sources of different systems find each other.
    serial_key = models.CharField(max_length=255, blank=True, db_index=True)
    mac_key = models.CharField(max_length=17, blank=True, db_index=True)
    host_key = models.CharField(max_length=255, blank=True, db_index=True)
    device_key = models.CharField(
        max_length=64, blank=True, db_index=True, help_text="Lower-case Entra deviceId (Entra, Intune, Defender)."
    )
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(
        help_text="When a sync last wrote this record; a later read of it unchanged is its sighting's."
    )
    updated_at = models.DateTimeField()
    deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="When a complete full sync no longer found it in its system."
    )

    class Meta:
        # The unique index serves the engine's per-page lookup and the deletion scan (by its system prefix);
        # no index on last_seen_at.
        constraints = [
            models.UniqueConstraint(fields=["external_system", "external_id"], name="unique_source_record")
        ]

    def __str__(self):
        return f"{self.external_system_id}:{self.external_id}"

    @property
    def seen_at(self):
        """When a sync last read this record: written, or read unchanged (its sighting). Select `sighting` with
        the source when reading many."""
        try:
            sighting = self.sighting
        except SourceSighting.DoesNotExist:
            return self.last_seen_at
        return max(self.last_seen_at, sighting.seen_at)


class SourceSighting(models.Model):
    """When a sync last read a source whose record had not changed.

    Apart from the source's row on purpose: a re-sync reads most records unchanged, and moving a time in the
    wide source row (attributes, raw record) makes PostgreSQL write a new version of the whole row with an
    entry in each of its indexes. Here it is a row of two columns and one index (docs/performance.md).
    """

    source = models.OneToOneField(AssetSource, on_delete=models.CASCADE, primary_key=True, related_name="sighting")
    seen_at = models.DateTimeField()

    def __str__(self):
        return f"{self.source_id} seen {self.seen_at:%Y-%m-%d %H:%M}"


class AssetMerge(models.Model):
    """Evidence of two assets found to be one device: the merged one keeps its row, pointing at the other."""

    into = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="merges")
    merged = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="+")
    rule = models.CharField(max_length=20, help_text="The identification rule that joined them.")
    key = models.CharField(max_length=255, help_text="The normalised identifier they share.")
    merged_at = models.DateTimeField()

    class Meta:
        ordering = ["merged_at", "id"]

    def __str__(self):
        return f"{self.merged_id} merged into {self.into_id} by {self.rule}"
