"""The canonical records: what a connector's mapping produces, on one page.

A connector maps a vendor record to one of these shapes and nothing else; the domain apps' sinks validate
them and own what happens next. The vocabularies (asset type, status, compliance, change state, decision)
are defined here once; the domain apps re-export them for their models (`inventory/choices.py`,
`changes/choices.py`), so a connector never imports a domain app.

- Assets (record_kind "asset"): `AssetAttributes`, the canonical fields of DESIGN.md.
- Directory (record_kind "directory"): `DirectoryUser`, `DirectoryGroup` (with its members) and
  `DirectoryDevice` (an asset the directory knows).
- Change requests (record_kind "change"): `ChangeDraft` out, `ExternalChange` (with its
  `ApprovalDecision`s) back.

Dates travel as ISO-8601 strings in attributes (they are stored as JSON), as datetimes in the dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypedDict

from django.db import models

# --- vocabularies ------------------------------------------------------------------------------------------


class AssetType(models.TextChoices):
    LAPTOP = "laptop", "Laptop"
    DESKTOP = "desktop", "Desktop"
    SERVER = "server", "Server"
    VIRTUAL_MACHINE = "virtual_machine", "Virtual machine"
    MOBILE = "mobile", "Mobile"
    TABLET = "tablet", "Tablet"
    NETWORK_DEVICE = "network_device", "Network device"
    PRINTER = "printer", "Printer"
    CONTAINER_IMAGE = "container_image", "Container image"
    OTHER = "other", "Other"


class AssetStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    IN_STOCK = "in_stock", "In stock"
    IN_MAINTENANCE = "in_maintenance", "In maintenance"
    RETIRED = "retired", "Retired"
    DISPOSED = "disposed", "Disposed"
    UNKNOWN = "unknown", "Unknown"


class ComplianceState(models.TextChoices):
    COMPLIANT = "compliant", "Compliant"
    NONCOMPLIANT = "noncompliant", "Non-compliant"
    UNKNOWN = "unknown", "Unknown"
    NOT_APPLICABLE = "not_applicable", "Not applicable"  # the source does not judge this device (no policy)


class ChangeState(models.TextChoices):
    """The CAB life cycle of a change request (DESIGN.md, canonical vocabulary)."""

    DRAFT = "draft", "Draft"
    SUBMITTED = "submitted", "Submitted"
    ASSESS = "assess", "Assess"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    SCHEDULED = "scheduled", "Scheduled"
    IMPLEMENTING = "implementing", "Implementing"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


class Decision(models.TextChoices):
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


# --- assets ------------------------------------------------------------------------------------------------


class AssetAttributes(TypedDict, total=False):
    """One asset as a source reports it. A field the source does not know is "" (None for the dates and the
    score); a field left out is not reported by this kind of source at all."""

    name: str
    asset_type: str  # an AssetType value
    status: str  # an AssetStatus value
    serial_number: str
    asset_tag: str
    manufacturer: str
    model: str
    hostname: str  # the short host name; the domain goes into fqdn
    fqdn: str  # lower case
    ip_address: str
    mac_address: str  # aa:bb:cc:dd:ee:ff (syncplane.core.normalize.normalize_mac), "" when unknown
    operating_system: str
    os_version: str
    owner_email: str  # lower case
    location: str
    department: str
    compliance_state: str  # a ComplianceState value
    compliance_score: int | None  # 0-100
    last_seen_at: str | None  # ISO-8601, UTC
    # From MDMs (Intune, Android Enterprise) and endpoint security (Defender for Endpoint):
    compliance_reasons: list[str]  # why the source judged it so, in its words ([] when compliant or unknown)
    compliance_checked_at: str | None  # ISO-8601, UTC: when the source last evaluated compliance
    assigned_to: str  # lower-case UPN or e-mail of the person the source says holds the device
    azure_ad_device_id: str  # lower-case Entra deviceId (not the object id): Entra, Intune and Defender share it
    exposure_level: str  # Defender: none / low / medium / high ("" when unknown)
    risk_score: str  # Defender: none / informational / low / medium / high
    health_status: str  # Defender sensor health: active / inactive / impaired / ...
    onboarding_status: str  # Defender: onboarded / can_be_onboarded / unsupported / insufficient_info


ASSET_FIELDS: tuple[str, ...] = tuple(AssetAttributes.__annotations__)


# --- directory ---------------------------------------------------------------------------------------------
# In a delta (Entra ID), a property the item does not carry is unchanged: it is left out of the record, which
# is why these shapes are total=False. `removed` is always there.


class DirectoryUser(TypedDict, total=False):
    kind: Literal["user"]
    username: str  # lower-cased userPrincipalName or sAMAccountName: the Django user name
    email: str
    first_name: str
    last_name: str
    display_name: str
    is_active: bool
    dn: str  # "" outside LDAP
    removed: bool  # gone from the directory (or soft-deleted): the user is deactivated, never deleted


class DirectoryGroup(TypedDict, total=False):
    """A group and what this record says about its members, named as `member_ref` says: by the members'
    external ids (Entra) or by their DNs (Active Directory). `members` is the complete list, or None when the
    record only reports changes (`members_added` / `members_removed`, as Graph deltas do). A large group may
    come in several records; the sink merges them."""

    kind: Literal["group"]
    name: str
    dn: str
    member_ref: Literal["external_id", "dn"]
    members: list[str] | None
    members_added: list[str]
    members_removed: list[str]
    removed: bool


class DirectoryDevice(TypedDict, total=False):
    """A device the directory knows (a joined computer, a registered phone): an asset of the inventory."""

    kind: Literal["device"]
    removed: bool
    asset: AssetAttributes  # absent when removed


# --- change requests ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeDraft:
    """What Syncplane asks the ITSM tool to create."""

    correlation_id: str  # Syncplane's idempotency key for this change: a retry looks it up before creating
    title: str
    description: str
    risk_score: int
    planned_start: datetime | None = None
    planned_end: datetime | None = None
    requester_email: str = ""
    affected_assets: tuple[str, ...] = ()  # names a person recognises, for the description


@dataclass
class ApprovalDecision:
    external_id: str  # the vendor's id of this one decision: the same decision is never recorded twice
    approver: str
    decision: str  # a Decision value: "approved" | "rejected"
    comment: str = ""
    decided_at: datetime | None = None


@dataclass
class ExternalChange:
    external_id: str  # the stable key every later call uses (sys_id, issue id, change id)
    number: str  # what a person sees: CHG0030001, ITSM-42, 17
    state: str  # a ChangeState value
    correlation_id: str = ""  # Syncplane's correlation id as found on the record
    updated_at: datetime | None = None
    approvals: list[ApprovalDecision] = field(default_factory=list)
    url: str = ""
    detail: str = ""  # vendor wording worth showing, e.g. "approval: rejected" or a close code

    def as_attributes(self) -> dict:
        return {
            "number": self.number,
            "state": self.state,
            "correlation_id": self.correlation_id,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "approvals": [
                {
                    "external_id": a.external_id,
                    "approver": a.approver,
                    "decision": a.decision,
                    "comment": a.comment,
                    "decided_at": a.decided_at.isoformat() if a.decided_at else None,
                }
                for a in self.approvals
            ],
            "url": self.url,
            "detail": self.detail,
        }


# --- findings ----------------------------------------------------------------------------------------------


class Severity(models.TextChoices):
    """Every tool's scale is mapped to this one (Grype's Negligible -> info, Defender's none -> info...)."""

    CRITICAL = "critical", "Critical"
    HIGH = "high", "High"
    MEDIUM = "medium", "Medium"
    LOW = "low", "Low"
    INFO = "info", "Info"
    UNKNOWN = "unknown", "Unknown"


