"""The finding lifecycle across scans: open, fixed by a complete scan, reopened; de-duplication."""

import io
import json

import pytest

from syncplane.findings.ingest import ingest_scan, report_records
from syncplane.findings.models import Finding, FindingEvent, FindingSource, Scan
from syncplane.integrations.errors import RecordError
from tests.findings.connector import TOOL
from tests.findings.factories import IMAGE, finding, summary

pytestmark = pytest.mark.django_db


def states():
    return {f.vulnerability_id: f.state for f in Finding.objects.all()}


def test_open_fixed_reopened_across_three_scans():
    first = ingest_scan(tool="trivy", records=[finding("CVE-1"), finding("CVE-2", "zlib"), summary()])
    assert (first.new, first.still_open, first.fixed, first.reopened, first.total) == (2, 0, 0, 0, 2)
    assert states() == {"CVE-1": "open", "CVE-2": "open"}

    second = ingest_scan(tool="trivy", records=[finding("CVE-1"), summary()])
    assert (second.new, second.still_open, second.fixed, second.reopened, second.total) == (0, 1, 1, 0, 1)
    assert states() == {"CVE-1": "open", "CVE-2": "fixed"}
    assert Finding.objects.get(vulnerability_id="CVE-2").fixed_at is not None

    third = ingest_scan(tool="trivy", records=[finding("CVE-1"), finding("CVE-2", "zlib"), summary()])
    assert (third.new, third.still_open, third.fixed, third.reopened, third.total) == (0, 1, 0, 1, 2)
    assert states() == {"CVE-1": "open", "CVE-2": "open"}
    reopened = Finding.objects.get(vulnerability_id="CVE-2")
    assert reopened.fixed_at is None
    history = list(reopened.history.order_by("id").values_list("from_state", "to_state"))
    assert history == [("", "open"), ("open", "fixed"), ("fixed", "open")]
    assert Scan.objects.count() == 3
    assert {s.status for s in Scan.objects.all()} == {"complete"}


def test_partial_or_missing_summary_fixes_nothing():
    ingest_scan(tool="trivy", records=[finding("CVE-1"), finding("CVE-2", "zlib"), summary()])
    partial = ingest_scan(tool="trivy", records=[finding("CVE-1"), summary(complete=False)])
    assert partial.fixed == 0
    none = ingest_scan(tool="trivy", records=[finding("CVE-1")])
    assert none.fixed == 0
    assert states() == {"CVE-1": "open", "CVE-2": "open"}
    assert Scan.objects.get(pk=partial.scan_id).status == "partial"


def test_a_clean_complete_scan_fixes_everything_of_its_target_only():
    other = {"kind": "image", "ref": "registry.example/other@sha256:" + "b" * 64, "name": "other:2"}
    ingest_scan(tool="trivy", records=[finding("CVE-1"), finding("CVE-9", target=other), summary()])
    result = ingest_scan(tool="trivy", records=[summary()])
    assert result.fixed == 1
    assert Finding.objects.get(vulnerability_id="CVE-1").state == "fixed"
    assert Finding.objects.get(vulnerability_id="CVE-9").state == "open"


def test_same_package_at_two_paths_is_one_finding_with_two_locations():
    ingest_scan(tool="trivy", records=[finding(locations=["/app/a/lib.jar"]), finding(locations=["/app/b/lib.jar"]),
                                       summary()])
    only = Finding.objects.get()
    assert only.locations == ["/app/a/lib.jar", "/app/b/lib.jar"]
    # A later scan that reports one more path keeps every path the finding was seen at.
    ingest_scan(tool="trivy", records=[finding(locations=["/app/c/lib.jar"]), summary()])
    only.refresh_from_db()
    assert only.locations == ["/app/a/lib.jar", "/app/b/lib.jar", "/app/c/lib.jar"]


def test_same_cve_in_two_packages_is_two_findings():
    ingest_scan(tool="trivy", records=[finding("CVE-1", "openssl"), finding("CVE-1", "libssl3"), summary()])
    assert Finding.objects.filter(vulnerability_id="CVE-1").count() == 2


