"""The findings API: upload (all or nothing, RBAC, wrong tool), list filters and query counts, summary,
decisions with reason and expiry, expiry on read, and the asset's open findings."""

import json
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from syncplane.findings.ingest import ingest_scan
from syncplane.findings.models import Finding, FindingEvent, Scan
from syncplane.inventory.models import Asset
from tests.findings.connector import TOOL, raw
from tests.findings.factories import finding, summary

pytestmark = pytest.mark.django_db

REPO = {"kind": "repository", "ref": "github.com/acme/shop", "name": "acme/shop"}


def report(*records, header=None) -> bytes:
    lines = [json.dumps(header or {"tool": TOOL})] + [json.dumps(raw(r)) for r in records]
    return ("\n".join(lines) + "\n").encode()


def upload(client, content: bytes, tool=TOOL, **fields):
    return client.post("/api/v1/scans/", {"file": SimpleUploadedFile("report.json", content), "tool": tool,
                                          **fields}, format="multipart")


def test_an_operator_uploads_a_report(api_as, security_connector):
    content = report(finding("CVE-1", tool=TOOL, target=REPO, severity="critical"),
                     finding("CVE-2", "lodash", tool=TOOL, target=REPO), summary(tool=TOOL, target=REPO))
    answer = upload(api_as("operator"), content)
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert (body["tool"], body["status"], body["new"], body["still_open"], body["fixed"]) == (TOOL, "complete", 2, 0, 0)
    assert body["uploader"] == "user-operator" and body["targets"][0]["ref"] == REPO["ref"]
    # The same pipeline, once the lodash upgrade is merged:
    answer = upload(api_as("admin"), report(finding("CVE-1", tool=TOOL, target=REPO), summary(tool=TOOL, target=REPO)))
    assert (answer.json()["still_open"], answer.json()["fixed"]) == (1, 1)
    assert api_as("viewer").get("/api/v1/scans/").json()["count"] == 2


def test_a_report_without_target_takes_the_uploads(api_as, security_connector):
    record = finding(tool=TOOL)
    record.attributes.pop("target")
    answer = upload(api_as("operator"), report(record), target="repository:gitlab.example/team/app")
    assert answer.status_code == 201, answer.content
    assert Finding.objects.get().target.ref == "gitlab.example/team/app"


@pytest.mark.parametrize("role,expected", [("viewer", 403), ("anonymous", 401), (None, 403)])
def test_only_operators_and_admins_upload(api_as, security_connector, role, expected):
    assert upload(api_as(role), report(finding(tool=TOOL))).status_code == expected
    assert not Scan.objects.exists()


def test_a_truncated_report_is_refused_and_changes_nothing(api_as, security_connector):
    ingest_scan(tool=TOOL, records=[finding("CVE-1", tool=TOOL), summary(tool=TOOL)])
    before = (Finding.objects.count(), Scan.objects.count(), FindingEvent.objects.count())
    content = report(finding("CVE-2", tool=TOOL), summary(tool=TOOL))
    answer = upload(api_as("operator"), content[: len(content) - 30])
    assert answer.status_code == 400
    assert "cut short" in json.dumps(answer.json())
    assert (Finding.objects.count(), Scan.objects.count(), FindingEvent.objects.count()) == before
    assert Finding.objects.get().state == "open"


def test_a_report_of_another_tool_is_refused(api_as, security_connector):
    operator = api_as("operator")
    answer = upload(operator, report(finding(tool=TOOL), header={"tool": "grype"}))
    assert answer.status_code == 400 and "not a test_security report" in json.dumps(answer.json())
    answer = upload(operator, report(finding(tool=TOOL)), tool="servicenow_cmdb")
    assert answer.status_code == 400 and "tool" in answer.json()
    assert not Finding.objects.exists()


def test_a_report_over_the_size_limit_is_refused(api_as, security_connector, settings):
    settings.SYNCPLANE_MAX_REPORT_BYTES = 1024
    answer = upload(api_as("operator"), report(*[finding(f"CVE-{n}", tool=TOOL) for n in range(20)]))
    assert answer.status_code == 400 and "SYNCPLANE_MAX_REPORT_BYTES" in json.dumps(answer.json())


@pytest.fixture
def findings(db):
    other = {"kind": "image", "ref": "registry.example/api@sha256:" + "c" * 64, "name": "api:3"}
    ingest_scan(tool="trivy", records=[
        finding("CVE-1", "openssl", severity="critical"), finding("CVE-2", "zlib", severity="high", fixed=""),
        finding("CVE-3", "curl", severity="low", target=other, aliases=["GHSA-aaaa-bbbb-cccc"]), summary()])
    ingest_scan(tool="grype", records=[finding("CVE-2", "zlib", tool="grype", severity="high", fixed="")])
    return {f.vulnerability_id: f for f in Finding.objects.all()}


@pytest.mark.parametrize("query,expected", [
    ("", {"CVE-1", "CVE-2", "CVE-3"}),
    ("severity=critical&severity=low", {"CVE-1", "CVE-3"}),
    ("state=open", {"CVE-1", "CVE-2", "CVE-3"}),
    ("tool=grype", {"CVE-2"}),
    ("vulnerability_id=ghsa-aaaa-bbbb-cccc", {"CVE-3"}),
    ("vulnerability_id=CVE-1", {"CVE-1"}),
    ("package=OpenSSL", {"CVE-1"}),
    ("fixable=false", {"CVE-2"}),
    ("target_kind=image&search=curl", {"CVE-3"}),
])
def test_list_filters(api_as, findings, query, expected):
    answer = api_as("viewer").get(f"/api/v1/findings/?{query}")
    assert answer.status_code == 200, answer.content
    assert {f["vulnerability_id"] for f in answer.json()["results"]} == expected