class FindingState(models.TextChoices):
    OPEN = "open", "Open"
    FIXED = "fixed", "Fixed"
    ACCEPTED = "accepted", "Risk accepted"
    FALSE_POSITIVE = "false_positive", "False positive"


class FindingTarget(TypedDict, total=False):
    """What was scanned. `kind` "asset" is a machine of the inventory, found by the identification fields in
    `asset` (serial, host name, Entra device id...); "image" a container image, `ref` its digest reference
    (repo@sha256:...) when known, else its name:tag; "repository" a source repository or project path."""

    kind: Literal["asset", "image", "repository"]
    ref: str  # the target's stable key within its kind
    name: str  # what a person recognises (image name:tag, host name, project name)
    asset: AssetAttributes  # identification fields, for kind "asset"


class FindingRecord(TypedDict, total=False):
    """One vulnerability in one package version on one target, as one tool reports it (record_kind
    "finding"). A MappedRecord's external_id for a finding is stable across scans: tool-independent parts
    only (target kind+ref, vulnerability id, package name, installed version), so two tools agree on it."""

    kind: Literal["finding"]
    target: FindingTarget
    vulnerability_id: str  # CVE-..., else GHSA-..., else the tool's id (SNYK-...)
    aliases: list[str]
    title: str
    package_name: str
    package_type: str  # os / npm / pypi / deb / rpm / maven / go / ...
    installed_version: str
    fixed_version: str  # "" when no fix is known
    purl: str
    severity: str  # a Severity value
    cvss_score: float | None
    cvss_vector: str
    locations: list[str]  # paths the package was seen at
    tool: str  # the system_type of the tool that reported it: trivy / grype / snyk / defender_endpoint
    first_seen_at: str | None  # the tool's own first-seen date, ISO-8601, when it has one


