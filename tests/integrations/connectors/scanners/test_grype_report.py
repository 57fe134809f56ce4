"""Grype's JSON -> finding records and the scan summary, on generated reports."""

import pytest

from syncplane.devtools import scan_reports as sr
from syncplane.integrations.connectors.scanners.grype import GrypeConnector
from syncplane.integrations.connectors.scanners.trivy import TrivyConnector
from syncplane.integrations.errors import RecordError
from tests.integrations.connectors.scanners.conftest import by_key, findings, parse

DIGEST_REF = f"{sr.IMAGE}@{sr.OS_DIGEST}"


def report_with(matches: list[dict], **source) -> dict:
    report = sr.materialize(sr.grype_report(0))
    report["matches"] = matches
    if source:
        report["source"] = source
    return report


def match(**vulnerability) -> dict:
    one = sr.grype_match(sr.Vulnerability(id="CVE-2023-4911", package="libc6", version="2.36-9+deb12u1",
                                          ecosystem="os", severity="high", fixed=["2.36-9+deb12u3"], cvss=7.8,
                                          title="libc6: buffer overflow"),
                         distro="debian")
    one["vulnerability"].update(vulnerability)
    return one


def test_every_match_of_a_generated_report_becomes_one_finding_then_the_summary():
    records = parse(GrypeConnector, sr.grype_report(120))
    expected = {(v.id, v.package, v.version) for v in sr.catalogue(120)}
    assert set(by_key(records)) == expected and len(findings(records)) == len(expected)
    assert records[-1].external_id == f"scan:grype:{DIGEST_REF}"
    assert records[-1].attributes["complete"] is True
    assert records[-1].attributes["scanned_at"] == "2025-03-14T09:30:12Z"


def test_trivy_and_grype_agree_on_the_findings_of_one_image():
    trivy = {r.external_id for r in findings(parse(TrivyConnector, sr.trivy_report(200)))}
    grype = {r.external_id for r in findings(parse(GrypeConnector, sr.grype_report(200)))}
    assert trivy == grype and len(trivy) > 200


def test_one_match_mapped_field_by_field():
    (finding,) = findings(parse(GrypeConnector, report_with([match(severity="High")])))
    assert finding.attributes == {
        "kind": "finding", "tool": "grype",
        "target": {"kind": "image", "ref": DIGEST_REF, "name": f"{sr.IMAGE}:{sr.TAG}"},
        "vulnerability_id": "CVE-2023-4911", "aliases": [], "title": "libc6: buffer overflow",
        "package_name": "libc6", "package_type": "deb", "installed_version": "2.36-9+deb12u1",
        "fixed_version": "2.36-9+deb12u3", "purl": "pkg:deb/debian/libc6@2.36-9+deb12u1?arch=x86_64",
        "severity": "high", "cvss_score": 7.8, "cvss_vector": sr.VECTOR,  # from the related NVD record
        "locations": ["/lib/apk/db/installed"], "first_seen_at": None,
    }


@pytest.mark.parametrize(("severity", "expected", "unmapped"), [
    ("Critical", "critical", {}), ("Negligible", "info", {}), ("Unknown", "unknown", {}), (None, "unknown", {}),
    ("Sev-1", "unknown", {"severity": "Sev-1"}),
])
def test_severity_scale(severity, expected, unmapped):
    one = match()
    if severity is None:
        del one["vulnerability"]["severity"]
    else:
        one["vulnerability"]["severity"] = severity
    (finding,) = findings(parse(GrypeConnector, report_with([one])))
    assert (finding.attributes["severity"], finding.unmapped) == (expected, unmapped)


@pytest.mark.parametrize(("fix", "expected"), [
    ({"versions": ["1.21.11", "1.22.4"], "state": "fixed"}, "1.21.11, 1.22.4"),
    ({"versions": [], "state": "not-fixed"}, ""),
    ({"versions": ["9.9"], "state": "wont-fix"}, ""),  # versions with another state mean nothing
    ({"versions": [], "state": "unknown"}, ""),
])
def test_fixed_version_only_from_the_fixed_state(fix, expected):
    (finding,) = findings(parse(GrypeConnector, report_with([match(fix=fix)])))
    assert finding.attributes["fixed_version"] == expected


