"""Generated scanner reports: Trivy JSON (schema version 2), Grype JSON and Snyk CLI `test --json`, in the shapes
../api-notes describe (trivy.md, grype.md, snyk.md), for the tests and `syncplane bench findings`.

Every report is rendered from one tool-independent catalogue of vulnerabilities (`catalogue`), so the same
image scanned by Trivy and by Grype reports the same findings, as the real tools would. The catalogue holds the
traps the notes list: unknown severities, findings without a fix, a comma list of fixed versions, the same CVE
in two packages, the same package version at two paths, GHSA-only and Snyk-only advisories.

Large reports are written item by item (`write_report`): a report's big lists are `Streamed` iterables, so a
Trivy report of 200,000 listed packages never exists in memory. `materialize` turns a small one into plain
dicts and lists that a test can edit.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import orjson

IMAGE = "registry.example.internal/itgov/asset-api"
TAG = "2.3.1"
SEVERITIES = ("critical", "high", "medium", "low", "negligible", "unknown")
SEVERITY_WEIGHTS = (4, 18, 40, 28, 6, 4)
OS_PACKAGES = ("libssl3", "libcrypto3", "busybox", "zlib", "musl", "libxml2", "curl", "expat", "sqlite-libs")
PYPI_PACKAGES = ("urllib3", "requests", "jinja2", "cryptography", "pyyaml", "django", "certifi", "idna")
NPM_PACKAGES = ("lodash", "minimist", "express", "axios", "semver", "debug", "qs", "ws")
VECTOR = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"


@dataclass
class Vulnerability:
    """One vulnerable package version, as any tool would find it."""

    id: str  # CVE-..., or GHSA-... when the advisory has no CVE
    package: str
    version: str
    ecosystem: str  # "os" (apk/deb), "pypi" or "npm"
    severity: str  # one of SEVERITIES
    fixed: list[str] = field(default_factory=list)
    cvss: float | None = None
    paths: list[str] = field(default_factory=list)  # where a language package was found (two: copied twice)
    snyk_id: str = ""
    ghsa: str = ""
    title: str = ""


def catalogue(count: int, *, seed: int = 1, changed: float = 0.0) -> Iterator[Vulnerability]:
    """`count` vulnerabilities, the same for the same arguments. `changed` (0..1): that share of them is found in
    another installed version (a re-scan after an upgrade: new findings, and the old ones fixed)."""
    rng = random.Random(seed)
    stride = round(1 / changed) if changed else 0
    for number in range(count):
        ecosystem = ("os", "os", "pypi", "npm")[number % 4]
        pool = {"os": OS_PACKAGES, "pypi": PYPI_PACKAGES, "npm": NPM_PACKAGES}[ecosystem]
        package = pool[number % len(pool)] if number < 64 else f"{pool[number % len(pool)]}-{number // 64}"
        version = f"{1 + number % 5}.{number % 17}.{number % 3}" + ("-r5" if ecosystem == "os" else "")
        if stride and number % stride == 0:
            version += ".1"
        severity = rng.choices(SEVERITIES, SEVERITY_WEIGHTS)[0]
        fixed = [] if number % 7 == 3 else [f"{2 + number % 5}.0.1"]
        if number % 29 == 5 and fixed:
            fixed = [f"1.26.{number % 20}", f"2.2.{number % 9}"]  # two maintained branches
        cvss = None if severity == "unknown" or number % 11 == 4 else round(rng.uniform(2.0, 9.9), 1)
        digest = hashlib.blake2b(f"{seed}:{number}".encode(), digest_size=6).hexdigest()
        ghsa = f"GHSA-{digest[0:4]}-{digest[4:8]}-{digest[8:12]}"
        vuln_id = ghsa if number % 23 == 9 and ecosystem != "os" else f"CVE-{2019 + number % 6}-{10000 + number}"
        paths = []
        if ecosystem == "pypi":
            site = "usr/local/lib/python3.12/site-packages"
            paths = [f"{site}/{package}-{version}.dist-info/METADATA"]
            if number % 13 == 2:  # the same package version copied into a virtualenv too
                paths.append(f"opt/venv/lib/python3.12/site-packages/{package}-{version}.dist-info/METADATA")
        elif ecosystem == "npm":
            paths = [f"app/node_modules/{package}/package.json"]
        yield Vulnerability(
            id=vuln_id, package=package, version=version, ecosystem=ecosystem, severity=severity, fixed=fixed,
            cvss=cvss, paths=paths, ghsa=ghsa, snyk_id=f"SNYK-{ecosystem.upper()}-{package.upper()}-{1000 + number}",
            title=f"{package}: {('buffer overflow', 'denial of service', 'prototype pollution')[number % 3]}",
        )
        if number % 17 == 1 and ecosystem == "os":  # the same CVE in the sibling package (libssl3 + libcrypto3)
            yield Vulnerability(id=vuln_id, package=f"{package}-libs", version=version, ecosystem=ecosystem,
                                severity=severity, fixed=fixed, cvss=cvss, ghsa=ghsa, title=f"{package}-libs: shared",
                                snyk_id=f"SNYK-OS-{package.upper()}LIBS-{1000 + number}")


# --- streaming JSON ----------------------------------------------------------------------------------------


class Streamed:
    """A JSON array written item by item, never held whole in memory."""

    def __init__(self, items: Iterable):
        self.items = items


def write_report(report, out: BinaryIO) -> None:
    """Write a report (dicts, lists and `Streamed` arrays) as JSON to a binary file."""
    if isinstance(report, Streamed):
        out.write(b"[")
        for number, item in enumerate(report.items):
            if number:
                out.write(b",")
            write_report(item, out)
        out.write(b"]")
    elif isinstance(report, dict) and _holds_stream(report):
        out.write(b"{")
        for number, (key, value) in enumerate(report.items()):
            out.write(b"," if number else b"")
            out.write(orjson.dumps(key) + b":")
            write_report(value, out)
        out.write(b"}")
    elif isinstance(report, list) and _holds_stream(report):
        write_report(Streamed(report), out)
    else:
        out.write(orjson.dumps(report))


def _holds_stream(value) -> bool:
    values = value.values() if isinstance(value, dict) else value
    return any(isinstance(v, Streamed) or (isinstance(v, dict | list) and _holds_stream(v)) for v in values)


def materialize(report):
    """The report as plain dicts and lists (small reports, for tests to edit)."""
    if isinstance(report, Streamed):
        return [materialize(item) for item in report.items]
    if isinstance(report, dict):
        return {key: materialize(value) for key, value in report.items()}
    if isinstance(report, list):
        return [materialize(item) for item in report]
    return report


def report_bytes(report) -> bytes:
    return orjson.dumps(materialize(report))


# --- Trivy -------------------------------------------------------------------------------------------------

TRIVY_SEVERITY = {"critical": "CRITICAL", "high": "HIGH", "medium": "MEDIUM", "low": "LOW", "negligible": "LOW",
                  "unknown": "UNKNOWN"}
TRIVY_VENDOR = {"critical": 4, "high": 3, "medium": 2, "low": 1, "negligible": 1, "unknown": 0}
OS_DIGEST = "sha256:" + "3f" * 32
CONFIG_DIGEST = "sha256:" + "9c" * 32
LAYER = {"Digest": "sha256:" + "51" * 32, "DiffID": "sha256:" + "a7" * 32}


def _purl(vuln: Vulnerability, distro: str) -> str:
    if vuln.ecosystem == "os":
        kind = "apk" if distro == "alpine" else "deb"
        return f"pkg:{kind}/{distro}/{vuln.package}@{vuln.version}?arch=x86_64"
    return f"pkg:{vuln.ecosystem}/{vuln.package}@{vuln.version}"


def trivy_vulnerability(vuln: Vulnerability, *, distro: str = "alpine", path: str = "") -> dict:
    entry = {
        "VulnerabilityID": vuln.id,
        "PkgID": f"{vuln.package}@{vuln.version}",
        "PkgName": vuln.package,
        "PkgIdentifier": {"PURL": _purl(vuln, distro), "UID": hashlib.blake2b(vuln.package.encode(),
                                                                              digest_size=8).hexdigest()},
        "InstalledVersion": vuln.version,
        "Status": "fixed" if vuln.fixed else "affected",
        "Layer": LAYER,
        "SeveritySource": "nvd" if vuln.ecosystem == "os" else "ghsa",
        "PrimaryURL": f"https://avd.aquasec.com/nvd/{vuln.id.lower()}",
        "DataSource": {"ID": "alpine" if vuln.ecosystem == "os" else "ghsa", "Name": "Advisory database",
                       "URL": "https://secdb.alpinelinux.org/"},
        "Title": vuln.title,
        "Description": f"{vuln.title}. A crafted input lets an attacker read memory.\nMore text follows.",
        "Severity": TRIVY_SEVERITY[vuln.severity],
        "CweIDs": ["CWE-787"],
        "VendorSeverity": {"nvd": TRIVY_VENDOR[vuln.severity]},
        "References": [f"https://nvd.nist.gov/vuln/detail/{vuln.id}"],
        "PublishedDate": "2024-06-27T11:15:00Z",
        "LastModifiedDate": "2024-07-02T12:00:00Z",
    }
    if path:
        entry["PkgPath"] = path
    if vuln.fixed:
        entry["FixedVersion"] = ", ".join(vuln.fixed)
    if vuln.cvss is not None:
        entry["CVSS"] = {"nvd": {"V3Vector": VECTOR, "V3Score": vuln.cvss},
                         "redhat": {"V3Vector": VECTOR.replace("C:H", "C:L"), "V3Score": round(vuln.cvss / 2, 1)}}
    if vuln.ecosystem == "os" and vuln.id.endswith("1"):
        entry["VendorIDs"] = [f"DSA-{vuln.id[-5:]}-1"]
    return entry


def trivy_package(number: int, distro: str = "alpine") -> dict:
    """One entry of a Result's `Packages` (listed by --list-all-pkgs: the bulk of a large report)."""
    name = f"pkg-{number:06d}"
    return {
        "ID": f"{name}@1.{number % 50}.0-r0", "Name": name,
        "Identifier": {"PURL": f"pkg:apk/{distro}/{name}@1.{number % 50}.0-r0?arch=x86_64",
                       "UID": f"{number:016x}"},
        "Version": f"1.{number % 50}.0", "Release": "r0", "Arch": "x86_64", "SrcName": name,
        "SrcVersion": f"1.{number % 50}.0-r0", "Licenses": ["MIT", "Apache-2.0"],
        "Maintainer": "Packagers <p@example.org>",
        "DependsOn": [f"musl@1.2.4-r{number % 3}", f"zlib@1.3.{number % 2}-r0"],
        "Layer": LAYER, "Digest": "sha1:" + hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest(),
        "InstalledFiles": [f"/usr/lib/{name}/lib{name}.so.{part}" for part in range(6)],
    }


