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


# --- to come -----------------------------------------------------------------------------------------------
# Findings (security connectors: target, vulnerability_id, package, versions, severity, cvss_score, state) and
# events (monitoring sinks: sync.completed, change.approved, vulnerability.critical...) get their records
# here, next to these, when their connectors are written.
