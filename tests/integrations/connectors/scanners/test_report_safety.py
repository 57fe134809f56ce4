"""What every scanner's parse_report guarantees: a bad report raises before its first record (so nothing is
written from it), another tool's report is named, and a large report is read in bounded memory."""

import io
import tracemalloc

import pytest

from syncplane.devtools import scan_reports as sr
from syncplane.integrations.connectors.scanners.base import (
    EXTERNAL_ID_LIMIT,
    choose_vulnerability_id,
    finding_external_id,
)
from syncplane.integrations.connectors.scanners.grype import GrypeConnector
from syncplane.integrations.connectors.scanners.snyk import SnykConnector
from syncplane.integrations.connectors.scanners.trivy import TrivyConnector
from syncplane.integrations.errors import RecordError
from tests.integrations.connectors.scanners.conftest import parse

REPORTS = {
    TrivyConnector: lambda: sr.trivy_report(200, packages=100),
    GrypeConnector: lambda: sr.grype_report(200),
    SnykConnector: lambda: [sr.snyk_project(200), sr.snyk_project(20, name="billing")],
}


@pytest.mark.parametrize("connector", list(REPORTS), ids=lambda c: c.system_type)
@pytest.mark.parametrize("keep", [0.999, 0.5, 0.01])
def test_a_report_cut_short_raises_before_its_first_record(connector, keep):
    data = sr.report_bytes(REPORTS[connector]())
    records = connector.parse_report(io.BytesIO(data[:int(len(data) * keep)]))
    with pytest.raises(RecordError, match="the report is cut short"):
        next(records)  # the first record only comes once the whole report is read


@pytest.mark.parametrize("connector", list(REPORTS), ids=lambda c: c.system_type)
@pytest.mark.parametrize(("data", "reason"), [
    (b"", "is empty"), (b"   \n", "is empty"), (b"{\"name\": [}", "not valid JSON"),
    (b"\xff\xfe{}", "not"), (b"42", "not"), (b"{} {}", "not valid JSON"),
])
def test_not_json_or_empty(connector, data, reason):
    with pytest.raises(RecordError, match=reason):
        parse(connector, data)


@pytest.mark.parametrize(("connector", "other", "named"), [
    (TrivyConnector, sr.grype_report(3), "this is a Grype report, not a Trivy report"),
    (TrivyConnector, sr.snyk_project(3), "this is a Snyk report, not a Trivy report"),
    (TrivyConnector, [sr.snyk_project(3)], "this is a Snyk report, not a Trivy report"),
    (GrypeConnector, sr.trivy_report(3), "this is a Trivy report, not a Grype report"),
    (GrypeConnector, [sr.snyk_project(3), sr.snyk_project(3)], "this is a Snyk report, not a Grype report"),
    (SnykConnector, sr.trivy_report(3), "this is a Trivy report, not a Snyk report"),
    (SnykConnector, sr.grype_report(3), "this is a Grype report, not a Snyk report"),
], ids=lambda value: value if isinstance(value, str) else "")
def test_another_tools_report_is_refused_by_name(connector, other, named):
    with pytest.raises(RecordError, match=named):
        parse(connector, other)


def test_a_large_report_is_read_in_bounded_memory(tmp_path):
    """A ~50 MB Trivy report, most of it listed packages: the parse's peak is a small part of the file."""
    path = tmp_path / "large.json"
    with path.open("wb") as out:
        sr.write_report(sr.trivy_report(4000, packages=50_000), out)
    size = path.stat().st_size
    assert size > 45 * 2**20
    tracemalloc.start()
    try:
        count = 0
        with path.open("rb") as report:
            for _ in TrivyConnector.parse_report(report):
                count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count > 4000
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB report"


def test_external_ids_are_stable_and_fit_their_column():
    target = {"kind": "image", "ref": "registry.example.internal/" + "deep/" * 60 + "app@sha256:" + "a" * 64}
    long_id = finding_external_id(target, "CVE-2024-1", "libssl3", "3.1.4-r5")
    assert len(long_id) == EXTERNAL_ID_LIMIT and long_id == finding_external_id(target, "CVE-2024-1", "libssl3",
                                                                                 "3.1.4-r5")
    assert long_id != finding_external_id(target, "CVE-2024-2", "libssl3", "3.1.4-r5")
    assert finding_external_id({"kind": "repository", "ref": "portal"}, "CVE-2024-1", "lodash", "4.17.15") == \
        "repository:portal|CVE-2024-1|lodash|4.17.15"


@pytest.mark.parametrize(("ids", "expected"), [
    (["SNYK-JS-X-1", "GHSA-aaaa-bbbb-cccc", "CVE-2021-2", "CVE-2021-1"],
     ("CVE-2021-1", ["CVE-2021-2", "GHSA-aaaa-bbbb-cccc", "SNYK-JS-X-1"])),
    (["SNYK-JS-X-1", "GHSA-aaaa-bbbb-cccc"], ("GHSA-aaaa-bbbb-cccc", ["SNYK-JS-X-1"])),
    (["DLA-3781-1", "DSA-1"], ("DLA-3781-1", ["DSA-1"])),
    (["CVE-2021-1", "CVE-2021-1", " "], ("CVE-2021-1", [])),
])
def test_the_vulnerability_id_is_the_cve_else_the_ghsa_else_the_tools_own(ids, expected):
    assert choose_vulnerability_id(ids) == expected