def test_unknown_filters_and_values_are_refused(api_as, findings):
    client = api_as("viewer")
    assert client.get("/api/v1/findings/?severty=high").status_code == 400
    assert client.get("/api/v1/findings/?severity=urgent").status_code == 400
    assert client.get("/api/v1/findings/?asset=not-a-uuid").status_code == 400


def test_the_list_costs_the_same_queries_for_3_or_60_findings(api_as, findings):
    client = api_as("viewer")
    client.get("/api/v1/findings/")  # the role is read once per user and cached
    with CaptureQueriesContext(connection) as few:
        assert client.get("/api/v1/findings/").status_code == 200
    ingest_scan(tool="snyk", records=[finding(f"CVE-9{n}", f"p{n}", tool="snyk") for n in range(57)])
    with CaptureQueriesContext(connection) as many:
        answer = client.get("/api/v1/findings/?page_size=100")
    assert len(answer.json()["results"]) == 60
    assert len(many) == len(few)


def test_summary_overall_and_per_asset(api_as, findings):
    client = api_as("viewer")
    body = client.get("/api/v1/findings/summary/").json()
    assert body["total"] == 3 and body["by_severity"]["critical"] == 1 and body["by_state"]["open"] == 3
    asset = Asset.objects.create(name="web-01", created_at=timezone.now(), updated_at=timezone.now())
    Finding.objects.filter(vulnerability_id="CVE-1").update(asset=asset)
    body = client.get(f"/api/v1/findings/summary/?asset={asset.pk}").json()
    assert body["total"] == 1 and body["by_severity"]["critical"] == 1
    detail = client.get(f"/api/v1/assets/{asset.pk}/").json()
    assert detail["open_findings"] == {"critical": 1}


def in_days(days: int) -> str:
    return (timezone.now() + timedelta(days=days)).isoformat()


def test_accepting_needs_a_reason_an_expiry_and_an_operator(api_as, findings):
    url = f"/api/v1/findings/{findings['CVE-1'].pk}/accept/"
    assert api_as("viewer").post(url, {"reason": "x", "expires_at": in_days(30)}, format="json").status_code == 403
    operator = api_as("operator")
    assert operator.post(url, {"expires_at": in_days(30)}, format="json").status_code == 400
    assert operator.post(url, {"reason": "compensating WAF rule"}, format="json").status_code == 400
    assert operator.post(url, {"reason": "WAF", "expires_at": in_days(-1)}, format="json").status_code == 400
    assert operator.post(url, {"reason": "WAF", "expires_at": in_days(30), "extra": 1},
                         format="json").status_code == 400
    answer = operator.post(url, {"reason": "compensating WAF rule", "expires_at": in_days(30)}, format="json")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["state"], body["state_reason"], body["state_changed_by"]) == (
        "accepted", "compensating WAF rule", "user-operator")
    assert body["history"][-1]["to_state"] == "accepted" and body["history"][-1]["actor"] == "user-operator"
    assert body["history"][-1]["correlation_id"]


def test_false_positive_then_reopen(api_as, findings):
    operator = api_as("operator")
    pk = findings["CVE-3"].pk
    answer = operator.post(f"/api/v1/findings/{pk}/false-positive/",
                           {"reason": "curl is not in the image's runtime path", "expires_at": in_days(90)},
                           format="json")
    assert answer.json()["state"] == "false_positive"
    assert api_as("viewer").post(f"/api/v1/findings/{pk}/reopen/", {}, format="json").status_code == 403
    answer = operator.post(f"/api/v1/findings/{pk}/reopen/", {"reason": "re-assessed"}, format="json")
    assert answer.json()["state"] == "open"
    assert [h["to_state"] for h in answer.json()["history"]] == ["open", "false_positive", "open"]
    assert operator.post(f"/api/v1/findings/{pk}/reopen/", {}, format="json").status_code == 400


def test_an_expired_acceptance_reopens_on_read(api_as, findings):
    finding_ = findings["CVE-1"]
    api_as("operator").post(f"/api/v1/findings/{finding_.pk}/accept/",
                            {"reason": "vendor patch next sprint", "expires_at": in_days(7)}, format="json")
    Finding.objects.filter(pk=finding_.pk).update(state_expires_at=timezone.now() - timedelta(seconds=1))
    body = api_as("viewer").get(f"/api/v1/findings/{finding_.pk}/").json()
    assert body["state"] == "open"
    assert [(h["to_state"], h["actor"]) for h in body["history"]][-1] == ("open", "expiry")


def test_a_fixed_finding_cannot_be_accepted(api_as, findings):
    ingest_scan(tool="trivy", records=[finding("CVE-2", "zlib", severity="high", fixed=""), summary()])
    ingest_scan(tool="grype", records=[summary(tool="grype")])
    fixed = Finding.objects.get(vulnerability_id="CVE-1")
    assert fixed.state == "fixed"
    answer = api_as("operator").post(f"/api/v1/findings/{fixed.pk}/accept/",
                                     {"reason": "r", "expires_at": in_days(3)}, format="json")
    assert answer.status_code == 400 and "fixed" in answer.json()["detail"]


def test_the_upload_form_is_multipart_only(api_as, security_connector):
    answer = api_as("operator").post("/api/v1/scans/", {"tool": TOOL}, format="json")
    assert answer.status_code == 415
