"""The Freshservice ITSM mapping as pure functions, on payloads shaped like the API note's (§2, §3)."""

import copy
import logging
from datetime import UTC, datetime

import pytest

from syncplane.changes.choices import ChangeState
from syncplane.integrations.base import ConnectorContext
from syncplane.integrations.connectors.freshservice.itsm import (
    FreshserviceITSMConnector,
    canonical_state,
    map_change,
    risk_code,
    webhook_ids,
)
from syncplane.integrations.errors import ConfigurationError, RecordError
from syncplane.integrations.itsm import ChangeDraft

FIELD = "syncplane_correlation_id"
CHANGE = {
    "id": 57, "requester_id": 21000418006, "agent_id": None, "group_id": 21000188001,
    "subject": "Rotate TLS certificates on edge load balancers",
    "description": "<div>Planned rotation; rollback by restoring previous certificate.</div>",
    "description_text": "Planned rotation; rollback by restoring previous certificate.",
    "status": 1, "priority": 2, "impact": 2, "risk": 2, "change_type": 3, "approval_status": 4,
    "planned_start_date": "2024-06-04T20:00:00Z", "planned_end_date": "2024-06-04T22:00:00Z",
    "department_id": None, "category": None, "sub_category": None, "item_category": None,
    "change_window_id": None, "maintenance_window": {}, "blackout_window": {}, "assets": [], "impacted_services": [],
    "custom_fields": {FIELD: "3f2a9c1e-corr", "business_justification": None},
    "created_at": "2024-06-01T09:12:44Z", "updated_at": "2024-06-01T09:12:44Z",
}
APPROVAL = {"id": 21000143868, "approver_id": 21001931878, "approver_name": "Zoë Ødegård",
            "approval_type": 2, "level": 1, "user_id": 21000418006, "user_name": "Jürgen Müller",
            "approval_status": {"id": 0, "name": "requested"}, "delegatee": None, "latest_remark": None,
            "created_at": "2024-06-01T09:15:02Z", "updated_at": "2024-06-01T09:15:02Z"}


def change(**overrides):
    raw = copy.deepcopy(CHANGE)
    raw.update(overrides)
    return raw


def row(status_id, name, **overrides):
    return {**copy.deepcopy(APPROVAL), "approval_status": {"id": status_id, "name": name}, **overrides}


def state_of(raw, **kwargs):
    return map_change(raw, correlation_field=FIELD, **kwargs).state


# (status, approval_status, has planned start) -> canonical: every row of the module's state table.
STATE_TABLE = [
    (1, 4, True, "submitted"), (1, None, True, "submitted"), (1, 3, True, "submitted"),
    (1, 0, True, "assess"), (1, 5, True, "assess"), (1, 1, True, "approved"), (1, 2, True, "rejected"),
    (2, 4, True, "assess"), (2, 0, True, "assess"), (2, 1, True, "approved"), (2, 2, True, "rejected"),
    (3, 0, True, "assess"), (3, 5, True, "assess"), (3, 3, True, "assess"), (3, 1, True, "approved"),
    (3, 2, True, "rejected"),
    (4, 1, True, "scheduled"), (4, 1, False, "approved"), (4, 4, True, "assess"), (4, 0, True, "assess"),
    (4, 2, True, "rejected"),
    (5, 1, True, "implementing"), (5, 4, True, "implementing"), (5, 2, True, "rejected"),
    (6, 1, True, "completed"), (6, 3, True, "cancelled"), (6, 4, True, "cancelled"), (6, 0, True, "cancelled"),
    (6, 2, True, "rejected"),
]


@pytest.mark.parametrize(("status", "approval", "planned", "expected"), STATE_TABLE)
def test_every_row_of_the_state_table(status, approval, planned, expected):
    raw = change(status=status, approval_status=approval,
                 planned_start_date=CHANGE["planned_start_date"] if planned else None)
    assert state_of(raw) == expected
    assert expected in ChangeState.values