class ScanSummary(TypedDict, total=False):
    """Closes one target's scan by one tool in a stream of finding records (kind "scan"), after that target's
    findings. When `complete`, every open finding of this target from this tool (and integration) that the
    scan did not report is fixed; a failed or partial scan says complete False, or sends no summary: it
    fixes nothing. A clean target (no finding) still sends its summary: that is how its findings get fixed."""

    kind: Literal["scan"]
    target: FindingTarget
    tool: str
    complete: bool
    scanned_at: str | None  # ISO-8601, UTC


class SecurityMachine(TypedDict, total=False):
    """A machine an endpoint-security tool knows (record_kind "finding", kind "machine"): an asset of the
    inventory, enriched with exposure, risk, health and onboarding (AssetAttributes fields)."""

    kind: Literal["machine"]
    removed: bool
    asset: AssetAttributes


# --- events ------------------------------------------------------------------------------------------------


# The event types Syncplane emits (docs/events.md). A monitoring sink's config chooses among them with
# `event_types` (EVENT_TYPES_SCHEMA): a list of types or prefixes ending in "*" ("sync.*"), default all.
EVENT_TYPES = (
    "sync.completed", "sync.failed",
    "change.submitted", "change.approved", "change.rejected", "change.implemented", "change.cancelled",
    "integration.unhealthy", "integration.recovered",
    "vulnerability.critical",
)
EVENT_TYPES_SCHEMA = {
    "type": "array",
    "items": {"type": "string", "pattern": r"^([a-z]+(\.[a-z_]+)?|[a-z]+\.\*|\*)$"},
    "default": ["*"],
    "description": "Which events this sink receives: event types or prefixes such as \"sync.*\"; [\"*\"] for all.",
}


class EventEnvelope(TypedDict):
    """What a monitoring sink receives (docs/events.md): one versioned envelope per domain event. The id is
    the idempotency key every sink uses (Elastic `_id`, Datadog aggregation key, Splunk event field)."""

    specversion: str  # "1"
    id: str  # UUID, as a string
    type: str  # sync.completed, sync.failed, change.approved, integration.unhealthy, vulnerability.critical...
    time: str  # ISO-8601, UTC
    correlation_id: str
    subject: dict  # {"type": "integration" | "change" | "finding" | ..., "id": str, "name": str}
    data: dict
