"""The contract of the ITSM connectors (ServiceNow ITSM, Jira Service Management, Freshservice ITSM).

Outbound, an ITSM connector creates, finds and cancels one vendor change request for a Syncplane change.
Inbound, it is an ordinary connector with record_kind "change": `fetch` streams the change requests that
Syncplane created (recognised by its correlation id) updated since the cursor, one request per page, and
`map_change` turns a vendor record into an `ExternalChange` (a canonical record, in records.py), the same
shape whether it came from a poll, a webhook or a create call. The state mapping lives in the connector
because every vendor spells it differently; the rules of the state machine live in the changes app.
"""

from __future__ import annotations

from typing import ClassVar

from syncplane.integrations.base import Connector, MappedRecord
from syncplane.integrations.choices import Capability, RecordKind
from syncplane.integrations.records import ApprovalDecision, ChangeDraft, ExternalChange

# The change records live with the other canonical records; they are named here too, as part of this contract.
__all__ = ["RISK_BANDS", "ApprovalDecision", "ChangeDraft", "ExternalChange", "ItsmConnector", "risk_band"]

# risk_score 0-100 -> a band each connector turns into its own codes (runbook: "Risk score").
RISK_BANDS = ((80, "very_high"), (60, "high"), (30, "moderate"), (0, "low"))


def risk_band(score: int) -> str:
    for floor, band in RISK_BANDS:
        if score >= floor:
            return band
    return "low"


class ItsmConnector(Connector):
    record_kind = RecordKind.CHANGE
    capabilities = frozenset({
        Capability.TEST_CONNECTION, Capability.FULL, Capability.INCREMENTAL, Capability.CHANGE_REQUESTS,
    })
    # Polling is how approvals come back where no webhook is set up: a CAB waits on it, so poll often (an
    # incremental poll of a quiet ITSM tool is one request).
    default_sync_interval_minutes = 5
    # How the ITSM tool proves a webhook is its own: "hmac-sha256" (X-Hub-Signature: sha256=<hex of the
    # body's HMAC>) or "shared-secret" (X-Syncplane-Webhook-Secret: <secret>, a header the admin configures).
    webhook_signature: ClassVar[str] = "hmac-sha256"

    def create_change(self, draft: ChangeDraft) -> ExternalChange:
        """POST the change; not idempotent, so callers look it up with `find_change` first on a retry."""
        raise NotImplementedError

    def find_change(self, correlation_id: str) -> ExternalChange | None:
        """The change this correlation id created, if it exists (a retry after a lost answer)."""
        raise NotImplementedError

    def get_changes(self, external_ids: list[str]) -> list[ExternalChange]:
        """The current state of these changes, in as few requests as the API allows; missing ones are left out."""
        raise NotImplementedError

    def cancel_change(self, external_id: str, reason: str) -> ExternalChange:
        raise NotImplementedError

    def webhook_change_ids(self, payload: dict) -> list[str]:
        """Which changes (external ids) a notification is about. The notification is only a hint: its
        content is never trusted for the state, which is read back with `get_changes`."""
        raise NotImplementedError

    def map_change(self, raw: dict) -> ExternalChange:
        """Pure: a vendor change record (with its approvals, as `fetch` returns it) -> ExternalChange.
        Raises RecordError for a record that cannot be used."""
        raise NotImplementedError

    def map_record(self, raw: dict) -> MappedRecord:
        change = self.map_change(raw)
        return MappedRecord(change.external_id, change.as_attributes(), raw)
