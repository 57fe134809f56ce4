"""The README's first hour, walked as written: its curl lines (create, test, dry run, sync, read the errors)
sent through the API against the simulators. Only the demo's simulator address becomes the test's, the token
is the admin's, and `<id>` / `<log-id>` are what the answers before said."""

import json
import re
import shlex
from pathlib import Path

import pytest

from syncplane.integrations.models import ExternalSystem
from syncplane.inventory.models import AssetSource

README = Path(__file__).resolve().parents[2] / "README.md"
DEMO_SIMULATORS = "http://127.0.0.1:8900"


def first_hour_commands() -> list[tuple[str, str, dict | None]]:
    """(method, path, body) of each curl line of the README's first-hour block."""
    text = README.read_text()
    section = text[text.index("## The first hour"):]
    block = re.search(r"```sh\n(.*?)\n```", section, flags=re.S).group(1)
    commands = []
    for line in block.splitlines():
        if not line.startswith("curl "):
            continue
        words = shlex.split(line)
        url = next(w for w in words if w.startswith("localhost:8000/"))
        body = json.loads(words[words.index("-d") + 1]) if "-d" in words else None
        method = words[words.index("-X") + 1] if "-X" in words else "GET"
        commands.append((method, url.removeprefix("localhost:8000"), body))
    return commands


def test_the_readme_walks_create_test_dry_run_sync_and_errors():
    paths = [(method, re.sub(r"/\d+/|<[^>]+>", "/{}/", path).replace("//", "/")) for method, path, _ in
             first_hour_commands()]
    assert paths == [("POST", "/api/v1/integrations/"), ("POST", "/api/v1/integrations/{}/test/"),
                     ("POST", "/api/v1/integrations/{}/sync/"), ("GET", "/api/v1/integration-sync-logs/{}/"),
                     ("POST", "/api/v1/integrations/{}/sync/"), ("GET", "/api/v1/integration-sync-logs/{}/")]


@pytest.mark.django_db
def test_the_first_hour_as_the_readme_writes_it(simulator, api_as, django_capture_on_commit_callbacks):
    admin = api_as("admin")
    ids: dict[str, int] = {}
    answers = []
    # Two bad records, on every read (the dry run's and the sync's), so that step 5 has errors to read.
    simulator.servicenow.inject_fault("malformed", indices=[3, 7], count=None)
    for method, path, body in first_hour_commands():
        path = path.replace("<id>", str(ids.get("id"))).replace("<log-id>", str(ids.get("log")))
        if body is not None:
            body = json.loads(json.dumps(body).replace(DEMO_SIMULATORS, simulator.url))
        with django_capture_on_commit_callbacks(execute=True):  # the sync task runs (eagerly) at the commit
            response = admin.generic(method, path, json.dumps(body) if body is not None else "",
                                     content_type="application/json")
        assert response.status_code in (200, 201, 202), (method, path, response.content)
        data = response.json()
        answers.append(data)
        if path == "/api/v1/integrations/":
            ids["id"] = data["id"]
        if "sync_log_id" in data:
            ids["log"] = data["sync_log_id"]
    created, tested, dry_run, dry_log, synced, sync_log = answers
    system = ExternalSystem.objects.get(pk=created["id"])
    assert system.name == "My ServiceNow" and system.base_url == f"{simulator.url}/servicenow"
    assert tested["ok"] is True
    # The dry run planned the creates and wrote nothing.
    assert dry_log["dry_run"] is True and dry_log["id"] == dry_run["sync_log_id"]
    assert dry_log["records_created"] > 0 and dry_log["changes"] and dry_log["records_failed"] == 2
    assert all(change["status"] == "planned" for change in dry_log["changes"])
    # The sync wrote them; the two malformed records are the errors to read, each with reason and payload.
    assert sync_log["id"] == synced["sync_log_id"] and sync_log["status"] == "partial"
    assert sync_log["records_failed"] == 2 and len(sync_log["record_errors"]) == 2
    assert all(error["reason"] and error["raw_payload"] is not None for error in sync_log["record_errors"])
    assert AssetSource.objects.filter(external_system=system).count() == sync_log["records_created"] > 0