def trivy_report(vulnerabilities: int = 40, *, packages: int = 0, seed: int = 1, changed: float = 0.0,
                 image: str = f"{IMAGE}:{TAG}", digest: bool = True, artifact_type: str = "container_image",
                 created_at: str = "2025-03-14T09:12:44.118263Z") -> dict:
    """A Trivy schema-2 report: the OS result (with `packages` listed packages before its vulnerabilities, as
    --list-all-pkgs writes them), a Python and a Node.js result, and a secret result with nothing to import."""
    vulns = lambda ecosystem: (v for v in catalogue(vulnerabilities, seed=seed, changed=changed)  # noqa: E731
                               if v.ecosystem == ecosystem)
    repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    metadata: dict = {"OS": {"Family": "alpine", "Name": "3.19.1"}, "DiffIDs": [LAYER["DiffID"]]}
    if artifact_type == "container_image":
        metadata |= {"ImageID": CONFIG_DIGEST, "RepoTags": [image]}
        if digest:
            metadata["RepoDigests"] = [f"mirror.example.org/itgov/asset-api@{OS_DIGEST}",
                                       f"{repository}@{OS_DIGEST}"]
    os_label = f"{image} (alpine 3.19.1)" if artifact_type == "container_image" else "alpine 3.19.1"
    os_result: dict = {"Target": os_label, "Class": "os-pkgs", "Type": "alpine"}
    if packages:
        os_result["Packages"] = Streamed(trivy_package(n) for n in range(packages))
    os_result["Vulnerabilities"] = Streamed(trivy_vulnerability(v) for v in vulns("os"))
    return {
        "SchemaVersion": 2,
        "CreatedAt": created_at,
        "ArtifactName": image,
        "ArtifactType": artifact_type,
        "Metadata": metadata,
        "Results": Streamed([
            os_result,
            {"Target": "Python", "Class": "lang-pkgs", "Type": "python-pkg",
             "Vulnerabilities": Streamed(trivy_vulnerability(v, path=p) for v in vulns("pypi") for p in v.paths)},
            {"Target": "Node.js", "Class": "lang-pkgs", "Type": "node-pkg",
             "Vulnerabilities": Streamed(trivy_vulnerability(v, path=p) for v in vulns("npm") for p in v.paths)},
            {"Target": "/app/.env", "Class": "secret",
             "Secrets": [{"RuleID": "aws-access-key-id", "Severity": "CRITICAL", "Title": "AWS Access Key ID"}]},
        ]),
    }


