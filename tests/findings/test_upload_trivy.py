"""An upload with a real Trivy report (the generated sample of devtools/scan_reports.py, parsed by the Trivy
connector's streaming parser): findings land, a second report with fixes fixes them, a cut one changes nothing."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from syncplane.findings.models import Finding, Scan

pytestmark = pytest.mark.django_db

scan_reports = pytest.importorskip("syncplane.devtools.scan_reports")
pytest.importorskip("syncplane.integrations.connectors.scanners.trivy")


def upload(client, content: bytes):
    return client.post("/api/v1/scans/", {"file": SimpleUploadedFile("trivy.json", content), "tool": "trivy"},
                       format="multipart")


def test_trivy_reports_uploaded_twice_then_a_cut_one(api_as):
    client = api_as("operator")
    first = upload(client, scan_reports.report_bytes(scan_reports.trivy_report(40, packages=50)))
    assert first.status_code == 201, first.content
    body = first.json()
    assert body["status"] == "complete" and body["new"] == Finding.objects.count() > 0
    assert {t["kind"] for t in body["targets"]} == {"image"}
    # The same image, a later build: a tenth of the vulnerabilities changed.
    second = upload(client, scan_reports.report_bytes(scan_reports.trivy_report(40, packages=50, changed=0.1)))
    assert second.status_code == 201, second.content
    after = second.json()
    assert after["new"] + after["still_open"] + after["reopened"] == after["total"]
    assert after["fixed"] > 0 and after["new"] > 0
    assert Finding.objects.filter(state="fixed").count() == after["fixed"]
    before = (Finding.objects.count(), Scan.objects.count(), list(Finding.objects.values_list("state", flat=True)))
    content = scan_reports.report_bytes(scan_reports.trivy_report(40))
    cut = upload(client, content[: len(content) // 2])
    assert cut.status_code == 400, cut.content
    assert "nothing was written" in json.dumps(cut.json())
    assert (Finding.objects.count(), Scan.objects.count(),
            list(Finding.objects.values_list("state", flat=True))) == before
