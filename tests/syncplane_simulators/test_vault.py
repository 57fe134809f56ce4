"""The Vault KV v2 simulator, driven by the real hvac client over HTTP."""

import httpx
import hvac
import hvac.exceptions
import pytest

from syncplane_simulators.server import SimulatorServer
from syncplane_simulators.vault import DEFAULT_TOKEN


@pytest.fixture(scope="module")
def server():
    with SimulatorServer(records=10) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(server):
    server.vault.reset()
    yield


def client(server, token=DEFAULT_TOKEN):
    return hvac.Client(url=server.url + "/vault", token=token)


def read(vault_client, path, mount="secret"):
    return vault_client.secrets.kv.v2.read_secret_version(path=path, mount_point=mount, raise_on_deleted_version=True)


def test_hvac_reads_a_secret_put_from_python(server):
    server.vault.put("syncplane/servicenow", {"password": "s3cret", "user": "integration"})
    response = read(client(server), "syncplane/servicenow")
    assert response["data"]["data"] == {"password": "s3cret", "user": "integration"}
    metadata = response["data"]["metadata"]
    assert metadata["version"] == 1 and metadata["deletion_time"] == "" and metadata["destroyed"] is False
    assert metadata["created_time"].endswith("Z")
    assert response["lease_id"] == "" and response["renewable"] is False and response["lease_duration"] == 0
    assert response["request_id"]


def test_bad_token_is_forbidden(server):
    server.vault.put("syncplane/servicenow", {"password": "s3cret"})
    with pytest.raises(hvac.exceptions.Forbidden):
        read(client(server, token="not-the-token"), "syncplane/servicenow")
    assert not client(server, token="not-the-token").is_authenticated()
    assert client(server).is_authenticated()


def test_missing_secret_is_invalid_path(server):
    with pytest.raises(hvac.exceptions.InvalidPath):
        read(client(server), "syncplane/nothing-here")


def test_control_endpoint_other_mount_and_versions(server):
    put = httpx.post(
        server.url + "/vault/_control/secrets", json={"path": "apps/jira", "data": {"token": "v1"}, "mount": "kv"}
    )
    assert put.status_code == 201
    vault_client = client(server)
    assert read(vault_client, "apps/jira", mount="kv")["data"]["data"] == {"token": "v1"}
    with pytest.raises(hvac.exceptions.InvalidPath):
        read(vault_client, "apps/jira")  # other mount

    vault_client.secrets.kv.v2.create_or_update_secret(path="apps/jira", secret={"token": "v2"}, mount_point="kv")
    latest = read(vault_client, "apps/jira", mount="kv")
    assert latest["data"]["data"] == {"token": "v2"} and latest["data"]["metadata"]["version"] == 2
    first = vault_client.secrets.kv.v2.read_secret_version(
        path="apps/jira", mount_point="kv", version=1, raise_on_deleted_version=True
    )
    assert first["data"]["data"] == {"token": "v1"}


def test_configurable_token_and_fault(server):
    server.vault.put("x", {"k": "v"})
    server.vault.inject_fault("status", status=503)
    with pytest.raises(hvac.exceptions.VaultDown):
        read(client(server), "x")
    assert read(client(server), "x")["data"]["data"] == {"k": "v"}