# --- Grype -------------------------------------------------------------------------------------------------

GRYPE_SEVERITY = {"critical": "Critical", "high": "High", "medium": "Medium", "low": "Low",
                  "negligible": "Negligible", "unknown": "Unknown"}
GRYPE_TYPES = {"os": "apk", "pypi": "python", "npm": "npm"}


def grype_match(vuln: Vulnerability, *, distro: str = "alpine", path: str = "") -> dict:
    """One match. A GHSA match carries its CVE as a related vulnerability only when the advisory has one; the
    CVSS of an OS match lives on the related NVD record (its own list is empty), as Grype writes them."""
    own_cvss, related_cvss = [], []
    if vuln.cvss is not None:
        entry = {"source": "nvd@nist.gov", "type": "Primary", "version": "3.1", "vector": VECTOR,
                 "metrics": {"baseScore": vuln.cvss, "exploitabilityScore": 3.9, "impactScore": 5.9},
                 "vendorMetadata": {}}
        (related_cvss if vuln.ecosystem == "os" else own_cvss).append(entry)
    namespace = f"{distro}:distro:{distro}:3.19" if vuln.ecosystem == "os" else f"github:language:{vuln.ecosystem}"
    location = path or ("/lib/apk/db/installed" if vuln.ecosystem == "os" else "")
    return {
        "vulnerability": {
            "id": vuln.id, "dataSource": f"https://security.example.org/{vuln.id}", "namespace": namespace,
            "severity": GRYPE_SEVERITY[vuln.severity], "urls": [f"https://security.example.org/{vuln.id}"],
            "description": f"{vuln.title}. A crafted input lets an attacker read memory.", "cvss": own_cvss,
            "fix": {"versions": vuln.fixed, "state": "fixed" if vuln.fixed else "not-fixed"}, "advisories": [],
        },
        "relatedVulnerabilities": [] if vuln.id.startswith("GHSA-") else [{
            "id": vuln.id, "dataSource": f"https://nvd.nist.gov/vuln/detail/{vuln.id}", "namespace": "nvd:cpe",
            "severity": GRYPE_SEVERITY[vuln.severity], "urls": [], "description": f"{vuln.title} (NVD).",
            "cvss": related_cvss,
        }],
        "matchDetails": [{"type": "exact-direct-match", "matcher": f"{GRYPE_TYPES[vuln.ecosystem]}-matcher",
                          "searchedBy": {"namespace": namespace,
                                         "package": {"name": vuln.package, "version": vuln.version}},
                          "found": {"vulnerabilityID": vuln.id, "versionConstraint": "< 9 (semver)"}}],
        "artifact": {
            "id": hashlib.blake2b(f"{vuln.package}{path}".encode(), digest_size=8).hexdigest(),
            "name": vuln.package, "version": vuln.version, "type": GRYPE_TYPES[vuln.ecosystem],
            "locations": [{"path": "/" + location.lstrip("/"), "layerID": LAYER["DiffID"]}],
            "language": "" if vuln.ecosystem == "os" else vuln.ecosystem, "licenses": ["MIT"],
            "cpes": [f"cpe:2.3:a:{vuln.package}:{vuln.package}:{vuln.version}:*:*:*:*:*:*:*"],
            "purl": _purl(vuln, distro), "upstreams": [],
        },
    }


