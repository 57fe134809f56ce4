"""The ServiceNow ITSM mapping as pure functions, on records shaped like the Table API's raw answers
(sysparm_display_value=false, reference links excluded) with their decided approvals attached."""

import logging
from datetime import UTC, datetime, timedelta, timezone

import pytest

from syncplane.changes.choices import ChangeState
from syncplane.integrations.base import ConnectorContext
from syncplane.integrations.connectors.servicenow.itsm import (
    APPROVALS_KEY,
    RISK_CODES,
    RISK_SCORES,
    ServiceNowItsmConnector,
    canonical_state,
    instance_date,
    map_change,
)
from syncplane.integrations.errors import ConfigurationError, RecordError
from syncplane.integrations.itsm import risk_band

SYS_ID = "c2a8f6e41b3f0110a1b2c3d4e5f60718"
APPROVER = "5b7c200e0a0a0b2a001bb1c5d3a6f7e1"


def change(**fields) -> dict:
    """A change_request as the connector reads it (composed after the note's 201 example)."""
    return {
        "sys_id": SYS_ID,
        "number": "CHG0030001",
        "state": "-5",
        "approval": "not requested",
        "approval_set": "",
        "on_hold": "false",
        "on_hold_reason": "",
        "close_code": "",
        "type": "normal",
        "risk": "3",
        "short_description": "Rotate TLS certificates on edge load balancers",
        "correlation_id": "syncplane-chg-8f3c",
        "correlation_display": "Syncplane",
        "start_date": "2024-06-04 20:00:00",
        "end_date": "2024-06-04 22:00:00",
        "assignment_group": "d625dccec0a8016700a222a0f7900d06",
        "sys_created_on": "2024-06-01 09:12:44",
        "sys_updated_on": "2024-06-01 09:12:44",
        **fields,
    }


def approval_row(sys_id: str, state: str, comments: str = "", updated: str = "2024-06-02 10:00:00") -> dict:
    return {
        "sys_id": sys_id, "sysapproval": SYS_ID, "approver": APPROVER, "approver.name": "Casey Approver",
        "approver.email": "cab.manager@acme.example", "state": state, "comments": comments, "sys_updated_on": updated,
    }


# Every row of the module's state table: (state, approval) -> canonical
STATE_TABLE = [
    ("4", "rejected", ChangeState.CANCELLED),
    ("4", "not requested", ChangeState.CANCELLED),
    ("3", "approved", ChangeState.COMPLETED),
    ("0", "approved", ChangeState.COMPLETED),
    ("-1", "approved", ChangeState.IMPLEMENTING),
    ("-5", "rejected", ChangeState.REJECTED),  # the usual shape of a rejection: back to New
    ("-4", "rejected", ChangeState.REJECTED),
    ("-3", "rejected", ChangeState.REJECTED),
    ("-2", "rejected", ChangeState.REJECTED),
    ("-3", "approved", ChangeState.APPROVED),  # the flow has not moved it to Scheduled yet
    ("-2", "approved", ChangeState.APPROVED),
    ("-2", "not requested", ChangeState.APPROVED),  # a standard change: pre-approved, no approvers
    ("-5", "requested", ChangeState.ASSESS),
    ("-4", "requested", ChangeState.ASSESS),
    ("-3", "requested", ChangeState.ASSESS),
    ("-5", "not requested", ChangeState.SUBMITTED),
    ("-5", "cancelled", ChangeState.SUBMITTED),
    ("-5", "not_required", ChangeState.SUBMITTED),
    ("-4", "not requested", ChangeState.ASSESS),
    ("-3", "not requested", ChangeState.ASSESS),
]


@pytest.mark.parametrize(("state", "approval", "expected"), STATE_TABLE)
def test_every_row_of_the_state_table(state, approval, expected):
    assert canonical_state(state, approval) == expected
    mapped = map_change(change(state=state, approval=approval))
    assert mapped.state == expected.value
    assert type(mapped.state) is str  # plain text, so the attributes serialise anywhere


def test_unknown_state_is_a_safe_pending_state_and_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="syncplane.integrations.servicenow_itsm"):
        assert map_change(change(state="-6", approval="not requested")).state == "assess"
    assert "unknown change_request state '-6'" in caplog.text
    # An unknown state does not hide a decision the approval field records.
    assert map_change(change(state="7", approval="rejected")).state == "rejected"


def test_the_create_answer_maps_to_both_ids_and_the_correlation_id():
    mapped = map_change(change(), "https://acme.service-now.com")
    assert (mapped.external_id, mapped.number) == (SYS_ID, "CHG0030001")
    assert mapped.correlation_id == "syncplane-chg-8f3c"
    assert mapped.state == "submitted"
    assert mapped.updated_at == datetime(2024, 6, 1, 9, 12, 44, tzinfo=UTC)  # raw dates are UTC
    assert mapped.url == f"https://acme.service-now.com/nav_to.do?uri=change_request.do%3Fsys_id%3D{SYS_ID}"
    assert mapped.approvals == []
    assert mapped.detail == "approval: not requested"


def test_an_approval_maps_the_decided_rows_only():
    raw = change(state="-2", approval="approved", approval_set="2024-06-02 10:00:00", **{APPROVALS_KEY: [
        approval_row("a" * 32, "approved", "Looks safe", "2024-06-02 10:00:00"),
        approval_row("b" * 32, "requested"),
        approval_row("c" * 32, "not_required"),
    ]})
    mapped = map_change(raw)
    assert mapped.state == "approved"
    assert len(mapped.approvals) == 1
    decision = mapped.approvals[0]
    assert (decision.external_id, decision.decision, decision.comment) == ("a" * 32, "approved", "Looks safe")
    assert decision.approver == "Casey Approver"
    assert decision.decided_at == datetime(2024, 6, 2, 10, 0, tzinfo=UTC)


