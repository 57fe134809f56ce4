"""What Trivy, Grype and Snyk share: reading a report in bounded memory, the finding's identity, and running the
tool's command line on a schedule.

Reading a report (`ScannerConnector.parse_report`), in two steps:
1. One streaming pass over the report (ijson events; a tool's module says which events matter). Each
   vulnerability entry is mapped, without its target, to a line of a spool file on disk; the report's header
   and trailer (what was scanned, when) are kept. The whole report is read before anything is yielded, so a
   report that is cut short, invalid or another tool's raises RecordError before its first record: nothing
   is written from it. It also means the target may come after the vulnerabilities (Grype writes `source`
   after `matches`, Snyk a project's name after its vulnerabilities).
2. The spool, read twice: once to find the findings reported more than once on a target (a package copied to
   two paths, one Snyk entry per dependency path), once to yield each finding once, with all its locations;
   then one ScanSummary per target. Memory holds a 16-byte digest per finding, never the report.

Running (`fetch`): each configured target is scanned by the tool's CLI, found with shutil.which, with an
argument list (never a shell), a minimal environment, in a session of its own so that a timeout kills the
whole process group. The report goes to a temporary file and is read as above. A target whose scan fails gives
a record error (the exit code and the end of stderr) and a ScanSummary with complete False, which fixes nothing;
the next target goes on.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar

import ijson
import orjson

from syncplane.integrations.base import ConnectionResult, Connector, ConnectorContext, MappedRecord, Page
from syncplane.integrations.choices import AuthType, Capability, Category, RecordKind
from syncplane.integrations.errors import ConfigurationError, RecordError
from syncplane.integrations.records import FindingRecord, FindingTarget, ScanSummary, Severity
from syncplane.integrations.secrets import Redactor

PAGE_SIZE = 1000  # finding records per page handed to the engine
EXTERNAL_ID_LIMIT = 255
FIXED_VERSION_LIMIT, PACKAGE_TYPE_LIMIT = 255, 40  # what a finding's columns hold
STDERR_TAIL = 2000  # characters of the tool's stderr kept for the sync log
KILL_GRACE_SECONDS = 5  # between SIGTERM and SIGKILL of a scan that outlived its timeout
# Variables a scanner may need from the worker's environment; nothing else of it (database URLs, Django's
# secret key) reaches a child process.
PASSED_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "XDG_CACHE_HOME", "SSL_CERT_FILE", "SSL_CERT_DIR",
                      "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy",
                      "DOCKER_HOST", "DOCKER_CONFIG", "CONTAINER_HOST")
# The top-level keys that give a tool's report away: a report of another tool is refused with its name.
SIGNATURES = {
    "trivy": frozenset({"SchemaVersion", "ArtifactName", "ArtifactType", "Results"}),
    "grype": frozenset({"matches", "ignoredMatches", "descriptor", "distro", "alertsByPackage", "source"}),
    "snyk": frozenset({"vulnerabilities", "projectName", "dependencyCount", "uniqueCount", "displayTargetFile",
                       "packageManager", "licensesPolicy"}),
}
DISPLAY_NAMES = {"trivy": "Trivy", "grype": "Grype", "snyk": "Snyk"}
# purl types and each tool's package types -> the canonical package_type (records.FindingRecord).
PACKAGE_TYPES = {
    "apk": "apk", "alpine": "apk", "wolfi": "apk", "chainguard": "apk",
    "deb": "deb", "debian": "deb", "ubuntu": "deb",
    "rpm": "rpm", "redhat": "rpm", "centos": "rpm", "rocky": "rpm", "alma": "rpm", "amazon": "rpm",
    "oracle": "rpm", "suse": "rpm", "photon": "rpm", "fedora": "rpm", "azurelinux": "rpm", "cbl-mariner": "rpm",
    "pypi": "pypi", "python": "pypi", "python-pkg": "pypi", "pip": "pypi", "pipenv": "pypi", "poetry": "pypi",
    "uv": "pypi", "conda-pkg": "pypi",
    "npm": "npm", "node-pkg": "npm", "yarn": "npm", "pnpm": "npm", "bun": "npm", "javascript": "npm",
    "maven": "maven", "jar": "maven", "pom": "maven", "gradle": "maven", "sbt": "maven", "java-archive": "maven",
    "golang": "go", "go-module": "go", "gobinary": "go", "gomod": "go", "gomodules": "go", "golangdep": "go",
    "gem": "gem", "gemspec": "gem", "bundler": "gem", "rubygems": "gem",
    "cargo": "cargo", "rust-binary": "cargo", "rust-crate": "cargo",
    "composer": "composer", "php-composer": "composer",
    "nuget": "nuget", "dotnet-core": "nuget", "dotnet-deps": "nuget", "packages-props": "nuget",
    "cocoapods": "cocoapods", "swift": "swift", "hex": "hex", "pub": "pub", "conan": "conan",
}


# --- identity ----------------------------------------------------------------------------------------------


def finding_external_id(target: FindingTarget, vulnerability_id: str, package_name: str, installed_version: str) -> str:
    """Stable across scans and tools: what was scanned, which vulnerability, in which package version. Too long
    for its column, it keeps its start and ends with a digest of the whole."""
    key = f"{target['kind']}:{target['ref']}|{vulnerability_id}|{package_name}|{installed_version}"
    if len(key) <= EXTERNAL_ID_LIMIT:
        return key
    digest = hashlib.blake2b(key.encode(), digest_size=20).hexdigest()
    return f"{key[:EXTERNAL_ID_LIMIT - len(digest) - 1]}~{digest}"


def scan_external_id(tool: str, target: FindingTarget) -> str:
    key = f"scan:{tool}:{target['ref']}"
    if len(key) <= EXTERNAL_ID_LIMIT:
        return key
    return f"{key[:EXTERNAL_ID_LIMIT - 41]}~{hashlib.blake2b(key.encode(), digest_size=20).hexdigest()}"


def choose_vulnerability_id(ids) -> tuple[str, list[str]]:
    """(the id, its aliases): the CVE if there is one, else the GHSA, else the tool's own id (the first given),
    so that every tool names a vulnerability alike. Several CVEs: the lowest, for the same reason."""
    unique = list(dict.fromkeys(i.strip() for i in ids if isinstance(i, str) and i.strip()))
    if not unique:
        raise RecordError("the vulnerability has no id")
    for prefix in ("CVE-", "GHSA-"):
        matching = sorted(i for i in unique if i.upper().startswith(prefix))
        if matching:
            chosen = matching[0]
            break
    else:
        chosen = unique[0]
    return chosen, sorted(i for i in unique if i != chosen)


def package_type(purl: str, tool_type: str = "") -> str:
    """The canonical package type: from the purl's type where there is one, else the tool's own word."""
    if purl.startswith("pkg:") and "/" in purl:
        kind = purl[4:].split("/", 1)[0].lower()
        return PACKAGE_TYPES.get(kind, kind)
    tool_type = (tool_type or "").lower()
    return PACKAGE_TYPES.get(tool_type, PACKAGE_TYPES.get(tool_type.split(":", 1)[0], tool_type))


def image_target(name: str, repo_digests=(), image_id: str = "") -> FindingTarget:
    """A container image: its digest reference where the report has one (the one of the scanned repository when
    it was pushed to several), else its image id (the config digest, which Trivy and Grype both report), else
    the name:tag that was scanned."""
    repository = name.split("@", 1)[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    digests = sorted(d for d in repo_digests or () if isinstance(d, str) and "@" in d)
    own = [d for d in digests if d.split("@", 1)[0] == repository]
    ref = (own or digests or [text(image_id) or name])[0]
    return {"kind": "image", "ref": ref, "name": name}


def text(value) -> str:
    return value.strip() if isinstance(value, str) else ""


def severity_of(value, scale: dict[str, str]) -> tuple[str, dict[str, str]]:
    """(canonical severity, unmapped): a value the tool's scale does not know is "unknown", and named."""
    word = text(value)
    if not word:
        return Severity.UNKNOWN, {}
    mapped = scale.get(word.lower())
    return (mapped, {}) if mapped else (Severity.UNKNOWN, {"severity": word})