def grype_report(vulnerabilities: int = 40, *, seed: int = 1, changed: float = 0.0, image: str = f"{IMAGE}:{TAG}",
                 digest: bool = True, directory: str = "") -> dict:
    """A Grype report of an image (or of a directory when `directory` is given): `matches` first, then
    `source`, `distro`, `descriptor`, in Grype's own order."""
    matches = Streamed(
        grype_match(v, path=p) for v in catalogue(vulnerabilities, seed=seed, changed=changed)
        for p in (v.paths or [""])
    )
    repository = image.rsplit(":", 1)[0]
    if directory:
        source = {"type": "directory", "target": directory}
    else:
        source = {"type": "image", "target": {
            "userInput": image, "imageID": CONFIG_DIGEST, "manifestDigest": OS_DIGEST,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "tags": [image], "imageSize": 81234567,
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": LAYER["DiffID"],
                        "size": 7654321}],
            "repoDigests": [f"{repository}@{OS_DIGEST}"] if digest else [],
            "architecture": "amd64", "os": "linux"}}
    return {
        "matches": matches,
        "source": source,
        "distro": {"name": "alpine", "version": "3.19.1", "idLike": []},
        "descriptor": {"name": "grype", "version": "0.79.3", "configuration": {"output": ["json"]},
                       "db": {"built": "2025-03-13T01:31:14Z", "schemaVersion": 5},
                       "timestamp": "2025-03-14T09:30:12Z"},
    }


# --- Snyk --------------------------------------------------------------------------------------------------