def test_a_new_change_maps_every_field():
    mapped = map_change(CHANGE, correlation_field=FIELD, base_url="https://acme.freshservice.com/")
    assert mapped.external_id == "57" and mapped.number == "57"
    assert mapped.state == "submitted"
    assert mapped.correlation_id == "3f2a9c1e-corr"
    assert mapped.updated_at == datetime(2024, 6, 1, 9, 12, 44, tzinfo=UTC)
    assert mapped.approvals == []
    assert mapped.url == "https://acme.freshservice.com/a/changes/57"
    assert mapped.detail == "status: Open; approval: not requested"


def test_approved_comes_from_the_approval_fields_not_the_status_name():
    # Pending Release without an approval is not an approval.
    assert state_of(change(status=4, approval_status=4)) == "assess"
    # An approval while the status still says Awaiting Approval is one.
    assert state_of(change(status=3, approval_status=1)) == "approved"


def test_approvals_keep_only_decisions():
    raw = change(status=4, approval_status=1, approvals=[
        row(1, "approved", latest_remark="Looks safe", updated_at="2024-06-02T10:00:00Z"),
        row(0, "requested", id=21000143869),
        row(3, "cancelled", id=21000143870),
    ])
    mapped = map_change(raw, correlation_field=FIELD)
    assert mapped.state == "scheduled"
    assert len(mapped.approvals) == 1
    decision = mapped.approvals[0]
    assert (decision.external_id, decision.approver, decision.decision, decision.comment) == (
        "21000143868", "Zoë Ødegård", "approved", "Looks safe")
    assert decision.decided_at == datetime(2024, 6, 2, 10, 0, tzinfo=UTC)


def test_a_rejection_wins_over_any_status_and_carries_the_remark():
    raw = change(status=4, approval_status=2, approvals=[
        row(2, "rejected", latest_remark={"remark": "No rollback plan"}, approver_name=None)])
    mapped = map_change(raw, correlation_field=FIELD)
    assert mapped.state == "rejected"
    assert mapped.approvals[0].decision == "rejected"
    assert mapped.approvals[0].comment == "No rollback plan"
    assert mapped.approvals[0].approver == "approver 21001931878"  # no name: the id, never an empty approver
    assert mapped.detail == "status: Pending Release; approval: rejected"


def test_custom_status_maps_through_status_map_and_unknown_ones_wait_and_are_logged(caplog):
    assert state_of(change(status=7, approval_status=1), status_map={"7": "implementing"}) == "implementing"
    assert state_of(change(status=7, approval_status=2), status_map={"7": "implementing"}) == "rejected"
    with caplog.at_level(logging.WARNING, logger="syncplane.integrations.freshservice_itsm"):
        assert state_of(change(status=9, approval_status=0)) == "assess"
        assert state_of(change(status=9, approval_status=1)) == "approved"
    assert [r.status for r in caplog.records] == [9, 9]
    assert canonical_state(9, 0, None) is None


def test_a_status_no_map_knows_is_counted_on_the_run():
    mapper = connector(status_map={"7": "implementing"})
    assert mapper.map_record(change(status=7)).unmapped == {}
    assert mapper.map_record(change(status=6)).unmapped == {}
    assert mapper.map_record(change(status=9)).unmapped == {"status": "9"}


def test_a_change_without_the_correlation_field_maps_with_an_empty_one():
    raw = change(custom_fields={FIELD: None, "business_justification": "x"})
    assert map_change(raw, correlation_field=FIELD).correlation_id == ""


@pytest.mark.parametrize(("broken", "reason"), [
    ({"id": None}, "no integer id"),
    ({"id": "57"}, "no integer id"),
    ({"status": None}, "no integer status"),
    ({"status": "Open"}, "no integer status"),
    ({"approval_status": "approved"}, "approval_status"),
    ({"updated_at": "01/06/2024 09:12"}, "updated_at"),
    ({"custom_fields": ["x"]}, "custom_fields"),
    ({"approvals": {"id": 1}}, "approvals"),
    ({"approvals": [{"approval_status": {"id": 1}}]}, "approval row"),
])
def test_a_record_that_cannot_be_used_raises_record_error(broken, reason):
    with pytest.raises(RecordError, match=reason):
        map_change(change(**broken), correlation_field=FIELD)
    with pytest.raises(RecordError):
        map_change(["not", "an", "object"], correlation_field=FIELD)