def test_two_tools_one_finding_two_sources_and_fixed_only_when_both_stop():
    ingest_scan(tool="trivy", records=[finding(tool="trivy"), summary(tool="trivy")])
    result = ingest_scan(tool="grype", records=[finding(tool="grype", severity="critical"), summary(tool="grype")])
    assert result.new == 0 and result.still_open == 1
    only = Finding.objects.get()
    assert sorted(only.sources.values_list("tool", flat=True)) == ["grype", "trivy"]
    # Trivy no longer reports it; Grype still did on its last scan: still open.
    ingest_scan(tool="trivy", records=[summary(tool="trivy")])
    only.refresh_from_db()
    assert only.state == "open"
    assert dict(only.sources.values_list("tool", "present")) == {"grype": True, "trivy": False}
    ingest_scan(tool="grype", records=[summary(tool="grype")])
    only.refresh_from_db()
    assert only.state == "fixed"


def test_a_report_that_fails_half_way_changes_nothing():
    def records():
        yield finding("CVE-1")
        yield finding("CVE-2", "zlib")
        raise RecordError("the report is cut short at byte 1234")

    with pytest.raises(RecordError, match="cut short"):
        ingest_scan(tool="trivy", records=records(), batch_size=1)
    assert not Finding.objects.exists() and not Scan.objects.exists() and not FindingEvent.objects.exists()


def test_records_of_another_tool_are_refused():
    with pytest.raises(RecordError, match="not 'trivy'"):
        ingest_scan(tool="trivy", records=[finding(tool="grype")])
    assert not Finding.objects.exists()


def test_the_upload_target_replaces_the_reports_through_the_parser(security_connector):
    without, other = finding(tool=TOOL), finding("CVE-2", "zlib", tool=TOOL)
    without.attributes.pop("target")
    lines = [{"tool": TOOL}, {"id": without.external_id, "attributes": without.attributes},
             {"id": other.external_id, "attributes": other.attributes}]
    stream = io.BytesIO("\n".join(json.dumps(line) for line in lines).encode())
    target = {"kind": "repository", "ref": "gitlab.example/team/app", "name": "team/app"}
    ingest_scan(tool=TOOL, records=report_records(TOOL, stream, target))
    assert set(Finding.objects.values_list("target__ref", flat=True)) == {"gitlab.example/team/app"}
    with pytest.raises(RecordError, match="target.kind"):
        report_records(TOOL, io.BytesIO(b""), {"kind": "host", "ref": "web01"})


def test_unchanged_reingest_moves_last_seen_only(django_assert_max_num_queries):
    records = [finding(f"CVE-{n}", f"pkg{n}") for n in range(50)] + [summary()]
    ingest_scan(tool="trivy", records=records)
    before = dict(FindingSource.objects.values_list("id", "last_seen_at"))
    result = ingest_scan(tool="trivy", records=records)
    assert (result.new, result.still_open, result.fixed) == (0, 50, 0)
    after = dict(FindingSource.objects.values_list("id", "last_seen_at"))
    assert all(after[pk] > before[pk] for pk in before)
    assert FindingEvent.objects.count() == 50  # only the openings


def test_a_critical_finding_opened_emits_an_event(monkeypatch):
    batches = []
    monkeypatch.setattr("syncplane.integrations.events.emit_events", lambda events: batches.append(list(events)))
    ingest_scan(tool="trivy", records=[finding("CVE-1", severity="critical"), finding("CVE-2", "zlib"),
                                       finding("CVE-3", "curl", severity="critical"), summary()],
                correlation_id="scan-1")
    ingest_scan(tool="trivy", records=[finding("CVE-2", "zlib"), summary()])
    ingest_scan(tool="trivy", records=[finding("CVE-1", severity="critical"), summary()], correlation_id="scan-3")
    # One insert per batch: both criticals of the first report together.
    assert [[(e.type, e.data["reopened"], e.correlation_id) for e in batch] for batch in batches] == [
        [("vulnerability.critical", False, "scan-1")] * 2, [("vulnerability.critical", True, "scan-3")]]
    sent = batches[0][0]
    assert sent.subject["type"] == "finding" and sent.data["vulnerability_id"] == "CVE-1"
    assert Finding.objects.get(vulnerability_id="CVE-1").correlation_id == "scan-3"
    assert IMAGE["ref"] == sent.data["target"]["ref"]