def snyk_vulnerability(vuln: Vulnerability, project: str, chain: list[str], package_manager: str = "npm") -> dict:
    cves = [] if vuln.id.startswith("GHSA-") else [vuln.id]
    severity = {"negligible": "low", "unknown": "low"}.get(vuln.severity, vuln.severity)
    return {
        "id": vuln.snyk_id, "title": vuln.title, "severity": severity, "severityWithCritical": severity,
        "cvssScore": vuln.cvss, "CVSSv3": VECTOR if vuln.cvss is not None else None,
        "identifiers": {"CVE": cves, "CWE": ["CWE-1321"], "GHSA": [vuln.ghsa]},
        "packageName": vuln.package, "name": vuln.package, "version": vuln.version,
        "moduleName": vuln.package, "packageManager": package_manager,
        "language": {"npm": "js", "pip": "python"}.get(package_manager, "linux"),
        "fixedIn": vuln.fixed, "semver": {"vulnerable": [f"<{vuln.fixed[0]}" if vuln.fixed else "*"]},
        "from": [project, *chain, f"{vuln.package}@{vuln.version}"],
        "upgradePath": [False, *(f"{vuln.package}@{v}" for v in vuln.fixed[:1])],
        "isUpgradable": bool(vuln.fixed), "isPatchable": False, "isPinnable": False,
        "description": f"## Overview\n{vuln.title}", "publicationTime": "2024-06-27T11:15:00Z",
    }


def snyk_project(vulnerabilities: int = 40, *, name: str = "itgov-portal-ui", seed: int = 1, changed: float = 0.0,
                 target_file: str = "package-lock.json", path: str = "/builds/itgov/portal-ui",
                 license_issue: bool = True) -> dict:
    """One `snyk test --json` project object: one entry per dependency path (a package reached two ways is listed
    twice), a license issue among them; its metadata after the vulnerabilities, as the CLI writes it."""
    root = f"{name}@3.2.0"
    entries = []
    for vuln in catalogue(vulnerabilities, seed=seed, changed=changed):
        if vuln.ecosystem == "os":
            continue  # an application's manifest lists no OS packages
        manager = "pip" if vuln.ecosystem == "pypi" else "npm"
        entries.append(snyk_vulnerability(vuln, root, [], manager))
        if len(vuln.paths) > 1 or vuln.package.startswith("debug"):  # also reached through another dependency
            entries.append(snyk_vulnerability(vuln, root, ["express@4.17.1"], manager))
    if license_issue:
        entries.append({"id": "snyk:lic:npm:left-pad:WTFPL", "type": "license", "title": "WTFPL license",
                        "severity": "medium", "packageName": "left-pad", "name": "left-pad", "version": "1.3.0",
                        "from": [root, "left-pad@1.3.0"], "identifiers": {"CVE": [], "CWE": []}, "fixedIn": []})
    return {
        "vulnerabilities": Streamed(entries),
        "ok": not entries, "dependencyCount": 412, "org": "itgov", "policy": "# Snyk (https://snyk.io) policy\n",
        "isPrivate": True, "packageManager": "npm", "ignoreSettings": None,
        "summary": f"{len(entries)} vulnerable dependency paths", "filesystemPolicy": False,
        "filtered": {"ignore": [], "patch": []}, "uniqueCount": len({e["id"] for e in entries}),
        "projectName": name, "displayTargetFile": target_file, "targetFile": target_file, "path": path,
    }


def snyk_container_project(vulnerabilities: int = 10, *, image: str = f"{IMAGE}:{TAG}", seed: int = 3,
                           applications: bool = True) -> dict:
    """A `snyk container test --json` object: OS vulnerabilities, the image's applications nested."""
    entries = [snyk_vulnerability(v, f"docker-image|{image.rsplit(':', 1)[0]}@{TAG}", [], "apk")
               for v in catalogue(vulnerabilities, seed=seed) if v.ecosystem == "os"]
    project = {
        "vulnerabilities": entries, "ok": not entries, "dependencyCount": 61, "packageManager": "apk",
        "projectName": f"docker-image|{image.rsplit(':', 1)[0]}", "displayTargetFile": "Dockerfile",
        "path": image, "docker": {"baseImage": "alpine:3.19.1"}, "platform": "linux/amd64",
        "uniqueCount": len(entries),
    }
    if applications:
        project["applications"] = [snyk_project(vulnerabilities, name="asset-api-ui", seed=seed + 1,
                                                target_file="/app/package-lock.json", path=image,
                                                license_issue=False)]
    return project


def snyk_error(message: str = "Authentication failed. Please check the API token on https://snyk.io",
               path: str = "/builds/itgov/portal-ui") -> dict:
    """What `snyk test --json` prints when it fails (exit 2)."""
    return {"ok": False, "error": message, "path": path}
