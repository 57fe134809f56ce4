"""The field mapping editor: a sample of the simulator beside the canonical fields, the live preview part, save
with the API's validation (errors next to the field), and who may do what."""

import pytest
from django.core.cache import cache

from syncplane.integrations.models import ExternalSystem

pytestmark = pytest.mark.django_db

LOCATION_STEPS = '{"op": "split", "sep": "-", "index": 1}\n{"op": "upper"}'


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


def test_the_page_shows_a_sample_record_beside_the_fields(browser_as, servicenow, simulator):
    operator = browser_as("operator")
    page = operator.get(f"/integrations/{servicenow.pk}/mapping/").content.decode()
    assert "The source announced 250 records" in page
    assert "<code>host_name</code>" in page and "<code>department.display_value</code>" in page  # raw paths
    assert 'name="source__location"' in page and 'name="steps__last_seen_at"' in page  # canonical fields
    assert '<option value="department.display_value">' in page  # the sample's paths to choose from
    assert 'for="source-location"' in page and 'id="source-location"' in page  # every input has its label
    fetched = simulator.servicenow.stats.as_dict()["table_requests"]
    assert fetched == 1
    # Another sample record, and the live part, map the cached sample: the source is asked again only on request.
    second = operator.get(f"/integrations/{servicenow.pk}/mapping/?record=1").content.decode()
    assert '<option value="1" selected>' in second
    operator.post(f"/integrations/{servicenow.pk}/mapping/preview/", {"source__location": "host_name"})
    assert simulator.servicenow.stats.as_dict()["table_requests"] == fetched
    operator.get(f"/integrations/{servicenow.pk}/mapping/?refresh=1")
    assert simulator.servicenow.stats.as_dict()["table_requests"] == fetched + 1


def test_the_live_part_changes_when_a_step_is_added(browser_as, servicenow):
    operator = browser_as("operator")
    operator.get(f"/integrations/{servicenow.pk}/mapping/")  # fetches the sample
    url = f"/integrations/{servicenow.pk}/mapping/preview/"
    plain = operator.post(url, {"record": "0", "source__location": "host_name"}, HTTP_HX_REQUEST="true")
    stepped = operator.post(url, {"record": "0", "source__location": "host_name", "steps__location": LOCATION_STEPS},
                            HTTP_HX_REQUEST="true")
    plain, stepped = plain.content.decode(), stepped.content.decode()
    assert 'id="mapping-result"' in plain and "lt-fra-0000" in plain.lower()
    assert "<td>FRA</td>" in stepped and "<td>FRA</td>" not in plain
    regex = '{"op": "regex", "pattern": "(a"}'
    broken = operator.post(url, {"source__location": "host_name", "steps__location": regex},
                           HTTP_HX_REQUEST="true").content.decode()
    assert "location: step 1 (regex): &#x27;pattern&#x27; does not compile" in broken
    not_json = operator.post(url, {"steps__name": "{op: lower"}, HTTP_HX_REQUEST="true").content.decode()
    assert "name: line 1 is not a JSON object" in not_json


def test_add_step_returns_the_row_with_a_step_to_fill_in(browser_as, servicenow):
    part = browser_as("operator").post(
        f"/integrations/{servicenow.pk}/mapping/step/",
        {"field": "location", "op__location": "split", "source__location": "host_name",
         "steps__location": '{"op": "upper"}'}, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="row-location"' in part
    assert "{&quot;op&quot;: &quot;upper&quot;}\n{&quot;op&quot;: &quot;split&quot;" in part
    assert browser_as("operator").post(f"/integrations/{servicenow.pk}/mapping/step/",
                                       {"field": "colour", "op__colour": "upper"}).status_code == 404


def test_save_uses_the_apis_validation_and_shows_errors_next_to_the_field(browser_as, servicenow):
    admin = browser_as("admin")
    url = f"/integrations/{servicenow.pk}/mapping/"
    bad = admin.post(url, {"source__location": "host_name", "steps__location": '{"op": "split", "sep": ""}',
                           "source__status": "install_status", "steps__status": '{"map": {"1": "alive"}}'})
    assert bad.status_code == 400
    page = bad.content.decode()
    row = page[page.index('id="row-location"'):page.index('id="row-department"')]
    assert 'class="field has-error" id="row-location"' in page
    assert "step 1 (split): &#x27;sep&#x27; must be non-empty text" in row
    status_row = page[page.index('id="row-status"'):page.index('id="row-serial_number"')]
    assert "alive not one of" in status_row
    servicenow.refresh_from_db()
    assert servicenow.field_mapping == {}
    good = admin.post(url, {"source__location": "host_name", "steps__location": LOCATION_STEPS,
                            "source__status": "install_status", "steps__status": '{"map": {"1": "active"}}'})
    assert good.status_code == 302
    servicenow.refresh_from_db()
    assert servicenow.field_mapping == {
        "location": {"source": "host_name", "steps": [{"op": "split", "sep": "-", "index": 1}, {"op": "upper"}]},
        "status": {"source": "install_status", "map": {"1": "active"}},
    }
    again = admin.get(url).content.decode()  # the saved mapping comes back in the form, shorthand included
    assert 'value="host_name"' in again and "{&quot;map&quot;: {&quot;1&quot;: &quot;active&quot;}}" in again


def test_roles_admins_save_operators_try_viewers_are_refused(browser_as, servicenow):
    url = f"/integrations/{servicenow.pk}/mapping/"
    form = {"source__location": "host_name"}
    operator = browser_as("operator")
    assert "Only an admin can save" in operator.get(url).content.decode()
    assert operator.post(url, form).status_code == 403
    assert operator.post(url + "preview/", form).status_code == 200
    viewer = browser_as("viewer")
    assert viewer.get(url).status_code == 403 and viewer.post(url + "preview/", form).status_code == 403
    assert browser_as("anonymous").get(url).status_code == 302
    detail = browser_as("admin").get(f"/integrations/{servicenow.pk}/").content.decode()
    assert f'href="{url}"' in detail and "Field mapping" in detail
    assert ExternalSystem.objects.get(pk=servicenow.pk).field_mapping == {}


def test_an_unreachable_source_is_said_on_the_page(browser_as, servicenow):
    servicenow.credentials = {**servicenow.credentials, "username": "nobody"}
    servicenow.save()
    page = browser_as("operator").get(f"/integrations/{servicenow.pk}/mapping/").content.decode()
    assert "The sample could not be read" in page and "demo-password" not in page
