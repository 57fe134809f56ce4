"""Running the scanners' command lines: argument lists, environment, exit codes, stderr, timeouts, a missing
binary; against fake executables that behave like the tools (fake_cli.py)."""

import os
import threading
import time

import pytest

from syncplane.devtools import scan_reports as sr
from syncplane.integrations.connectors.scanners import base
from syncplane.integrations.connectors.scanners.grype import GrypeConnector
from syncplane.integrations.connectors.scanners.snyk import SnykConnector
from syncplane.integrations.connectors.scanners.trivy import TrivyConnector
from syncplane.integrations.errors import ConfigurationError, PolicyViolation, RecordError
from tests.integrations.connectors.scanners.conftest import make_connector
from tests.integrations.connectors.scanners.fake_cli import alive

IMAGE = f"{sr.IMAGE}:{sr.TAG}"
TOKEN = "snyk-token-5f0c2d8e"


def scan_all(connector) -> tuple[list, list]:
    """(mapped records, record errors) of every page, as the engine would map them."""
    records, errors = [], []
    for page in connector.fetch("full"):
        for raw in page.records:
            try:
                records.append(connector.map_record(raw))
            except RecordError as exc:
                errors.append((connector.external_id(raw), str(exc)))
    return records, errors


def test_trivy_command_line_environment_and_report(fake, monkeypatch):
    trivy = fake("trivy")
    trivy.plan(IMAGE, report=sr.trivy_report(30))
    trivy.plan("/srv/checkout", report=sr.trivy_report(5, image="/srv/checkout", artifact_type="filesystem"))
    trivy.plan("/", report=sr.trivy_report(5, image="/", artifact_type="filesystem"))
    monkeypatch.setenv("SECRET_KEY", "must-not-reach-the-scanner")
    monkeypatch.setenv("TRIVY_DB_REPOSITORY", "mirror.example.internal/aquasec/trivy-db:2")
    connector = make_connector(TrivyConnector, {"targets": [
        {"image": IMAGE}, {"path": "/srv/checkout", "name": "itgov-portal"}, {"host": "/", "hostname": "web01.corp"},
    ], "cache_dir": "/var/cache/trivy", "timeout_seconds": 600})
    records, errors = scan_all(connector)
    assert errors == []
    image_call, fs_call, host_call = trivy.calls()
    args = image_call["args"]
    assert args[0] == "image" and args[-1] == IMAGE
    output = args[args.index("--output") + 1]
    assert args[args.index("--format") + 1] == "json" and args[args.index("--scanners") + 1] == "vuln"
    assert {"--quiet", "--skip-db-update", "--skip-java-db-update", "--offline-scan", "--list-all-pkgs=false"} \
        <= set(args)
    assert args[args.index("--exit-code") + 1] == "0" and args[args.index("--timeout") + 1] == "570s"
    assert args[args.index("--cache-dir") + 1] == "/var/cache/trivy"
    assert os.path.dirname(output) == image_call["cwd"]  # a temporary directory of its own, gone afterwards
    assert not os.path.exists(image_call["cwd"])
    assert "SECRET_KEY" not in image_call["env"] and image_call["env"]["PATH"].startswith(str(trivy.bin_dir))
    assert image_call["env"]["TRIVY_DB_REPOSITORY"] == "mirror.example.internal/aquasec/trivy-db:2"
    assert fs_call["args"][0] == "fs" and fs_call["args"][-1] == "/srv/checkout"
    assert host_call["args"][0] == "rootfs" and host_call["args"][-1] == "/"
    targets = {r.attributes["target"]["ref"]: r.attributes["target"] for r in records if r.attributes["kind"] == "scan"}
    assert set(targets) == {f"{sr.IMAGE}@{sr.OS_DIGEST}", "itgov-portal", "web01.corp"}
    assert targets["web01.corp"] == {"kind": "asset", "ref": "web01.corp", "name": "web01.corp",
                                     "asset": {"hostname": "web01", "fqdn": "web01.corp"}}
    assert all(targets[ref]["kind"] == "repository" for ref in ["itgov-portal"])


