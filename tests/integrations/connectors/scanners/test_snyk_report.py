"""Snyk's `test --json` / `container test --json` -> finding records and scan summaries, on generated reports."""

import pytest

from syncplane.devtools import scan_reports as sr
from syncplane.integrations.connectors.scanners.snyk import SnykConnector
from syncplane.integrations.errors import RecordError
from tests.integrations.connectors.scanners.conftest import by_key, findings, parse, summaries


def test_single_project_object_and_array_of_projects_give_the_same_findings():
    single = parse(SnykConnector, sr.snyk_project(60))
    array = parse(SnykConnector, [sr.snyk_project(60)])
    assert [r.external_id for r in single] == [r.external_id for r in array]
    assert [r.attributes for r in single] == [r.attributes for r in array]
    expected = {(v.id, v.package, v.version) for v in sr.catalogue(60) if v.ecosystem != "os"}
    assert set(by_key(single)) == expected
    assert single[-1].external_id == "scan:snyk:itgov-portal-ui"
    assert single[-1].attributes["target"] == {"kind": "repository", "ref": "itgov-portal-ui",
                                               "name": "itgov-portal-ui"}


def test_one_entry_per_dependency_path_is_one_finding_with_every_path_and_license_issues_are_left_out():
    project = sr.materialize(sr.snyk_project(60))
    entries = project["vulnerabilities"]
    assert any(e.get("type") == "license" for e in entries)
    twice = [e for e in entries if len([o for o in entries if o["id"] == e["id"]]) == 2]
    assert twice
    records = by_key(parse(SnykConnector, project))
    assert not any(key[0].startswith("snyk:lic:") for key in records)
    merged = [r for r in records.values() if r.attributes["package_name"] == twice[0]["packageName"]
              and r.attributes["installed_version"] == twice[0]["version"]]
    assert len(merged) == 1
    assert merged[0].attributes["locations"] == sorted(
        f"package-lock.json: {' > '.join(e['from'])}" for e in twice[:2])


def test_one_entry_mapped_field_by_field():
    project = sr.materialize(sr.snyk_project(0, license_issue=False))
    project["vulnerabilities"] = [{
        "id": "SNYK-JS-LODASH-1040724", "title": "Command Injection", "severity": "high", "cvssScore": 7.2,
        "CVSSv3": "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H",
        "identifiers": {"CVE": ["CVE-2021-23337"], "CWE": ["CWE-78"], "GHSA": ["GHSA-35jh-r3h4-6jhm"]},
        "packageName": "lodash", "name": "lodash", "version": "4.17.15", "fixedIn": ["4.17.21"],
        "from": ["itgov-portal-ui@3.2.0", "lodash@4.17.15"], "upgradePath": [False, "lodash@4.17.21"],
        "packageManager": "npm", "language": "js",
    }]
    (finding,) = findings(parse(SnykConnector, project))
    assert finding.external_id == "repository:itgov-portal-ui|CVE-2021-23337|lodash|4.17.15"
    assert finding.attributes == {
        "kind": "finding", "tool": "snyk",
        "target": {"kind": "repository", "ref": "itgov-portal-ui", "name": "itgov-portal-ui"},
        "vulnerability_id": "CVE-2021-23337", "aliases": ["GHSA-35jh-r3h4-6jhm", "SNYK-JS-LODASH-1040724"],
        "title": "Command Injection", "package_name": "lodash", "package_type": "npm",
        "installed_version": "4.17.15", "fixed_version": "4.17.21", "purl": "pkg:npm/lodash@4.17.15",
        "severity": "high", "cvss_score": 7.2, "cvss_vector": "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H",
        "locations": ["package-lock.json: itgov-portal-ui@3.2.0 > lodash@4.17.15"], "first_seen_at": None,
    }


