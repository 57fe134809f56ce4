"""Vulnerability findings: what was scanned (Target), what was found (Finding), who reported it (FindingSource),
each scan or upload (Scan), and every state change as evidence (FindingEvent).

De-duplication is by the finding's key: target (kind + ref), vulnerability id, package name, installed
version. The same CVE in two packages is two findings; the same package at two paths is one finding with two
locations; the same finding from two tools (or from an upload and an integration) is one finding with two
sources. The package type is not part of the key: tools name the same ecosystem differently (deb / debian).
"""

from django.conf import settings
from django.db import models
from django.utils import timezone

from syncplane.core.models import UUIDModel
from syncplane.findings.choices import FindingState, ScanStatus, Severity, TargetKind


class Target(models.Model):
    """Something scanned: a machine of the inventory, a container image (by digest where known) or a repository."""

    kind = models.CharField(max_length=20, choices=TargetKind.choices)
    ref = models.CharField(
        max_length=500, help_text="Stable key within its kind: image digest reference, repository path, machine id."
    )
    name = models.CharField(max_length=500, blank=True, help_text="What a person recognises (image:tag, host).")
    asset = models.ForeignKey(
        "inventory.Asset", null=True, blank=True, on_delete=models.SET_NULL, related_name="finding_targets",
        help_text="For kind asset: the inventory asset found by its identification keys (None until one matches).",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["kind", "ref"]
        constraints = [models.UniqueConstraint(fields=["kind", "ref"], name="unique_finding_target")]

    def __str__(self):
        return f"{self.kind}:{self.name or self.ref}"


class Finding(UUIDModel):
    """One vulnerability in one package version on one target, whichever tools reported it."""

    key = models.CharField(
        max_length=32, unique=True, help_text="Hash of target kind+ref, vulnerability id, package, installed version."
    )
    target = models.ForeignKey(Target, on_delete=models.PROTECT, related_name="findings")
    asset = models.ForeignKey(
        "inventory.Asset", null=True, blank=True, on_delete=models.SET_NULL, related_name="findings",
        help_text="The target's inventory asset, for findings on a machine.",
    )
    vulnerability_id = models.CharField(max_length=128, db_index=True, help_text="CVE, else GHSA, else the tool's id.")
    aliases = models.JSONField(default=list, blank=True, help_text="Other ids of the same vulnerability.")
    title = models.TextField(blank=True)
    package_name = models.CharField(max_length=255, blank=True, db_index=True)
    package_type = models.CharField(max_length=40, blank=True, help_text="os, npm, pypi, deb, rpm, maven, go...")
    installed_version = models.CharField(max_length=255, blank=True)
    fixed_version = models.CharField(max_length=255, blank=True, help_text='"" when no fix is known.')
    purl = models.TextField(blank=True, verbose_name="package URL")
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.UNKNOWN)
    cvss_score = models.FloatField(null=True, blank=True, verbose_name="CVSS score")
    cvss_vector = models.CharField(max_length=255, blank=True, verbose_name="CVSS vector")
    locations = models.JSONField(default=list, blank=True, help_text="Paths the package was seen at.")
    state = models.CharField(max_length=20, choices=FindingState.choices, default=FindingState.OPEN)
    state_reason = models.TextField(blank=True, help_text="Why the finding was accepted or marked false positive.")
    state_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="When an acceptance or a false-positive mark lapses and the finding reopens."
    )
    state_changed_at = models.DateTimeField(default=timezone.now)
    state_changed_by = models.CharField(max_length=150, blank=True, help_text="User name, or the scan that did it.")
    correlation_id = models.CharField(
        max_length=128, blank=True, help_text="Of the scan or sync that opened (or last reopened) the finding."
    )
    fingerprint = models.CharField(max_length=32, help_text="Hash of the reported attributes: unchanged = equal.")
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    fixed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-first_seen_at", "id"]
        indexes = [
            models.Index(fields=["first_seen_at", "id"], name="finding_list_order"),  # the API's cursor pages
            models.Index(fields=["asset", "state", "severity"], name="finding_asset_state"),
            models.Index(fields=["state", "severity"], name="finding_state_severity"),
            models.Index(fields=["state_expires_at"], name="finding_state_expiry"),
        ]

    def __str__(self):
        return f"{self.vulnerability_id} in {self.package_name} {self.installed_version}"


class FindingSource(UUIDModel):
    """What one tool (through one integration, or by upload) says about one finding."""

    key = models.CharField(max_length=32, unique=True, help_text="Hash of the finding's key, tool and integration.")
    finding = models.ForeignKey(Finding, on_delete=models.PROTECT, related_name="sources")
    tool = models.CharField(max_length=40, help_text="trivy, grype, snyk, defender_endpoint...")
    integration = models.ForeignKey(
        "integrations.ExternalSystem", null=True, blank=True, on_delete=models.PROTECT,
        related_name="finding_sources", help_text="None: reported by an uploaded report.",
    )
    attributes = models.JSONField(default=dict, help_text="The finding as this tool last reported it (canonical).")
    fingerprint = models.CharField(max_length=32)
    present = models.BooleanField(
        default=True, help_text="Reported by this tool's latest scan of the target (False: a complete scan missed it)."
    )
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["first_seen_at", "id"]

    def __str__(self):
        return f"{self.tool} on {self.finding_id}"


class Scan(models.Model):
    """One uploaded report, or the findings part of one sync of a security integration."""

    tool = models.CharField(max_length=40)
    integration = models.ForeignKey(
        "integrations.ExternalSystem", null=True, blank=True, on_delete=models.PROTECT, related_name="scans"
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    uploader = models.CharField(max_length=150, blank=True, help_text="User name frozen at upload time.")
    filename = models.CharField(max_length=255, blank=True)
    targets = models.ManyToManyField(Target, related_name="scans", blank=True)
    status = models.CharField(max_length=20, choices=ScanStatus.choices)
    total = models.PositiveIntegerField(default=0, help_text="Findings the scan reported.")
    new = models.PositiveIntegerField(default=0)
    still_open = models.PositiveIntegerField(default=0)
    reopened = models.PositiveIntegerField(default=0)
    fixed = models.PositiveIntegerField(default=0)
    correlation_id = models.CharField(max_length=128, blank=True, db_index=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self):
        return f"{self.tool} scan {self.pk}"


class ImmutableHistory(Exception):
    pass


class FindingEvent(models.Model):
    """One state change of a finding: written once, never changed or deleted (the database refuses too:
    findings/evidence.py)."""

    finding = models.ForeignKey(Finding, on_delete=models.PROTECT, related_name="history")
    from_state = models.CharField(max_length=20, choices=FindingState.choices, blank=True)
    to_state = models.CharField(max_length=20, choices=FindingState.choices)
    actor = models.CharField(max_length=150, blank=True, help_text="User name frozen at the time, or the scan.")
    reason = models.TextField(blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    correlation_id = models.CharField(max_length=128, blank=True, help_text="Of the scan, sync or request.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["finding", "created_at", "id"]
        verbose_name = "finding event"

    def __str__(self):
        return f"{self.from_state or '-'} -> {self.to_state} of finding {self.finding_id}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ImmutableHistory(f"finding event {self.pk} is evidence and cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableHistory(f"finding event {self.pk} is evidence and cannot be deleted")