def test_a_rejection_is_read_from_the_approval_field_not_the_state():
    raw = change(state="-5", approval="rejected", **{APPROVALS_KEY: [
        approval_row("d" * 32, "rejected", "Not during the freeze"),
        approval_row("e" * 32, "not_required"),
    ]})
    mapped = map_change(raw)
    assert mapped.state == "rejected"
    assert [(a.decision, a.comment) for a in mapped.approvals] == [("rejected", "Not during the freeze")]
    assert "approval: rejected" in mapped.detail


def test_approver_falls_back_to_email_then_sys_id_and_reference_objects_are_read():
    row = approval_row("f" * 32, "approved")
    row.update({"approver.name": "", "approver": {"link": "https://x/api/now/table/sys_user/1", "value": APPROVER}})
    assert map_change(change(**{APPROVALS_KEY: [row]})).approvals[0].approver == "cab.manager@acme.example"
    row["approver.email"] = ""
    assert map_change(change(**{APPROVALS_KEY: [row]})).approvals[0].approver == APPROVER


def test_close_code_and_on_hold_are_shown_in_detail():
    closed = map_change(change(state="3", approval="approved", close_code="unsuccessful"))
    assert closed.state == "completed" and "close code: unsuccessful" in closed.detail
    held = map_change(change(state="-2", approval="approved", on_hold="true", on_hold_reason="Awaiting vendor"))
    assert "on hold: Awaiting vendor" in held.detail


def test_display_value_all_shape_is_read_by_its_raw_value():
    raw = {k: {"display_value": f"shown {v}", "value": v} for k, v in change(state="-1", approval="approved").items()}
    mapped = map_change(raw)
    assert (mapped.external_id, mapped.state) == (SYS_ID, "implementing")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not a record", "not an object"),
        (change(sys_id=""), "no usable sys_id"),
        (change(sys_id="CHG0030001"), "no usable sys_id"),
        (change(number=""), "has no number"),
        (change(sys_updated_on="04.06.2024 20:00:00"), "sys_updated_on"),  # a display date, not a raw one
        (change(state=5), "not a string"),
        (change(**{APPROVALS_KEY: "approved"}), "not a list"),
        (change(**{APPROVALS_KEY: [approval_row("", "approved")]}), "approval row has no sys_id"),
        (change(**{APPROVALS_KEY: [approval_row("a" * 32, "approved", updated="yesterday")]}), "sys_updated_on"),
    ],
)
def test_a_record_that_cannot_be_used_raises_record_error(raw, reason):
    with pytest.raises(RecordError, match=reason):
        map_change(raw)


@pytest.mark.parametrize(
    ("score", "band", "code"),
    [(100, "very_high", "1"), (80, "very_high", "1"), (79, "high", "2"), (60, "high", "2"),
     (59, "moderate", "3"), (30, "moderate", "3"), (29, "low", "4"), (0, "low", "4")],
)
def test_risk_score_bands_and_codes(score, band, code):
    assert risk_band(score) == band
    assert RISK_CODES[band] == code


def test_risk_codes_read_back_into_their_own_band():
    for code, score in RISK_SCORES.items():
        assert RISK_CODES[risk_band(score)] == code


def test_planned_window_is_sent_in_utc_without_zone():
    berlin = timezone(timedelta(hours=2))
    assert instance_date(datetime(2024, 6, 4, 22, 0, tzinfo=berlin)) == "2024-06-04 20:00:00"
    assert instance_date(datetime(2024, 6, 4, 20, 0)) == "2024-06-04 20:00:00"  # naive is taken as UTC
    assert instance_date(None) == ""


def context(**config) -> ConnectorContext:
    return ConnectorContext(
        base_url="http://127.0.0.1:9/servicenow", auth_type="basic", config=config,  # never called
        credentials={"username": "syncplane.integration", "password": "env:UNUSED"}, resolve_secret=lambda ref: "pw",
    )


def test_config_defaults_and_site_specific_risk_codes():
    connector = ServiceNowItsmConnector(context(risk_codes={"very_high": "10"}))
    assert connector.config["assignment_group"] == "CAB"
    assert connector.config["change_type"] == "normal"
    assert connector.risk_codes == {**RISK_CODES, "very_high": "10"}
    assert ServiceNowItsmConnector.webhook_signature == "shared-secret"
    assert ServiceNowItsmConnector.describe()["record_kind"] == "change"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"change_type": "minor"}, "change_type"),
        ({"page_size": 500}, "page_size"),
        ({"assignment_group": "CAB^ORname=x"}, "assignment_group"),
        ({"change_type": "standard"}, "standard_change_template"),
        ({"risk_codes": {"extreme": "0"}}, "risk_codes"),
    ],
)
def test_bad_config_is_refused_naming_the_field(config, field):
    with pytest.raises(ConfigurationError, match=field):
        ServiceNowItsmConnector(context(**config))


def test_webhook_change_ids_reads_the_business_rule_payloads():
    connector = ServiceNowItsmConnector(context())
    assert connector.webhook_change_ids({"table": "change_request", "sys_id": SYS_ID, "state": "-2"}) == [SYS_ID]
    assert connector.webhook_change_ids({"sys_ids": [SYS_ID, "a" * 32, SYS_ID]}) == [SYS_ID, "a" * 32]
    assert connector.webhook_change_ids({"table": "sysapproval_approver", "sysapproval": SYS_ID}) == [SYS_ID]
    assert connector.webhook_change_ids({"table": "incident", "sys_id": SYS_ID}) == []
    assert connector.webhook_change_ids({"sys_id": "'; drop table"}) == []
    assert connector.webhook_change_ids(["not", "a", "dict"]) == []