def clip_list(value: str, limit: int) -> str:
    """A ", "-joined list that fits `limit`: the versions that fit, whole (a fix on many branches)."""
    if len(value) <= limit:
        return value
    return value[:limit].rsplit(", ", 1)[0] if ", " in value[:limit] else value[:limit]


def first_sentence(value) -> str:
    line = text(value).split("\n", 1)[0].strip()
    sentence = line.split(". ", 1)[0].strip()
    return sentence[:500]


# --- reading a report --------------------------------------------------------------------------------------


def report_events(stream: IO[bytes], tool: str) -> Iterator[tuple[str, str, Any]]:
    """ijson's (prefix, event, value) over the report, with its failures as RecordError: a report cut short,
    invalid JSON. ijson's own message quotes the report, so it is not passed on."""
    name = DISPLAY_NAMES[tool]
    seen_any = False
    try:
        for event in ijson.parse(stream, buf_size=64 * 1024, use_float=True):
            seen_any = True
            yield event
    except ijson.JSONError as exc:
        if "premature EOF" in str(exc):
            if not seen_any:
                raise RecordError(f"the {name} report is empty") from None
            raise RecordError(f"the report is cut short: the {name} JSON ends before it is complete (the scan, "
                              "the copy or the upload did not finish); nothing was imported from it") from None
        raise RecordError(f"the {name} report is not valid JSON; nothing was imported from it") from None
    except UnicodeDecodeError:
        raise RecordError(f"the {name} report is not UTF-8 JSON; nothing was imported from it") from None


