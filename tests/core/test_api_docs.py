"""The API schema and its Swagger page: who may read them, and answers to every method instead of a 500."""

import pytest
from rest_framework.test import APIClient


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_docs_need_a_role_unless_made_public(api_as, settings, path):
    settings.SYNCPLANE_API_DOCS_PUBLIC = False
    assert APIClient().get(path).status_code == 401
    assert api_as(None).get(path).status_code == 403  # signed in, but no role
    assert api_as("viewer").get(path).status_code == 200
    settings.SYNCPLANE_API_DOCS_PUBLIC = True
    assert APIClient().get(path).status_code == 200


def test_docs_are_private_by_default_outside_the_demo():
    import os

    if "SYNCPLANE_API_DOCS_PUBLIC" in os.environ:
        pytest.skip("the environment sets SYNCPLANE_API_DOCS_PUBLIC")
    from syncplane import settings as project_settings

    assert project_settings.SYNCPLANE_API_DOCS_PUBLIC is project_settings.SYNCPLANE_DEMO


@pytest.mark.parametrize("public", [True, False])
@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_options_answers_without_a_server_error(api_as, settings, path, public):
    """OPTIONS /api/docs/ answered 500: DRF's metadata went through the page's HTML template renderer."""
    settings.SYNCPLANE_API_DOCS_PUBLIC = public
    client = APIClient(raise_request_exception=False)
    response = client.options(path)
    assert response.status_code == (200 if public else 401)
    response = api_as("viewer").options(path)
    assert response.status_code == 200
    assert "GET" in response["Allow"]


def test_swagger_groups_the_endpoints_by_app():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    tags = {path: {tag for op in ops.values() for tag in op.get("tags", [])} for path, ops in schema["paths"].items()}
    assert tags["/api/v1/assets/"] == {"Inventory"}
    assert tags["/api/v1/integrations/"] == {"Integrations"}
    assert tags["/api/v1/changes/"] == {"Changes"}
    assert tags["/api/v1/findings/"] == {"Findings"}
    assert tags["/api/v1/directory/users/"] == {"Directory"}
    assert [t["name"] for t in schema["tags"]][:2] == ["Authentication", "Integrations"]
