"""The journeys of the people who run Syncplane, in a real browser: sign in; create a ServiceNow integration with
the wizard, test it, dry-run it and sync it; open a merged asset and see where each value came from; create and
submit a change and see it approved; and a viewer sees no action buttons."""

import re

import httpx
import pytest
from playwright.sync_api import expect

from syncplane.integrations.choices import AuthType, RunStatus, SystemType
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import ExternalSystem, IntegrationSyncLog
from syncplane.integrations.secrets import to_reference
from syncplane.inventory.models import Asset

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]
PASSWORD = "pw-for-tests-123"


def nav(page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True).click()


def sign_in(page, username: str) -> None:
    page.goto("/")  # a newcomer is asked to sign in first
    page.get_by_label("User name").fill(username)
    page.get_by_label(re.compile(r"^Password\b")).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def test_an_admin_sets_up_servicenow_with_the_wizard_and_syncs_it(page, make_user, simulator, screenshot):
    make_user("admin", username="ada")
    sign_in(page, "ada")
    nav(page, "Integrations")
    page.get_by_role("link", name="New integration").click()
    screenshot(page, "wizard-catalogue")
    page.get_by_role("link", name="ServiceNow CMDB").click()
    page.get_by_label(re.compile(r"^Name\b")).fill("ServiceNow lab")
    page.get_by_label(re.compile(r"^Base URL\b")).fill(f"{simulator.url}/servicenow")
    page.get_by_label(re.compile(r"^Username\b")).fill("syncplane.integration")
    page.get_by_label(re.compile(r"^Password\b")).fill("demo-password")
    page.get_by_label(re.compile(r"^Page size\b")).fill("100")
    screenshot(page, "wizard-form")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="ServiceNow lab")).to_be_visible()

    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#connection-result")).to_contain_text("Connected")

    page.get_by_role("button", name="Dry run").click()
    expect(page.get_by_role("heading", name="What the sync would change")).to_be_visible()
    expect(page.locator("#progress")).to_contain_text("Success")
    assert not Asset.objects.exists()  # a dry run writes nothing

    page.get_by_role("link", name="ServiceNow lab").first.click()
    page.get_by_role("button", name="Sync now").click()
    expect(page.locator("#progress")).to_contain_text("Success")
    expect(page.locator("#progress")).to_contain_text("Records read")
    screenshot(page, "sync-log")
    log = IntegrationSyncLog.objects.filter(dry_run=False).get()
    assert log.status == RunStatus.SUCCESS and log.records_created == 250

    nav(page, "Dashboard")
    expect(page.get_by_role("link", name="ServiceNow lab")).to_be_visible()
    screenshot(page, "dashboard")


def test_a_merged_asset_shows_each_value_with_its_source(page, make_user, simulator, screenshot):
    make_user("viewer", username="vic")
    servicenow = ExternalSystem.objects.create(
        name="ServiceNow", system_type=SystemType.SERVICENOW_CMDB, category="cmdb",
        base_url=f"{simulator.url}/servicenow", auth_type=AuthType.BASIC,
        credentials={"username": "syncplane.integration", "password": to_reference("demo-password")},
        config={"page_size": 100})
    jira = ExternalSystem.objects.create(
        name="Jira Assets", system_type=SystemType.JIRA_ASSETS, category="cmdb", base_url=f"{simulator.url}/jira",
        auth_type=AuthType.BASIC,
        credentials={"username": "syncplane@acme.example", "password": to_reference("demo-jira-token")},
        config={"assets_api_base": f"{simulator.url}/jira", "page_size": 100,
                "object_types": ["Laptop", "Desktop", "Server", "Virtual Machine", "Tablet"]})
    for system in (servicenow, jira):
        assert run_sync(start_sync(system).pk).status == RunStatus.SUCCESS
    merged = Asset.objects.filter(sources__external_system=servicenow).filter(
        sources__external_system=jira).order_by("name").first()
    assert merged is not None

    sign_in(page, "vic")
    nav(page, "Inventory")
    screenshot(page, "inventory")
    page.get_by_label("Search").fill(merged.serial_number)
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("link", name=merged.name).first.click()
    expect(page.get_by_role("heading", name="Attributes and where each came from")).to_be_visible()
    expect(page.get_by_role("heading", name="ServiceNow (ServiceNow CMDB)")).to_be_visible()
    expect(page.get_by_role("heading", name="Jira Assets (Jira Assets)")).to_be_visible()
    screenshot(page, "asset")
    page.get_by_text("Raw record").first.click()
    expect(page.locator("details", has_text="Raw record").first.locator("pre")).to_contain_text("sys_id")