def check_top_level_key(tool: str, key: str) -> None:
    """Refuse another tool's report at its first telling key (Grype's `matches` comes first: a Grype report is
    refused at once, not after reading it all)."""
    if key in SIGNATURES[tool]:
        return
    for other, keys in SIGNATURES.items():
        if other != tool and key in keys:
            raise RecordError(f"this is a {DISPLAY_NAMES[other]} report, not a {DISPLAY_NAMES[tool]} report "
                              f"(it has {DISPLAY_NAMES[other]}'s top-level key {key!r}); upload it as {other}")


class Builder:
    """Builds the object that starts at one event prefix (a vulnerability entry) from its events."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.builder = ijson.ObjectBuilder()

    def feed(self, prefix: str, event: str, value) -> bool:
        """Feed one event; True once the object is complete (`value`)."""
        self.builder.event(event, value)
        return prefix == self.prefix and event in ("end_map", "end_array")

    @property
    def value(self):
        return self.builder.value


@dataclass
class Slot:
    """One part of a report whose findings share a target (Snyk: a project, or an application in an image)."""

    target: FindingTarget | None = None
    complete: bool = True
    location_prefix: str = ""  # Snyk: the manifest, before each dependency path


@dataclass
class ReportRead:
    """What the streaming pass of a report kept: the targets and the spooled findings (without their target)."""

    tool: str
    spool: IO[bytes]
    slots: dict[str, Slot] = field(default_factory=dict)
    scanned_at: str | None = None
    findings: int = 0

    def add(self, slot: str, finding: dict, unmapped: dict | None = None) -> None:
        self.spool.write(orjson.dumps([slot, finding, unmapped or {}]) + b"\n")
        self.findings += 1

    def lines(self) -> Iterator[tuple[str, dict, dict]]:
        self.spool.seek(0)
        for line in self.spool:
            yield orjson.loads(line)


def emit_records(read: ReportRead, target: FindingTarget | None = None) -> Iterator[MappedRecord]:
    """The findings of a report read, each once per target with every location it was seen at, then one
    ScanSummary per target. `target` replaces the report's own (a host the configuration names)."""

    def target_of(slot: str) -> FindingTarget:
        found = target or read.slots[slot].target
        if not found:
            raise RecordError(f"the {DISPLAY_NAMES[read.tool]} report does not say what was scanned (Trivy: "
                              "ArtifactName; Grype: source; Snyk: projectName or path)")
        return found

    def identity(slot: str, finding: dict) -> tuple[str, bytes]:
        external_id = finding_external_id(target_of(slot), finding["vulnerability_id"], finding["package_name"],
                                          finding["installed_version"])
        return external_id, hashlib.blake2b(external_id.encode(), digest_size=16).digest()

    def locations(slot: str, finding: dict) -> list[str]:
        prefix = read.slots[slot].location_prefix if slot in read.slots else ""
        return [f"{prefix}: {place}" if prefix and place else place or prefix for place in finding["locations"]]

    seen: set[bytes] = set()
    more_locations: dict[bytes, list[str]] = {}
    for slot, finding, _ in read.lines():
        _, digest = identity(slot, finding)
        if digest in seen:
            more_locations.setdefault(digest, []).extend(locations(slot, finding))
        seen.add(digest)
    seen.clear()
    for slot, finding, unmapped in read.lines():
        external_id, digest = identity(slot, finding)
        if digest in seen:
            continue
        seen.add(digest)
        places = [*locations(slot, finding), *more_locations.pop(digest, ())]
        record: FindingRecord = {**finding, "kind": "finding", "target": target_of(slot), "tool": read.tool,
                                 "locations": sorted(set(filter(None, places))),
                                 "fixed_version": clip_list(finding["fixed_version"], FIXED_VERSION_LIMIT),
                                 "package_type": finding["package_type"][:PACKAGE_TYPE_LIMIT]}
        yield MappedRecord(external_id=external_id, attributes=record, unmapped=unmapped)
    summaries: dict[str, ScanSummary] = {}
    for slot in read.slots:
        scanned = target_of(slot)
        summary = summaries.setdefault(scanned["ref"], {
            "kind": "scan", "target": scanned, "tool": read.tool, "complete": True, "scanned_at": read.scanned_at,
        })
        summary["complete"] = summary["complete"] and read.slots[slot].complete
    for summary in summaries.values():
        yield MappedRecord(external_id=scan_external_id(read.tool, summary["target"]), attributes=summary)