def test_pages_resume_at_the_target_they_belong_to(fake, monkeypatch):
    monkeypatch.setattr(base, "PAGE_SIZE", 10)
    trivy = fake("trivy")
    trivy.plan("a:1", report=sr.trivy_report(25, image="a:1"))
    trivy.plan("b:1", report=sr.trivy_report(3, image="b:1"))
    connector = make_connector(TrivyConnector, {"targets": [{"image": "a:1"}, {"image": "b:1"}]})
    pages = list(connector.fetch("full"))
    assert [page.resume for page in pages] == [{"target": 0}] * 2 + [{"target": 1}, None]
    resumed = list(connector.fetch("full", resume={"target": 1}))
    assert len(resumed) == 1 and len(trivy.calls()) == 3


def test_a_failed_scan_is_a_record_error_and_an_incomplete_summary_and_the_next_target_goes_on(fake):
    trivy = fake("trivy")
    trivy.plan("broken:1", exit=1, stderr="2025-03-14T09:12:44Z\tFATAL\timage scan error: unable to find the "
                                          "specified image \"broken:1\"\n")
    trivy.plan(IMAGE, report=sr.trivy_report(10))
    connector = make_connector(TrivyConnector, {"targets": [{"image": "broken:1"}, {"image": IMAGE}]})
    records, errors = scan_all(connector)
    ((external_id, reason),) = errors
    assert external_id == "scan:trivy:broken:1"
    assert "exit code 1: error" in reason and "unable to find the specified image" in reason
    failed = [r for r in records if r.attributes["kind"] == "scan" and not r.attributes["complete"]]
    assert [r.external_id for r in failed] == ["scan:trivy:broken:1"]
    assert sum(r.attributes["kind"] == "finding" for r in records) == len(list(sr.catalogue(10)))


@pytest.mark.parametrize(("raw", "reason"), [
    (b'{"SchemaVersion": 2, "ArtifactName": "x", "Results": [', "the report is cut short"),
    (None, "wrote no report"),
    (sr.report_bytes(sr.grype_report(2)), "this is a Grype report"),
])
def test_an_unreadable_report_fixes_nothing(fake, raw, reason):
    trivy = fake("trivy")
    trivy.plan(IMAGE, raw=raw)
    records, errors = scan_all(make_connector(TrivyConnector, {"targets": [{"image": IMAGE}]}))
    assert len(errors) == 1 and reason in errors[0][1]
    assert [(r.attributes["kind"], r.attributes["complete"]) for r in records] == [("scan", False)]


def test_grype_offline_environment_and_its_exit_codes(fake):
    grype = fake("grype")
    grype.plan(IMAGE, report=sr.grype_report(8), exit=2)  # a --fail-on threshold from a config file: a scan
    grype.plan("dir:/srv/checkout", report=sr.grype_report(2, directory="/srv/checkout"))
    grype.plan("broken:1", exit=1, stderr="failed to load vulnerability db: the vulnerability database was built "
                                          "6 days ago (max allowed age is 5 days)")
    connector = make_connector(GrypeConnector, {"targets": [
        {"image": IMAGE}, {"path": "/srv/checkout"}, {"image": "broken:1"}], "cache_dir": "/var/cache/grype"})
    records, errors = scan_all(connector)
    first = grype.calls()[0]
    assert first["args"] == [IMAGE, "-o", "json", "--file", os.path.join(first["cwd"], "report.json"), "-q"]
    assert grype.calls()[1]["args"][0] == "dir:/srv/checkout"
    assert first["env"]["GRYPE_DB_AUTO_UPDATE"] == "false" and first["env"]["GRYPE_DB_CACHE_DIR"] == "/var/cache/grype"
    expected = len(list(sr.catalogue(8))) + len(list(sr.catalogue(2)))
    assert sum(r.attributes["kind"] == "finding" for r in records) == expected
    ((external_id, reason),) = errors
    assert external_id == "scan:grype:broken:1" and "max allowed age is 5 days" in reason