def test_an_operator_submits_a_change_and_sees_it_approved(page, make_user, simulator, screenshot):
    make_user("operator", username="otto")
    itsm = ExternalSystem.objects.create(
        name="ServiceNow ITSM", system_type=SystemType.SERVICENOW_ITSM, category="itsm",
        base_url=f"{simulator.url}/servicenow", auth_type=AuthType.BASIC,
        credentials={"username": "syncplane.integration", "password": to_reference("demo-password")})
    sign_in(page, "otto")
    nav(page, "Changes")
    page.get_by_role("link", name="New change").click()
    page.get_by_label(re.compile(r"^Title\b")).fill("Rotate the edge certificates")
    page.get_by_label(re.compile(r"^Risk score\b")).fill("40")
    page.get_by_label("ITSM integration").select_option(label="ServiceNow ITSM")
    page.get_by_role("button", name="Save draft").click()
    page.get_by_role("button", name="Submit to the CAB").click()
    expect(page.get_by_text("change.submitted")).to_be_visible()

    control = f"{simulator.url}/servicenow/_control"
    [remote] = httpx.get(f"{control}/changes").json()["changes"]  # delivered through the outbox
    httpx.post(f"{control}/changes/{remote['sys_id']}/approve", json={"comment": "Fine by the CAB"}).raise_for_status()

    nav(page, "Integrations")
    page.get_by_role("link", name="ServiceNow ITSM").click()
    page.get_by_role("button", name="Sync now").click()  # the status poll brings the approval back
    poll = IntegrationSyncLog.objects.filter(external_system=itsm).latest("pk")
    assert poll.status == RunStatus.SUCCESS, poll.error_summary
    expect(page.locator("#progress")).to_contain_text("Success")
    nav(page, "Changes")
    page.get_by_role("link", name="Rotate the edge certificates").click()
    expect(page.locator("dd").filter(has_text="Approved").first).to_be_visible()
    expect(page.get_by_text("Fine by the CAB")).to_be_visible()
    screenshot(page, "change")
    assert itsm.change_requests.get().state == "approved"


def test_a_viewer_sees_no_action_buttons(page, make_user, servicenow):
    make_user("viewer", username="vera")
    sign_in(page, "vera")
    page.goto(f"/integrations/{servicenow.pk}/")
    expect(page.get_by_role("heading", name=servicenow.name)).to_be_visible()
    for label in ("Sync now", "Test connection", "Edit", "Disable"):
        expect(page.get_by_role("button", name=label)).to_have_count(0)
    page.goto("/changes/")
    expect(page.get_by_role("link", name="New change")).to_have_count(0)
    assert page.goto("/integrations/new/").status == 403


def test_an_admin_edits_a_field_mapping_and_the_preview_follows(page, make_user, servicenow, screenshot):
    make_user("admin", username="ada")
    sign_in(page, "ada")
    page.goto(f"/integrations/{servicenow.pk}/")
    page.get_by_role("link", name="Field mapping").click()
    expect(page.get_by_role("heading", name="Mapped result")).to_be_visible()
    result = page.locator("#mapping-result")
    page.get_by_label("Source path of location").fill("location.display_value")
    page.get_by_label("Steps of location (one JSON object a line)").fill('{"op": "upper"}')
    expect(result).to_contain_text("FRANKFURT DATA CENTER")  # the sample's site, upper-cased, before any save
    page.get_by_role("heading", name="Raw record").scroll_into_view_if_needed()
    screenshot(page, "field-mapping")
    page.get_by_role("button", name="Save the field mapping").click()
    servicenow.refresh_from_db()
    assert servicenow.field_mapping["location"]["source"] == "location.display_value"


@pytest.mark.parametrize("url", ["/", "/assets/", "/integrations/", "/changes/", "/findings/"])
def test_pages_fit_a_phone_and_work_from_the_keyboard(page, make_user, servicenow, url):
    make_user("operator", username="pat")
    sign_in(page, "pat")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(url)
    # Nothing wider than the screen: wide tables scroll inside their own box.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#main"
