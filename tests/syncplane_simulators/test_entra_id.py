"""The Graph simulator behaves like Graph where the connector depends on it."""

import httpx
import pytest

from syncplane_simulators import entra_id as graph_sim
from syncplane_simulators.server import SimulatorServer


@pytest.fixture(scope="module")
def server():
    with SimulatorServer(records=10) as running:
        running.graph.page_size = 25
        yield running


@pytest.fixture
def graph(server):
    server.graph.reset()
    return server.graph


def token(server):
    response = httpx.post(f"{server.url}/graph/login/{graph_sim.DEFAULT_TENANT}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": graph_sim.DEFAULT_CLIENT_ID,
        "client_secret": graph_sim.DEFAULT_CLIENT_SECRET, "scope": graph_sim.GRAPH_SCOPE})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and isinstance(body["expires_in"], int)
    return {"Authorization": f"Bearer {body['access_token']}"}


def chain(url, headers):
    pages = []
    while True:
        body = httpx.get(url, headers=headers).json()
        pages.append(body)
        if "@odata.nextLink" not in body:
            return pages, body["@odata.deltaLink"]
        url = body["@odata.nextLink"]


def test_openid_configuration_names_the_token_endpoint(server, graph):
    body = httpx.get(f"{server.url}/graph/login/{graph_sim.DEFAULT_TENANT}/v2.0/.well-known/openid-configuration"
                     ).json()
    assert body["token_endpoint"].endswith(f"/graph/login/{graph_sim.DEFAULT_TENANT}/oauth2/v2.0/token")


def test_token_errors_are_oauth_style(server, graph):
    response = httpx.post(f"{server.url}/graph/login/{graph_sim.DEFAULT_TENANT}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": graph_sim.DEFAULT_CLIENT_ID, "client_secret": "wrong",
        "scope": graph_sim.GRAPH_SCOPE})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client" and response.json()["error_codes"] == [7000215]


def test_users_delta_pages_select_and_the_empty_first_page(server, graph):
    headers = token(server)
    pages, delta = chain(f"{server.url}/graph/v1.0/users/delta?$select=id,userPrincipalName,accountEnabled", headers)
    assert pages[0]["value"] == [] and "@odata.nextLink" in pages[0]  # empty, and not the end
    users = [u for page in pages for u in page["value"]]
    assert len(users) == 120 and len(pages) == 1 + 120 // 25 + 1
    assert set(users[0]) == {"id", "userPrincipalName", "accountEnabled"}
    # Without $select, the default property set: no accountEnabled.
    first = chain(f"{server.url}/graph/v1.0/users/delta", headers)[0][1]["value"][0]
    assert "accountEnabled" not in first and "userPrincipalName" in first
    # Nothing changed: the delta link answers an empty chain.
    assert chain(delta, headers)[0][-1]["value"] == []


def test_delta_returns_exactly_the_changes(server, graph):
    headers = token(server)
    _, users_link = chain(f"{server.url}/graph/v1.0/users/delta?$select=id,accountEnabled", headers)
    _, groups_link = chain(f"{server.url}/graph/v1.0/groups/delta?$select=displayName,members", headers)
    ids = list(graph.users)
    httpx.post(f"{server.url}/graph/_control/users/disable", json={"id": ids[1]})
    httpx.post(f"{server.url}/graph/_control/users/remove", json={"id": ids[2]})
    httpx.post(f"{server.url}/graph/_control/groups/members/remove", json={"group": "Finance", "member": ids[5]})
    users = [u for p in chain(users_link, headers)[0] for u in p["value"]]
    assert {u["id"]: u for u in users} == {ids[1]: {"id": ids[1], "accountEnabled": False},
                                           ids[2]: {"id": ids[2], "@removed": {"reason": "deleted"}}}
    groups = [g for p in chain(groups_link, headers)[0] for g in p["value"]]
    finance = [g for g in groups if g.get("displayName") == "Finance"]
    assert finance and finance[0]["members@delta"] == [
        {"@odata.type": "#microsoft.graph.user", "id": ids[5], "@removed": {"reason": "deleted"}}]


def test_initial_groups_delta_lists_a_deleted_group_as_removed(server, graph):
    headers = token(server)
    pages, _ = chain(f"{server.url}/graph/v1.0/groups/delta?$select=displayName,members", headers)
    items = [g for page in pages for g in page["value"]]
    assert sum(1 for g in items if "@removed" in g) == 1
    all_staff = [g for g in items if g.get("displayName") == "All Staff"]
    assert len(all_staff) > 1  # the large group comes in slices


def test_top_is_refused_on_delta_and_expired_tokens_are_401(server, graph):
    headers = token(server)
    response = httpx.get(f"{server.url}/graph/v1.0/users/delta?$top=5", headers=headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == "Request_UnsupportedQuery"
    httpx.post(f"{server.url}/graph/_control/expire-tokens")
    response = httpx.get(f"{server.url}/graph/v1.0/users/delta", headers=headers)
    assert response.status_code == 401 and response.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_faults_answer_429_with_retry_after(server, graph):
    headers = token(server)
    httpx.post(f"{server.url}/graph/_control/faults", json={"status": 429, "retry_after": 3})
    response = httpx.get(f"{server.url}/graph/v1.0/users/delta", headers=headers)
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"
    assert response.json()["error"]["code"] == "TooManyRequests"