def test_snyk_token_in_the_environment_only_and_its_exit_codes(fake):
    snyk = fake("snyk")
    snyk.plan(IMAGE, report=sr.snyk_container_project(6), exit=1)  # vulnerabilities found: a scan
    snyk.plan("/srv/portal", report=sr.snyk_project(6), exit=1)
    snyk.plan("/srv/empty", report=sr.snyk_error("Could not detect supported target files in /srv/empty"), exit=3)
    snyk.plan("/srv/auth", report=sr.snyk_error(f"Authentication failed for token {TOKEN}"), exit=2)
    connector = make_connector(SnykConnector, {"targets": [
        {"image": IMAGE}, {"path": "/srv/portal"}, {"path": "/srv/empty"}, {"path": "/srv/auth"}],
        "org": "itgov", "all_projects": True}, base_url="https://api.eu.snyk.io", token=TOKEN)
    records, errors = scan_all(connector)
    container, project = snyk.calls()[:2]
    assert container["args"][:3] == ["container", "test", IMAGE] and "--org=itgov" in container["args"]
    assert project["args"][:2] == ["test", "/srv/portal"] and "--all-projects" in project["args"]
    assert all(TOKEN not in " ".join(call["args"]) for call in snyk.calls())
    assert container["env"]["SNYK_TOKEN"] == TOKEN and container["env"]["SNYK_API"] == "https://api.eu.snyk.io"
    complete = {r.attributes["target"]["ref"]: r.attributes["complete"] for r in records
                if r.attributes["kind"] == "scan"}
    assert complete == {IMAGE: True, "itgov-portal-ui": True, "/srv/empty": False, "/srv/auth": False}
    reasons = dict(errors)
    assert "exit code 3: no supported project" in reasons["scan:snyk:/srv/empty"]
    assert "Could not detect supported target files" in reasons["scan:snyk:/srv/empty"]
    assert "exit code 2: failure" in reasons["scan:snyk:/srv/auth"] and TOKEN not in reasons["scan:snyk:/srv/auth"]


def test_snyk_needs_its_token_and_scans_no_host(fake, monkeypatch):
    with pytest.raises(ConfigurationError, match="not the file system of a host"):
        make_connector(SnykConnector, {"targets": [{"host": "/", "hostname": "web01"}]}, token=TOKEN)
    snyk = fake("snyk")
    snyk.plan("/srv/portal", report=sr.snyk_project(3), exit=1)
    monkeypatch.delenv("SNYK_TOKEN", raising=False)
    without = make_connector(SnykConnector, {"targets": [{"path": "/srv/portal"}]}, base_url="https://api.snyk.io")
    with pytest.raises(ConfigurationError, match="Snyk needs a token"):
        list(without.fetch("full"))
    monkeypatch.setenv("SNYK_TOKEN", "the-workers-own-token")  # auth type none: the worker's token
    records, errors = scan_all(without)
    assert not errors and snyk.calls()[-1]["env"]["SNYK_TOKEN"] == "the-workers-own-token"


def test_the_stderr_kept_is_the_end_of_it(fake):
    trivy = fake("trivy")
    trivy.plan(IMAGE, exit=1, stderr="progress line\n" * 2000 + "FATAL: the last word")
    _, errors = scan_all(make_connector(TrivyConnector, {"targets": [{"image": IMAGE}]}))
    ((_, reason),) = errors
    assert reason.endswith("FATAL: the last word)") and len(reason) < base.STDERR_TAIL + 300


def test_a_scan_killed_from_outside_is_said_so(fake):
    trivy = fake("trivy")
    trivy.plan(IMAGE, signal=9, stderr="scanning layer 3 of 12\n")
    _, errors = scan_all(make_connector(TrivyConnector, {"targets": [{"image": IMAGE}]}))
    assert "(killed by signal 9; stderr: scanning layer 3 of 12)" in errors[0][1]