# --- running the tool --------------------------------------------------------------------------------------


@dataclass
class CliRun:
    returncode: int | None  # None: killed after the timeout
    stderr: str  # its last STDERR_TAIL characters
    seconds: float


def kill_group(process: subprocess.Popen) -> None:
    """The scan and every process it started (they share its session's process group): SIGTERM, a grace for
    the tool to clean up, then SIGKILL for whatever is left of the group (children that ignored SIGTERM)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        if sig == signal.SIGTERM:
            try:
                process.wait(timeout=KILL_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                pass
    process.wait()


def tail(path: str, limit: int = STDERR_TAIL) -> str:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - limit * 4))
        data = handle.read().decode("utf-8", errors="replace")
    return ("..." if size > limit else "") + data[-limit:].strip() if data.strip() else ""


TARGETS_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "maxItems": 500,
    "description": "What each scheduled run scans, in order: {\"image\": \"registry/app:1.2\"}, {\"path\": "
                   "\"/srv/checkout\", \"name\": \"itgov-portal\"} (a repository or project directory) or "
                   "{\"host\": \"/\", \"hostname\": \"web01\"} (the file system of a machine of the inventory).",
    "items": {
        "type": "object",
        "properties": {
            "image": {"type": "string", "minLength": 1, "maxLength": 500, "pattern": "^[^\\s-][^\\s]*$"},
            "path": {"type": "string", "minLength": 1, "maxLength": 1000, "pattern": "^/"},
            "host": {"type": "string", "minLength": 1, "maxLength": 1000, "pattern": "^/"},
            "hostname": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": "^[A-Za-z0-9._-]+$"},
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
        },
        "oneOf": [
            {"required": ["image"], "not": {"anyOf": [{"required": ["path"]}, {"required": ["host"]}]}},
            {"required": ["path"], "not": {"anyOf": [{"required": ["image"]}, {"required": ["host"]}]}},
            {"required": ["host", "hostname"], "not": {"anyOf": [{"required": ["image"]}, {"required": ["path"]}]}},
        ],
        "additionalProperties": False,
    },
}


def common_properties(tool: str) -> dict:
    return {
        "targets": TARGETS_SCHEMA,
        "executable": {"type": "string", "minLength": 1, "maxLength": 500, "default": tool,
                       "description": f"The {tool} command: a name looked up on PATH, or an absolute path."},
        "timeout_seconds": {"type": "integer", "minimum": 30, "maximum": 86400, "default": 900,
                            "description": "A scan still running after this is killed, with every process it "
                                           "started, and counts as failed."},
    }


class ScannerConnector(Connector):
    """A vulnerability scanner: reports uploaded (`parse_report`) or produced by running its CLI on schedule."""

    category = Category.SECURITY
    record_kind = RecordKind.FINDING
    auth_types: ClassVar[tuple[str, ...]] = (AuthType.NONE,)
    capabilities = frozenset({Capability.TEST_CONNECTION, Capability.FULL, Capability.DRY_RUN,
                              Capability.REPORT_UPLOAD})
    default_sync_interval_minutes = 24 * 60
    # Trivy and Grype run on the worker and call no URL with credentials of ours: their base_url is the
    # placeholder local://<tool>. Snyk's CLI calls Snyk's API with the token: its base_url is that API.
    calls_api: ClassVar[bool] = False
    # Exit codes after which the report is read (the others are failed scans), and what each means.
    success_codes: ClassVar[frozenset[int]] = frozenset({0})
    exit_codes: ClassVar[dict[int, str]] = {}

    # --- reading a report ----------------------------------------------------------------------------
    @classmethod
    def read_report(cls, stream: IO[bytes], spool: IO[bytes]) -> ReportRead:
        """The tool's streaming pass over its report (per tool module)."""
        raise NotImplementedError

    @classmethod
    def parse_report(cls, stream, *, target: FindingTarget | None = None) -> Iterator[MappedRecord]:
        """The report's findings (kind "finding") and a ScanSummary per target (kind "scan"), in bounded memory.
        Raises RecordError, before the first record, for a report that is cut short, invalid or another
        tool's. `target` replaces what the report says was scanned (a host the caller knows)."""
        with tempfile.TemporaryFile(prefix=f"syncplane-{cls.system_type}-") as spool:
            read = cls.read_report(stream, spool)
            yield from emit_records(read, target)

    @classmethod
    def check_base_url(cls, url: str) -> None:
        if cls.calls_api:
            return super().check_base_url(url)
        if url != cls.placeholder_base_url():
            raise ConfigurationError(f"{cls.display_name} calls no URL: it runs the {cls.system_type} command on "
                                     f"the worker. Enter {cls.placeholder_base_url()} as the base URL")

    @classmethod
    def placeholder_base_url(cls) -> str:
        return f"local://{cls.system_type}"

    @classmethod
    def credential_destinations(cls, base_url: str, config: dict) -> dict[str, tuple | None]:
        return super().credential_destinations(base_url, config) if cls.calls_api else {}

    # --- running the tool ----------------------------------------------------------------------------
    def __init__(self, context: ConnectorContext):
        super().__init__(context)
        self.running: subprocess.Popen | None = None

    def command(self, target: dict, report_path: str) -> list[str]:
        """The arguments, after the executable, that scan one configured target into report_path."""
        raise NotImplementedError

    def version_command(self) -> list[str]:
        """The arguments that make the tool print its version (and its database's), after the executable."""
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        """The child's environment: the few variables it needs from ours, the tool's own (TRIVY_*, GRYPE_*,
        SNYK_*: the operator's settings for it, such as a DB repository mirror), and the connector's settings."""
        prefix = f"{self.system_type.upper()}_"
        return {name: value for name, value in os.environ.items()
                if name in PASSED_ENVIRONMENT or name.startswith(prefix)}

    def executable(self) -> str:
        found = shutil.which(self.config["executable"])
        if not found:
            raise ConfigurationError(f"{self.system_type} was not found on PATH; install it or set executable "
                                     f"(the integration's config) to its path")
        return found

    def redact(self, value: str) -> str:
        return Redactor(self.context.secret_values()).redact(value)

    def run_cli(self, argv: list[str], *, cwd: str, timeout: float, stdout_path: str = "") -> CliRun:
        """Run the tool to its end or its timeout; the report is whatever it wrote to its output file. stdout is
        dropped (the reports go to files) unless stdout_path asks for it; stderr goes to a file, not a pipe, so a
        chatty tool never blocks on it."""
        stderr_path = os.path.join(cwd, "stderr.log")
        started = time.monotonic()
        with open(stderr_path, "wb") as stderr, open(stdout_path or os.devnull, "wb") as stdout:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                       cwd=cwd, env=self.environment(), start_new_session=True)
            self.running = process
            try:
                returncode: int | None = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_group(process)
                returncode = None
            finally:
                self.running = None
        return CliRun(returncode, self.redact(tail(stderr_path)), time.monotonic() - started)

    def close(self) -> None:
        """A run that stops (cancelled, the worker shutting down) takes its scan down with it."""
        process = self.running
        if process is not None and process.poll() is None:
            kill_group(process)

    def test_connection(self) -> ConnectionResult:
        try:
            executable = self.executable()
        except ConfigurationError as exc:
            return ConnectionResult(ok=False, message=str(exc))
        with tempfile.TemporaryDirectory(prefix=f"syncplane-{self.system_type}-") as workdir:
            stdout_path = os.path.join(workdir, "stdout.log")
            run = self.run_cli([executable, *self.version_command()], cwd=workdir, timeout=60,
                               stdout_path=stdout_path)
            if run.returncode != 0:
                return ConnectionResult(ok=False, message=f"{executable} did not answer its version command ("
                                        f"{self.describe_exit(run)})", details={"stderr": run.stderr})
            with open(stdout_path, "rb") as output:
                version = self.describe_version(output.read(64 * 1024))
        return ConnectionResult(ok=True, message=f"{self.display_name} found at {executable}: {version}",
                                details={"executable": executable, "version": version})

    def describe_version(self, output: bytes) -> str:
        return output.decode("utf-8", errors="replace").strip().splitlines()[0][:200] if output.strip() else ""

    def describe_exit(self, run: CliRun) -> str:
        if run.returncode is None:
            return f"killed after its timeout of {self.config['timeout_seconds']} s"
        if run.returncode < 0:  # killed from outside: the OOM killer, an operator
            return f"killed by signal {-run.returncode}" + (f"; stderr: {run.stderr}" if run.stderr else "")
        meaning = self.exit_codes.get(run.returncode, "error")
        return f"exit code {run.returncode}: {meaning}" + (f"; stderr: {run.stderr}" if run.stderr else "")

    def failure_detail(self, report_path: str) -> str:
        """What the report file itself says about a failed scan (Snyk's JSON `error`), if anything."""
        return ""

    def fetch(self, mode: str, cursor: Any = None, resume: dict | None = None) -> Iterator[Page]:
        """Scan each configured target in turn, one page of findings at a time. A page's resume token names the
        target to scan after a crash: the one it belongs to (scanned again), or the next after its last page."""
        executable = self.executable()
        targets = self.config["targets"]
        first = int((resume or {}).get("target", 0))
        for index in range(first, len(targets)):
            batch: list[dict] = []
            for record in self.scan(executable, targets[index]):
                if len(batch) == PAGE_SIZE:
                    yield Page(records=batch, resume={"target": index})
                    batch = []
                batch.append(record)
            last = index == len(targets) - 1
            yield Page(records=batch, resume=None if last else {"target": index + 1})

    def scan(self, executable: str, target: dict) -> Iterator[dict]:
        """One target's findings and ScanSummary, as page records; a failed scan: its error, and a summary
        with complete False."""
        with tempfile.TemporaryDirectory(prefix=f"syncplane-{self.system_type}-") as workdir:
            report_path = os.path.join(workdir, "report.json")
            argv = [executable, *self.command(target, report_path)]
            run = self.run_cli(argv, cwd=workdir, timeout=self.config["timeout_seconds"])
            known = self.configured_target(target)
            if run.returncode not in self.success_codes:
                detail = self.failure_detail(report_path)
                yield from self.failed(known, f"the {self.system_type} scan of {known['name']} failed ("
                                       f"{self.describe_exit(run)}){': ' + detail if detail else ''}")
                return
            try:
                with open(report_path, "rb") as report:
                    # An image's report knows it best (its digest); a host, or a directory given a name, is
                    # what the configuration says.
                    override = known if "host" in target or ("path" in target and "name" in target) else None
                    records = self.parse_report(report, target=override)
                    first = next(records, None)  # the whole report is read before the first record comes
                    if first is None:
                        return
                    yield {"external_id": first.external_id, "attributes": first.attributes,
                           "unmapped": first.unmapped}
                    for record in records:
                        yield {"external_id": record.external_id, "attributes": record.attributes,
                               "unmapped": record.unmapped}
            except FileNotFoundError:
                yield from self.failed(known, f"the {self.system_type} scan of {known['name']} wrote no report ("
                                       f"{self.describe_exit(run)})")
            except RecordError as exc:
                yield from self.failed(known, f"the report of the {self.system_type} scan of {known['name']} "
                                       f"cannot be read: {exc}")

    def failed(self, target: FindingTarget, reason: str) -> Iterator[dict]:
        yield {"error": reason[:4000], "target": target}
        summary: ScanSummary = {"kind": "scan", "target": target, "tool": self.system_type, "complete": False,
                                "scanned_at": None}
        yield {"external_id": scan_external_id(self.system_type, target), "attributes": summary, "unmapped": {}}

    @staticmethod
    def configured_target(target: dict) -> FindingTarget:
        """What a configured target is, before its report says more (an image's digest)."""
        if "image" in target:
            return {"kind": "image", "ref": target["image"], "name": target.get("name", target["image"])}
        if "host" in target:
            hostname = target["hostname"]
            return {"kind": "asset", "ref": hostname.lower(), "name": target.get("name", hostname),
                    "asset": {"hostname": hostname.split(".", 1)[0].lower(),
                              **({"fqdn": hostname.lower()} if "." in hostname else {})}}
        return {"kind": "repository", "ref": target.get("name", target["path"]),
                "name": target.get("name", target["path"])}

    def map_record(self, raw: dict) -> MappedRecord:
        """The page records are mapped already (parse_report); a failed scan's record is its error."""
        if not isinstance(raw, dict) or "error" in raw or "external_id" not in raw:
            raise RecordError(raw.get("error") if isinstance(raw, dict) and raw.get("error")
                              else "not a finding record")
        return MappedRecord(external_id=raw["external_id"], attributes=raw["attributes"],
                            unmapped=raw.get("unmapped") or {})

    def external_id(self, raw: Any) -> str:
        if isinstance(raw, dict) and isinstance(raw.get("target"), dict):
            return scan_external_id(self.system_type, raw["target"])
        return raw.get("external_id", "") if isinstance(raw, dict) else ""
