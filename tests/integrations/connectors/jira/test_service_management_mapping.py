"""Jira Service Management mapping: a vendor issue (with its approvals field) -> ExternalChange. Pure, no HTTP."""

import logging
from datetime import UTC, datetime

import pytest

from syncplane.integrations.base import ConnectorContext
from syncplane.integrations.connectors.jira.service_management import (
    DEFAULT_RISK_MAP,
    JiraServiceManagementConnector,
    adf,
    jira_time,
    parse_jira_time,
)
from syncplane.integrations.errors import ConfigurationError, RecordError
from syncplane.integrations.itsm import risk_band
from syncplane.integrations.registry import get_connector_class

APPROVALS = "customfield_10025"
CATEGORY = {"new": {"id": 2, "key": "new"}, "indeterminate": {"id": 4, "key": "indeterminate"},
            "done": {"id": 3, "key": "done"}}


def connector(**config) -> JiraServiceManagementConnector:
    context = ConnectorContext(base_url="https://acme-it.atlassian.net", auth_type="basic",
                               config={"approvals_field": APPROVALS, **config},
                               credentials={"username": "syncplane@acme.example", "password": "token"},
                               resolve_secret=lambda ref: ref)
    return JiraServiceManagementConnector(context)


def approval(approval_id: str, final: str, *decisions: tuple[str, str], completed_ms: int | None = None) -> dict:
    value = {
        "id": approval_id, "name": "Change approval", "finalDecision": final, "canAnswerApproval": False,
        "approvers": [{"approver": {"accountId": f"acc-{who}", "displayName": who.title(),
                                    "emailAddress": f"{who}@acme.example", "active": True},
                       "approverDecision": decision} for who, decision in decisions],
        "createdDate": {"iso8601": "2024-06-01T09:13:02+0000", "jira": "2024-06-01T09:13:02.000+0000",
                        "friendly": "Today 9:13 AM", "epochMillis": 1717233182000},
    }
    if completed_ms:
        value["completedDate"] = {"epochMillis": completed_ms, "jira": "ignored", "iso8601": "ignored"}
    return value


def issue(status: str, category: str, *, resolution: str | None = None, approvals=None, **extra) -> dict:
    fields = {
        "summary": "Rotate TLS certificates",
        "status": {"id": "10101", "name": status, "statusCategory": CATEGORY[category]},
        "resolution": {"id": "1", "name": resolution} if resolution else None,
        "updated": "2024-06-01T14:05:31.120+0000",
        "labels": ["syncplane", "syncplane-4f6c2a"],
        APPROVALS: approvals if approvals is not None else [],
        **extra,
    }
    return {"id": "10042", "key": "ITSM-42", "fields": fields}


PENDING = [approval("8", "pending", ("zoe", "pending"), ("jurgen", "pending"))]
APPROVED = [approval("8", "approved", ("zoe", "approved"), ("jurgen", "pending"), completed_ms=1717240000000)]
DECLINED = [approval("8", "declined", ("zoe", "declined"), completed_ms=1717240000000)]


@pytest.mark.parametrize(("raw", "state"), [
    # the note's table, row by row
    (issue("Planning", "new"), "submitted"),
    (issue("Awaiting approval", "indeterminate", approvals=PENDING), "assess"),
    (issue("Awaiting implementation", "indeterminate", approvals=APPROVED), "approved"),
    (issue("Declined", "done", resolution="Declined", approvals=DECLINED), "rejected"),
    (issue("Implementing", "indeterminate", approvals=APPROVED), "implementing"),
    (issue("Completed", "done", resolution="Done", approvals=APPROVED), "completed"),
    (issue("Canceled", "done", resolution="Won't Do", approvals=PENDING), "cancelled"),
    # approvals decide, not status names alone
    (issue("Awaiting approval", "indeterminate", approvals=DECLINED), "rejected"),
    (issue("Declined", "done"), "rejected"),
    (issue("Awaiting implementation", "indeterminate"), "assess"),  # "approved" by name only: not taken
    (issue("Resolved", "done", resolution="Won't Do"), "cancelled"),  # cancelled by resolution
    (issue("Completed", "done", approvals=APPROVED), "assess"),  # done without a resolution: not completed
    (issue("Closed", "done", resolution="Done", approvals=APPROVED), "completed"),
    # a second approval step: the later one pending keeps the change in assess
    (issue("Awaiting approval", "indeterminate",
           approvals=[approval("8", "approved", ("zoe", "approved")), approval("9", "pending", ("jurgen", "pending"))]),
     "assess"),
])
def test_state_table(raw, state):
    assert connector().map_change(raw).state == state


def test_unknown_status_maps_to_a_safe_state_and_is_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="syncplane.integrations.jira_service_management"):
        change = connector().map_change(issue("Peer review", "indeterminate"))
    assert change.state == "assess"
    assert "unknown status Peer review" in change.detail
    assert "unknown Jira status 'Peer review'" in caplog.text
    assert connector().map_change(issue("Peer review", "indeterminate", approvals=APPROVED)).state == "approved"


def test_status_map_is_configurable():
    mapped = connector(status_map={"Peer review": "assess", "Scheduled": "approved"})
    assert mapped.map_change(issue("Peer review", "indeterminate", approvals=PENDING)).state == "assess"
    assert mapped.map_change(issue("Scheduled", "indeterminate", approvals=APPROVED)).state == "approved"
    with pytest.raises(ConfigurationError, match="status_map"):
        connector(status_map={"Scheduled": "green"})