@pytest.mark.parametrize(("score", "code"), [(0, 1), (29, 1), (30, 2), (59, 2), (60, 3), (79, 3), (80, 4),
                                             (100, 4)])
def test_risk_score_to_freshservice_risk(score, code):
    assert risk_code(score) == code


def test_risk_map_is_configurable():
    assert risk_code(85, {"low": 1, "moderate": 1, "high": 2, "very_high": 3}) == 3


def test_webhook_ids_from_the_rule_body_and_app_events():
    assert webhook_ids({"change_id": "17"}) == ["17"]
    assert webhook_ids({"change_id": 17, "event": "approved"}) == ["17"]
    assert webhook_ids({"change_id": "#CHN-17"}) == ["17"]
    assert webhook_ids({"data": {"change": {"id": 18, "changes": {"status": [3, 4]}}}}) == ["18"]
    assert webhook_ids({"change_ids": ["3", 4, "3"]}) == ["3", "4"]
    assert webhook_ids({"change_id": "{{change.id}}"}) == []  # a rule saved without its placeholder filled
    assert webhook_ids({"something": "else"}) == [] and webhook_ids(["17"]) == []


def connector(**config):
    # Nothing is sent: a loopback URL keeps the outbound policy from resolving a real host name.
    context = ConnectorContext(base_url="http://127.0.0.1:9/freshservice", auth_type="api_key", config=config,
                               credentials={"api_key": "k"}, resolve_secret=lambda ref: ref)
    return FreshserviceITSMConnector(context)


def test_create_body_follows_the_note():
    draft = ChangeDraft(
        correlation_id="corr-9", title="  Patch <core> switches ", description="Line one\n\nLine <two>",
        risk_score=82, planned_start=datetime(2024, 6, 4, 22, 0, tzinfo=UTC),
        planned_end=datetime(2024, 6, 5, 0, 30, tzinfo=UTC), requester_email="cm@acme.example",
        affected_assets=("SW-BER-01",),
    )
    body = connector(group_id=21000188001, change_type=3, workspace_id=2).create_body(draft, 21000418006)
    assert body["requester_id"] == 21000418006
    assert body["subject"] == "Patch <core> switches"
    assert body["description"].startswith("<p>Line one</p><p>Line &lt;two&gt;</p>")
    assert "<li>SW-BER-01</li>" in body["description"] and "corr-9" in body["description"]
    assert (body["status"], body["priority"], body["impact"], body["risk"], body["change_type"]) == (1, 2, 2, 4, 3)
    assert body["planned_start_date"] == "2024-06-04T22:00:00Z"
    assert body["planned_end_date"] == "2024-06-05T00:30:00Z"
    assert body["custom_fields"] == {FIELD: "corr-9"}
    assert body["group_id"] == 21000188001 and body["workspace_id"] == 2
    assert "approval_status" not in body  # server-managed


def test_config_is_validated():
    validated = FreshserviceITSMConnector.validated_config
    for bad, where in (({"change_type": 5}, "change_type"), ({"correlation_field": "has space"}, "correlation_field"),
                       ({"status_map": {"7": "done"}}, "status_map"), ({"risk_map": {"low": 1}}, "risk_map"),
                       ({"page_size": 101}, "page_size"), ({"requester": 1}, "requester")):
        with pytest.raises(ConfigurationError, match=where):
            validated(bad)
    config = validated({})
    assert config["correlation_field"] == FIELD and config["risk_map"] == {"low": 1, "moderate": 2, "high": 3,
                                                                            "very_high": 4}
    assert FreshserviceITSMConnector.webhook_signature == "shared-secret"
    with pytest.raises(ConfigurationError, match="API key"):
        FreshserviceITSMConnector(ConnectorContext(
            base_url="http://127.0.0.1:9", auth_type="basic", config={},
            credentials={"username": "u", "password": "p"}, resolve_secret=lambda ref: ref))