def test_a_timeout_kills_the_scan_and_every_process_it_started(fake, tmp_path, monkeypatch):
    monkeypatch.setattr(base, "KILL_GRACE_SECONDS", 0.5)
    trivy = fake("trivy")
    trivy.plan(IMAGE, sleep=60, child=True, child_ignores_term=True)
    connector = make_connector(TrivyConnector, {"targets": [{"image": IMAGE}]})
    workdir = tmp_path / "work"
    workdir.mkdir()
    started = time.monotonic()
    run = connector.run_cli([str(trivy.path), "image", "--format", "json", "--output", str(workdir / "r.json"),
                             IMAGE], cwd=str(workdir), timeout=1.5)
    assert run.returncode is None and time.monotonic() - started < 10
    child = trivy.child_pid()
    for _ in range(50):  # the child ignored SIGTERM: SIGKILL took it
        if not alive(child):
            break
        time.sleep(0.1)
    assert not alive(child)
    assert "killed after its timeout" in connector.describe_exit(run)


def test_closing_the_connector_stops_a_running_scan(fake, tmp_path):
    trivy = fake("trivy")
    trivy.plan(IMAGE, sleep=60, child=True)
    connector = make_connector(TrivyConnector, {"targets": [{"image": IMAGE}]})
    pages = connector.fetch("full")
    thread = threading.Thread(target=lambda: list(pages))
    thread.start()
    deadline = time.monotonic() + 30  # until the scan (a Python script: slow to start under load) has its child
    while time.monotonic() < deadline:
        if connector.running is not None and (trivy.bin_dir / "trivy.child").exists():
            break
        time.sleep(0.05)
    connector.close()
    thread.join(timeout=15)
    assert not thread.is_alive() and not alive(trivy.child_pid())


def test_a_missing_binary_is_said_plainly(bin_dir):
    connector = make_connector(GrypeConnector, {"targets": [{"image": IMAGE}]})
    result = connector.test_connection()
    assert not result.ok
    assert result.message.startswith("grype was not found on PATH; install it or set executable")
    with pytest.raises(ConfigurationError, match="grype was not found on PATH"):
        list(connector.fetch("full"))


@pytest.mark.parametrize(("connector_class", "message"), [
    (TrivyConnector, "Trivy found at {path}: version 0.58.1, vulnerability DB updated 2025-03-13T06:10:52Z"),
    (GrypeConnector, "Grype found at {path}: version 0.79.3"),
    (SnykConnector, "Snyk found at {path}: 1.1290.0"),
])
def test_test_connection_names_the_version(fake, connector_class, message):
    cli = fake(connector_class.system_type)
    connector = make_connector(connector_class, {"targets": [{"image": IMAGE}]}, token=TOKEN,
                               base_url="https://api.snyk.io" if connector_class is SnykConnector else "")
    result = connector.test_connection()
    assert result.ok and result.message == message.format(path=cli.path)


def test_an_absolute_executable_path(fake, tmp_path, monkeypatch):
    cli = fake("trivy")
    monkeypatch.setenv("PATH", "/nonexistent")
    connector = make_connector(TrivyConnector, {"targets": [{"image": IMAGE}], "executable": str(cli.path)})
    assert connector.test_connection().ok


@pytest.mark.parametrize("target", [
    {"image": "-rf"}, {"image": IMAGE, "path": "/x"}, {"path": "relative/dir"}, {"host": "/"},
    {"image": "a b"}, {"url": "x"},
])
def test_targets_are_checked(target):
    with pytest.raises(ConfigurationError, match="targets"):
        TrivyConnector.validated_config({"targets": [target]})


def test_base_url_is_a_placeholder_for_trivy_and_grype_and_snyks_api_for_snyk():
    TrivyConnector.check_base_url("local://trivy")
    with pytest.raises(ConfigurationError, match="Enter local://grype"):
        GrypeConnector.check_base_url("https://grype.example.org")
    assert TrivyConnector.credential_destinations("local://trivy", {}) == {}
    with pytest.raises(PolicyViolation):
        SnykConnector.check_base_url("http://169.254.169.254/latest")
    SnykConnector.check_base_url("http://127.0.0.1:9")  # tests allow loopback, as the demo does