def test_a_configured_status_map_extends_the_default_and_unknown_statuses_are_counted():
    mapped = connector(status_map={"Peer review": "assess"})
    # Implementing and Canceled come from the default map, which a configured one used to replace.
    assert mapped.map_change(issue("Implementing", "indeterminate", approvals=APPROVED)).state == "implementing"
    assert mapped.map_change(issue("Canceled", "done")).state == "cancelled"
    assert mapped.map_record(issue("Peer review", "indeterminate", approvals=PENDING)).unmapped == {}
    assert mapped.map_record(issue("Triage", "new")).unmapped == {"status": "Triage"}


def test_identity_correlation_and_dates():
    change = connector().map_change(issue("Planning", "new"))
    assert (change.external_id, change.number) == ("10042", "ITSM-42")
    assert change.correlation_id == "4f6c2a"
    assert change.updated_at == datetime(2024, 6, 1, 14, 5, 31, 120000, tzinfo=UTC)
    assert change.url == "https://acme-it.atlassian.net/browse/ITSM-42"
    assert change.as_attributes()["state"] == "submitted"


def test_approvals_only_decided_ones_with_their_ids():
    change = connector().map_change(issue("Awaiting implementation", "indeterminate", approvals=APPROVED))
    assert len(change.approvals) == 1  # jurgen's pending answer is not a decision
    decision = change.approvals[0]
    assert (decision.external_id, decision.approver, decision.decision) == ("8:acc-zoe", "zoe@acme.example",
                                                                             "approved")
    assert decision.decided_at == datetime.fromtimestamp(1717240000, tz=UTC)


def test_a_rejection_is_recorded_as_rejected_not_declined():
    change = connector().map_change(issue("Declined", "done", resolution="Declined", approvals=DECLINED))
    assert change.state == "rejected"
    assert [(a.decision, a.approver) for a in change.approvals] == [("rejected", "zoe@acme.example")]
    assert change.detail == "approval: declined"


def test_hidden_email_falls_back_to_the_display_name():
    hidden = approval("8", "approved", ("zoe", "approved"))
    del hidden["approvers"][0]["approver"]["emailAddress"]
    change = connector().map_change(issue("Awaiting implementation", "indeterminate", approvals=[hidden]))
    assert change.approvals[0].approver == "Zoe"


@pytest.mark.parametrize(("raw", "reason"), [
    ("not a dict", "not an object"),
    ({"key": "ITSM-1", "fields": {}}, "numeric issue id"),
    ({"id": "10001", "fields": {}}, "issue key"),
    ({"id": "10001", "key": "ITSM-1"}, "fields object"),
    ({"id": "10001", "key": "ITSM-1", "fields": {"status": None}}, "no status"),
    (issue("Planning", "new", updated="yesterday"), "not a Jira timestamp"),
    (issue("Planning", "new", **{APPROVALS: "oops"}), "approvals field is not a list"),
])
def test_unusable_records_raise_record_error(raw, reason):
    with pytest.raises(RecordError, match=reason):
        connector().map_change(raw)


@pytest.mark.parametrize(("score", "band", "option"), [
    (0, "low", "Low"), (29, "low", "Low"), (30, "moderate", "Medium"), (59, "moderate", "Medium"),
    (60, "high", "High"), (79, "high", "High"), (80, "very_high", "Critical"), (100, "very_high", "Critical"),
])
def test_risk_codes(score, band, option):
    assert risk_band(score) == band
    assert DEFAULT_RISK_MAP[band] == option


def test_risk_map_must_cover_every_band():
    with pytest.raises(ConfigurationError, match="risk_map"):
        connector(risk_map={"low": "Low"})


def test_dates_and_adf():
    assert jira_time(datetime(2024, 6, 4, 20, 0, tzinfo=UTC)) == "2024-06-04T20:00:00.000+0000"
    assert parse_jira_time("2024-06-04T22:00:00.000+0200", "x") == datetime(2024, 6, 4, 20, 0, tzinfo=UTC)
    doc = adf("first line\n\nsecond line")
    assert doc["type"] == "doc" and doc["version"] == 1
    texts = [node["content"][0]["text"] for node in doc["content"]]
    assert texts == ["first line", "second line"]  # one paragraph per line, no newline in a text node


def test_registered_with_its_description():
    cls = get_connector_class("jira_service_management")
    described = cls.describe()
    assert described["category"] == "itsm" and described["record_kind"] == "change"
    assert set(described["auth_types"]) == {"basic", "bearer"}
    assert cls.webhook_signature == "hmac-sha256"
    assert cls.validated_config({})["project_key"] == "ITSM"


def test_webhook_change_ids():
    c = connector()
    assert c.webhook_change_ids({"webhookEvent": "jira:issue_updated", "issue": {"id": "10042", "key": "ITSM-42"}}) \
        == ["10042"]
    assert c.webhook_change_ids({"issues": [{"id": "1"}, {"id": "1"}, {"id": "x"}]}) == ["1"]
    assert c.webhook_change_ids({"issue": {"key": "ITSM-42"}}) == []