def cvss(score, *, kind="Primary", version="3.1", vector="V"):
    return {"source": "x", "type": kind, "version": version, "vector": vector, "metrics": {"baseScore": score}}


@pytest.mark.parametrize(("own", "related", "expected"), [
    ([cvss(5.3, kind="Secondary", vector="S"), cvss(4.0, vector="P")], [], (4.0, "P")),  # Primary first
    ([cvss(5.3, kind="Secondary", vector="S"), cvss(6.1, kind="Secondary", vector="T")], [], (6.1, "T")),
    ([], [cvss(7.8, vector="N")], (7.8, "N")),  # a distro match: the NVD record's
    ([cvss(6.4, version="2.0", vector="v2")], [cvss(8.1, vector="v3")], (8.1, "v3")),  # any v3 before a v2
    ([cvss(6.4, version="2.0", vector="v2")], [], (6.4, "v2")),
    ([], [], (None, "")),
])
def test_cvss_rule(own, related, expected):
    one = match(cvss=own)
    one["relatedVulnerabilities"][0]["cvss"] = related
    (finding,) = findings(parse(GrypeConnector, report_with([one])))
    assert (finding.attributes["cvss_score"], finding.attributes["cvss_vector"]) == expected


def test_a_ghsa_match_is_named_by_its_related_cve_and_related_records_are_no_findings():
    one = match(id="GHSA-xxxx-yyyy-zzzz", namespace="github:language:python")
    one["relatedVulnerabilities"][0]["id"] = "CVE-2024-37891"
    (finding,) = findings(parse(GrypeConnector, report_with([one])))
    assert finding.attributes["vulnerability_id"] == "CVE-2024-37891"
    assert finding.attributes["aliases"] == ["GHSA-xxxx-yyyy-zzzz"]


def test_the_same_package_version_in_two_matches_is_one_finding_with_both_locations():
    first, second = match(), match()
    second["artifact"]["locations"] = [{"path": "/opt/venv/lib/libc6", "layerID": "sha256:1"}]
    records = findings(parse(GrypeConnector, report_with([first, second])))
    assert len(records) == 1
    assert records[0].attributes["locations"] == ["/lib/apk/db/installed", "/opt/venv/lib/libc6"]


def test_empty_matches_is_a_clean_complete_scan():
    (only,) = parse(GrypeConnector, report_with([]))
    assert only.attributes["kind"] == "scan" and only.attributes["complete"] is True


def test_directory_source_is_a_repository_and_an_image_without_digest_falls_back():
    records = parse(GrypeConnector, sr.grype_report(3, directory="/builds/itgov/portal"))
    assert records[-1].attributes["target"] == {"kind": "repository", "ref": "/builds/itgov/portal",
                                                "name": "/builds/itgov/portal"}
    records = parse(GrypeConnector, sr.grype_report(3, digest=False))
    assert records[-1].attributes["target"]["ref"] == sr.CONFIG_DIGEST  # what Trivy says too
    report = sr.materialize(sr.grype_report(3, digest=False))
    del report["source"]["target"]["imageID"]
    assert parse(GrypeConnector, report)[-1].attributes["target"]["ref"] == DIGEST_REF  # the manifest digest


def test_a_report_that_names_no_target_is_refused_unless_the_caller_gives_one():
    report = sr.materialize(sr.grype_report(3))
    del report["source"]
    with pytest.raises(RecordError, match="does not say what was scanned"):
        parse(GrypeConnector, report)
    target = {"kind": "repository", "ref": "itgov-portal", "name": "itgov-portal"}
    assert parse(GrypeConnector, report, target=target)[-1].external_id == "scan:grype:itgov-portal"
