"""The upload's `target` field through the API: it replaces what a report says was scanned (the parser applies it,
as for a scanner integration's configured host), so a Trivy file-system scan of a machine lands on its asset."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from syncplane.findings.models import Finding, Scan, Target
from syncplane.integrations.base import MappedRecord
from syncplane.integrations.choices import RecordKind
from syncplane.integrations.models import ExternalSystem
from syncplane.integrations.sinks import sink_for

pytestmark = pytest.mark.django_db

scan_reports = pytest.importorskip("syncplane.devtools.scan_reports")


@pytest.fixture
def web01(db):
    """web01 in the inventory, as a CMDB sync brings it."""
    cmdb = ExternalSystem.objects.create(name="CMDB", system_type="servicenow", category="cmdb",
                                         base_url="https://cmdb.example.com", auth_type="basic")
    sink = sink_for(RecordKind.ASSET, cmdb.pk)
    record = MappedRecord("srv-web01", {"name": "web01", "hostname": "web01", "fqdn": "web01.corp.example",
                                        "asset_type": "server", "serial_number": "SRV-WEB-01"}, {})
    sink.validate(record)
    sink.apply(sink.plan([record]), timezone.now())
    from syncplane.inventory.models import Asset

    return Asset.objects.get()


def filesystem_report(**options) -> bytes:
    return scan_reports.report_bytes(scan_reports.trivy_report(20, image="/", artifact_type="filesystem", **options))


def upload(client, content: bytes, **fields):
    return client.post("/api/v1/scans/", {"file": SimpleUploadedFile("trivy.json", content), "tool": "trivy",
                                          **fields}, format="multipart")


def test_a_filesystem_scan_with_a_host_target_lands_on_the_asset(api_as, web01):
    operator = api_as("operator")
    answer = upload(operator, filesystem_report(), target="asset:WEB01.corp.example")
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["status"] == "complete" and body["new"] > 0
    assert [(t["kind"], t["ref"], t["asset"]) for t in body["targets"]] == [
        ("asset", "web01.corp.example", str(web01.pk))]
    assert Finding.objects.filter(asset=web01, state="open").count() == body["new"] == Finding.objects.count()
    summary = api_as("viewer").get(f"/api/v1/findings/summary/?asset={web01.pk}").json()
    assert sum(summary["by_severity"].values()) == body["new"]
    # The next scan of the same host, after an upgrade: fixed on the same asset.
    again = upload(operator, filesystem_report(changed=0.2), target="asset:web01.corp.example")
    assert again.status_code == 201, again.content
    assert again.json()["fixed"] > 0
    assert Finding.objects.filter(asset=web01, state="fixed").count() == again.json()["fixed"]


def test_without_a_target_the_path_is_what_was_scanned(api_as, web01):
    answer = upload(api_as("operator"), filesystem_report())
    assert answer.status_code == 201, answer.content
    assert list(Target.objects.values_list("kind", "ref")) == [("repository", "/")]
    assert not Finding.objects.filter(asset=web01).exists()


def test_the_target_replaces_an_image_reports_own(api_as):
    content = scan_reports.report_bytes(scan_reports.trivy_report(10))
    answer = upload(api_as("operator"), content, target='{"kind": "image", "ref": "registry.example/app:pinned"}')
    assert answer.status_code == 201, answer.content
    assert list(Target.objects.values_list("kind", "ref")) == [("image", "registry.example/app:pinned")]


@pytest.mark.parametrize("target", ["host:web01", "asset:", '{"kind": "asset"}', "{not json"])
def test_a_bad_target_is_refused_by_name(api_as, target):
    answer = upload(api_as("operator"), filesystem_report(), target=target)
    assert answer.status_code == 400 and "target" in answer.json()
    assert not Scan.objects.exists()
