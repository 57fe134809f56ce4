"""The findings pages: the list's filters, a finding's decisions (reason and expiry required), the upload form
with the API's rules, RBAC."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from syncplane.findings.choices import FindingState
from syncplane.findings.models import Finding, Scan, Target

pytestmark = pytest.mark.django_db


def finding(vulnerability="CVE-2024-0001", severity="critical", fixed="1.2.3", package="openssl"):
    now = timezone.now()
    target, _ = Target.objects.get_or_create(kind="image", ref="registry.example/shop@sha256:ab",
                                             defaults={"name": "shop:1.0"})
    return Finding.objects.create(
        key=f"{vulnerability}|{package}", target=target, vulnerability_id=vulnerability, package_name=package,
        installed_version="1.0", fixed_version=fixed, severity=severity, fingerprint="x", first_seen_at=now,
        last_seen_at=now,
    )


def test_the_list_filters_by_severity_and_fixability(browser_as):
    finding("CVE-2024-0001", "critical", fixed="1.2.3")
    finding("CVE-2024-0002", "low", fixed="")
    viewer = browser_as("viewer")
    page = viewer.get("/findings/?severity=critical").content.decode()
    assert "CVE-2024-0001" in page and "CVE-2024-0002" not in page
    page = viewer.get("/findings/?fixable=no").content.decode()
    assert "CVE-2024-0002" in page and "CVE-2024-0001" not in page
    page = viewer.get("/findings/").content.decode()
    assert page.index("CVE-2024-0001") < page.index("CVE-2024-0002")  # the most severe first
    assert viewer.get("/findings/?asset=not-a-uuid").status_code == 200


def test_accepting_a_risk_needs_a_reason_and_an_expiry(browser_as):
    item = finding()
    operator = browser_as("operator")
    page = operator.post(f"/findings/{item.pk}/accept/", {"reason": ""}).content.decode()
    assert "needs a reason and an expiry" in page
    item.refresh_from_db()
    assert item.state == FindingState.OPEN
    operator.post(f"/findings/{item.pk}/accept/", {"reason": "behind the WAF", "expires_at": "2030-01-01T00:00"})
    item.refresh_from_db()
    assert item.state == FindingState.ACCEPTED and item.state_reason == "behind the WAF"
    assert "behind the WAF" in browser_as("viewer").get(f"/findings/{item.pk}/").content.decode()


def test_viewers_cannot_decide_or_upload(browser_as):
    item = finding()
    viewer = browser_as("viewer")
    assert "Accept the risk" not in viewer.get(f"/findings/{item.pk}/").content.decode()
    decision = {"reason": "x", "expires_at": "2030-01-01T00:00"}
    assert viewer.post(f"/findings/{item.pk}/accept/", decision).status_code == 403
    assert viewer.get("/scans/upload/").status_code == 403


def test_a_cut_report_is_refused_with_nothing_written(browser_as):
    operator = browser_as("operator")
    cut = SimpleUploadedFile("trivy.json", b'{"SchemaVersion": 2, "Results": [{"Target": "x", "Vulnera',
                             content_type="application/json")
    page = operator.post("/scans/upload/", {"tool": "trivy", "file": cut}).content.decode()
    assert "nothing was written" in page
    assert not Scan.objects.filter(status="success").exists() and not Finding.objects.exists()


def test_an_uploaded_trivy_report_opens_findings(browser_as):
    report = {"SchemaVersion": 2, "ArtifactName": "shop:1.0", "ArtifactType": "container_image",
              "Metadata": {"RepoDigests": ["registry.example/shop@sha256:" + "a" * 64]},
              "Results": [{"Target": "shop:1.0 (debian 12)", "Class": "os-pkgs", "Type": "debian",
                           "Vulnerabilities": [{"VulnerabilityID": "CVE-2024-1111", "PkgName": "libssl3",
                                                "InstalledVersion": "3.0.1", "FixedVersion": "3.0.2",
                                                "Severity": "HIGH"}]}]}
    upload = SimpleUploadedFile("trivy.json", json.dumps(report).encode(), content_type="application/json")
    response = browser_as("operator").post("/scans/upload/", {"tool": "trivy", "file": upload}, follow=True)
    assert "1 new" in response.content.decode()
    assert Finding.objects.get().vulnerability_id == "CVE-2024-1111"