def test_snyk_only_and_legacy_advisories_null_cvss_and_no_fix():
    project = sr.materialize(sr.snyk_project(0, license_issue=False))
    project["vulnerabilities"] = [
        {"id": "npm:debug:20170905", "title": "Regular Expression Denial of Service", "severity": "low",
         "cvssScore": None, "identifiers": {"CVE": [], "CWE": ["CWE-400"], "ALTERNATIVE": ["SNYK-JS-DEBUG-10762"]},
         "packageName": "debug", "name": "debug", "version": "2.6.8", "fixedIn": [], "packageManager": "npm",
         "from": ["itgov-portal-ui@3.2.0", "debug@2.6.8"]},
        {"id": "SNYK-PYTHON-JINJA2-6150717", "title": "Cross-site Scripting", "severity": "medium",
         "cvssScore": 5.4, "identifiers": {"CVE": None, "GHSA": ["GHSA-h5c8-rqwp-cp95"]}, "packageName": "jinja2",
         "name": "jinja2", "version": "3.1.2", "packageManager": "pip", "from": ["portal@0", "jinja2@3.1.2"]},
    ]
    legacy, python = findings(parse(SnykConnector, project))
    assert legacy.attributes["vulnerability_id"] == "npm:debug:20170905"
    assert legacy.attributes["aliases"] == ["SNYK-JS-DEBUG-10762"]
    assert (legacy.attributes["cvss_score"], legacy.attributes["fixed_version"]) == (None, "")
    assert python.attributes["vulnerability_id"] == "GHSA-h5c8-rqwp-cp95"
    assert (python.attributes["package_type"], python.attributes["purl"]) == ("pypi", "pkg:pypi/jinja2@3.1.2")


def test_projects_sharing_a_name_are_told_apart_by_their_manifest():
    records = parse(SnykConnector, [sr.snyk_project(8), sr.snyk_project(8, target_file="web/package-lock.json",
                                                                        seed=5)])
    assert [s.external_id for s in summaries(records)] == [
        "scan:snyk:itgov-portal-ui:package-lock.json", "scan:snyk:itgov-portal-ui:web/package-lock.json"]


def test_a_container_project_is_its_image_with_its_applications():
    records = parse(SnykConnector, sr.snyk_container_project(12))
    (summary,) = summaries(records)
    image = f"{sr.IMAGE}:{sr.TAG}"
    assert summary.attributes["target"] == {"kind": "image", "ref": image, "name": image}
    apps = [r for r in findings(records) if r.attributes["package_type"] == "npm"]
    os_packages = [r for r in findings(records) if r.attributes["package_type"] == "apk"]
    assert apps and os_packages
    assert all(loc.startswith("/app/package-lock.json: ") for r in apps for loc in r.attributes["locations"])
    assert {r.attributes["target"]["ref"] for r in findings(records)} == {image}


def test_a_clean_project_still_sends_its_summary():
    project = sr.materialize(sr.snyk_project(0, license_issue=False))
    assert project["ok"] is True and project["vulnerabilities"] == []
    (only,) = parse(SnykConnector, project)
    assert only.attributes["kind"] == "scan" and only.attributes["complete"] is True


def test_a_failed_run_is_refused_and_a_failed_project_fixes_nothing():
    with pytest.raises(RecordError, match="failure of its run: Authentication failed"):
        parse(SnykConnector, sr.snyk_error())
    failed = {**sr.snyk_error("Could not parse pom.xml"), "projectName": "billing"}
    records = parse(SnykConnector, [sr.snyk_project(8), failed])
    assert [(s.external_id, s.attributes["complete"]) for s in summaries(records)] == [
        ("scan:snyk:itgov-portal-ui", True), ("scan:snyk:billing", False)]


def test_unknown_severity_word_is_unknown_and_named():
    project = sr.materialize(sr.snyk_project(4, license_issue=False))
    project["vulnerabilities"][0]["severity"] = "urgent"
    record = findings(parse(SnykConnector, project))[0]
    assert (record.attributes["severity"], record.unmapped) == ("unknown", {"severity": "urgent"})


def test_an_empty_array_or_other_json_is_not_a_snyk_report():
    with pytest.raises(RecordError, match="holds no project"):
        parse(SnykConnector, [])
    with pytest.raises(RecordError, match="neither `vulnerabilities` nor `error`"):
        parse(SnykConnector, {"hello": "world"})
