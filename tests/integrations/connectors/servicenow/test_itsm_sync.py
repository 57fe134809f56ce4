"""ServiceNow ITSM end to end: a Syncplane change goes out through the outbox and the connector to the
simulated instance, the simulated CAB decides, and the sync engine brings the decision back."""

import httpx
import pytest

from syncplane.integrations.choices import AuthType, Category, RunStatus, SystemType
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import ExternalSystem
from syncplane.integrations.secrets import to_reference
from tests.integrations.assertions import assert_counters_match_outcomes

pytestmark = pytest.mark.django_db


def _change_sink_missing() -> str:
    try:
        from syncplane.integrations.sinks import sink_for

        sink_for("change", 0)
    except (ImportError, ValueError) as exc:
        return f"the changes app's ChangeSink is not there yet ({exc})"
    return ""


@pytest.fixture
def itsm(simulator):
    reason = _change_sink_missing()
    if reason:
        pytest.skip(reason)
    return ExternalSystem.objects.create(
        name="ServiceNow ITSM test",
        system_type=SystemType.SERVICENOW_ITSM,
        category=Category.ITSM,
        base_url=f"{simulator.url}/servicenow",
        auth_type=AuthType.BASIC,
        credentials={"username": "syncplane.integration", "password": to_reference("demo-password")},
        config={"page_size": 2},
    )


def submitted(system, title: str, risk_score: int):
    from syncplane.changes import actions
    from syncplane.changes.models import ChangeRequest
    from syncplane.integrations import outbox
    from syncplane.integrations.models import OutboxMessage

    change = actions.submit(ChangeRequest.objects.create(title=title, risk_score=risk_score), external_system=system)
    message = OutboxMessage.objects.get(subject_type="change", subject_id=str(change.pk))
    assert outbox.deliver(message.pk) == "delivered"
    change.refresh_from_db()
    return change


def sync(system, mode="full"):
    return assert_counters_match_outcomes(run_sync(start_sync(system, mode=mode).pk))


def test_cab_decisions_reach_the_changes_through_the_sync_engine(itsm, simulator):
    approved = submitted(itsm, "Rotate TLS certificates", 85)
    rejected = submitted(itsm, "Upgrade the core switches", 40)
    untouched = submitted(itsm, "Patch the print servers", 10)
    assert approved.external_change_request_id == "CHG0030001" and len(approved.external_key) == 32
    assert {approved.state, rejected.state, untouched.state} == {"assess"}  # approval requested at create
    assert simulator.servicenow.itsm.changes[approved.external_key]["risk"] == "1"

    control = f"{simulator.url}/servicenow/_control/changes"
    assert httpx.post(f"{control}/{approved.external_change_request_id}/approve", json={"comment": "Go"}).is_success
    assert httpx.post(f"{control}/{rejected.external_change_request_id}/reject", json={"comment": "Freeze"}).is_success

    log = sync(itsm)
    assert log.status == RunStatus.SUCCESS, log.error_summary
    assert (log.records_read, log.records_updated, log.records_failed) == (3, 2, 0)
    for change in (approved, rejected, untouched):
        change.refresh_from_db()
    assert (approved.state, rejected.state, untouched.state) == ("approved", "rejected", "assess")
    assert [(a.decision, a.comment) for a in approved.approvals.all()] == [("approved", "Go")]
    assert [(a.decision, a.comment) for a in rejected.approvals.all()] == [("rejected", "Freeze")]

    again = sync(itsm, mode="incremental")
    assert again.status == RunStatus.SUCCESS and again.records_updated == 0
