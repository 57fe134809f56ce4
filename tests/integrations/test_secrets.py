"""Secret references (env, file, enc, vault), their validation, and redaction."""

import base64
import socket

import pytest
from cryptography.fernet import Fernet

from syncplane.integrations.errors import ConfigurationError, TransientError
from syncplane.integrations.models import ExternalSystem
from syncplane.integrations.secrets import (
    SCHEMES,
    Redactor,
    encrypt_secret,
    is_secret_reference,
    mask_url,
    redact,
    resolve_secret,
    rotate_secret,
    to_reference,
    validate_reference,
)
from syncplane_simulators.server import SimulatorServer

VAULT_TOKEN = "hvs.test-vault-token"


def test_schemes():
    assert SCHEMES == ("env", "file", "enc", "vault")


# --- env: and file: ------------------------------------------------------------------------------------


def test_env_reference(monkeypatch):
    monkeypatch.setenv("SN_PASSWORD", "s3cret")
    assert resolve_secret("env:SN_PASSWORD") == "s3cret"


def test_missing_env_names_the_variable(monkeypatch):
    monkeypatch.delenv("SN_MISSING", raising=False)
    with pytest.raises(ConfigurationError, match="SN_MISSING is not set"):
        resolve_secret("env:SN_MISSING")


def test_file_reference_drops_one_trailing_newline(tmp_path):
    path = tmp_path / "sn"
    path.write_text("line-secret  \n")
    assert resolve_secret(f"file:{path}") == "line-secret  "


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "absent"
    with pytest.raises(ConfigurationError) as caught:
        resolve_secret(f"file:{path}")
    assert str(path) in str(caught.value)


# --- enc: ----------------------------------------------------------------------------------------------


def test_enc_round_trip_with_configured_key(settings):
    settings.SYNCPLANE_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    ref = encrypt_secret("typed-in-a-form")
    assert ref.startswith("enc:") and "typed-in-a-form" not in ref
    assert resolve_secret(ref) == "typed-in-a-form"


def test_enc_round_trip_with_key_derived_from_secret_key(settings):
    settings.SYNCPLANE_ENCRYPTION_KEYS = []
    ref = encrypt_secret("pässword")
    assert resolve_secret(ref) == "pässword"
    settings.SECRET_KEY = "another-secret-key-" * 3
    with pytest.raises(ConfigurationError, match="cannot decrypt"):
        resolve_secret(ref)


def test_key_rotation(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.SYNCPLANE_ENCRYPTION_KEYS = [old]
    ref = encrypt_secret("rotate-me")
    settings.SYNCPLANE_ENCRYPTION_KEYS = [new, old]  # new key first: it encrypts, both decrypt
    assert resolve_secret(ref) == "rotate-me"
    rotated = rotate_secret(ref)
    assert rotated != ref
    settings.SYNCPLANE_ENCRYPTION_KEYS = [new]  # the old key retired
    assert resolve_secret(rotated) == "rotate-me"
    with pytest.raises(ConfigurationError, match="cannot decrypt"):
        resolve_secret(ref)


def test_bad_encryption_key_is_a_configuration_error(settings):
    settings.SYNCPLANE_ENCRYPTION_KEYS = ["not-a-key"]
    with pytest.raises(ConfigurationError, match=r"SYNCPLANE_ENCRYPTION_KEYS\[0\]"):
        encrypt_secret("x")


# --- vault: against a real hvac client and a KV v2 endpoint on 127.0.0.1 ---------------------------------


@pytest.fixture
def vault(settings, monkeypatch):
    """The project's Vault simulator (KV v2), served under /vault of the simulators' server."""
    with SimulatorServer(records=0) as server:
        server.vault.token = VAULT_TOKEN
        server.vault.put("integrations/servicenow", {"password": "from-vault", "port": 8443})
        monkeypatch.setenv("TEST_VAULT_TOKEN", VAULT_TOKEN)
        settings.SYNCPLANE_VAULT_ADDR = f"{server.url}/vault"
        settings.SYNCPLANE_VAULT_TOKEN = "env:TEST_VAULT_TOKEN"
        settings.SYNCPLANE_VAULT_MOUNT = "secret"
        yield server.vault


def test_vault_reference(vault):
    assert resolve_secret("vault:integrations/servicenow#password") == "from-vault"
    assert resolve_secret("vault:integrations/servicenow#port") == "8443"
    assert vault.stats["reads"] == 2 and vault.stats.get("auth_failures", 0) == 0


def test_vault_token_from_a_file(vault, settings, tmp_path):
    token_file = tmp_path / "vault-token"
    token_file.write_text(VAULT_TOKEN + "\n")
    settings.SYNCPLANE_VAULT_TOKEN = f"file:{token_file}"
    assert resolve_secret("vault:integrations/servicenow#password") == "from-vault"


def test_vault_token_cannot_come_from_vault(vault, settings):
    settings.SYNCPLANE_VAULT_TOKEN = "vault:bootstrap#token"
    with pytest.raises(ConfigurationError, match="cannot be a vault: reference"):
        resolve_secret("vault:integrations/servicenow#password")


def test_vault_missing_key_and_path(vault):
    with pytest.raises(ConfigurationError, match="no key 'username'"):
        resolve_secret("vault:integrations/servicenow#username")
    with pytest.raises(ConfigurationError, match="no such secret"):
        resolve_secret("vault:integrations/absent#password")


def test_vault_forbidden(vault, settings):
    settings.SYNCPLANE_VAULT_TOKEN = "hvs.wrong"
    with pytest.raises(ConfigurationError, match="permission denied") as caught:
        resolve_secret("vault:integrations/servicenow#password")
    assert "hvs.wrong" not in str(caught.value)


def test_vault_unreachable_is_transient(settings, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.SYNCPLANE_VAULT_ADDR = f"http://127.0.0.1:{port}"
    settings.SYNCPLANE_VAULT_TOKEN = VAULT_TOKEN
    with pytest.raises(TransientError, match="Vault is unreachable"):
        resolve_secret("vault:integrations/servicenow#password")


# --- validation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, reason",
    [
        ("", "non-empty"),
        ("plain-password", "must start with one of env:, file:, enc:, vault:"),
        ("http:foo", "must start with one of"),
        ("env:", "environment variable name"),
        ("env:BAD-NAME", "environment variable name"),
        ("file:relative/path", "absolute path"),
        ("file:/etc/../etc/shadow", "without '..'"),
        ("vault:integrations/servicenow", "a path and a key"),
        ("vault:#password", "a path and a key"),
        ("vault:a/../b#k", "path"),
        ("vault:a/b#k k", "key"),
        ("enc:not a token!", "token produced by this server"),
        (" env:X", "spaces"),
        (None, "non-empty string"),
    ],
)
def test_bad_references_are_rejected_with_a_reason(value, reason):
    with pytest.raises(ValueError, match=reason.replace("(", r"\(")):
        validate_reference(value)
    assert not is_secret_reference(value)


@pytest.mark.parametrize("value", ["env:SN_PASSWORD", "file:/run/secrets/sn", "vault:kv/sn#password"])
def test_good_references(value):
    validate_reference(value)
    assert is_secret_reference(value)


def test_resolve_rejects_a_malformed_reference():
    with pytest.raises(ConfigurationError, match="Bad secret reference"):
        resolve_secret("env:BAD NAME")


def test_to_reference_keeps_references_and_encrypts_plain_values(settings):
    settings.SYNCPLANE_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    assert to_reference("env:SYNCPLANE_SECRET_SN_PASSWORD") == "env:SYNCPLANE_SECRET_SN_PASSWORD"
    assert to_reference("file:/run/secrets/sn") == "file:/run/secrets/sn"
    assert to_reference("vault:syncplane/sn#password") == "vault:syncplane/sn#password"
    stored = to_reference("hunter2")
    assert stored.startswith("enc:") and resolve_secret(stored) == "hunter2"
    # An enc: value typed by a user is just a password to us: it is encrypted, never decrypted.
    typed = encrypt_secret("someone-elses-secret")
    stored = to_reference(typed)
    assert stored != typed and resolve_secret(stored) == typed
    with pytest.raises(ValueError):
        to_reference("")


# --- redaction -----------------------------------------------------------------------------------------


def test_redactor_replaces_every_form_of_a_secret():
    secret = "p@ss/w0rd+x"
    basic = base64.b64encode(f"svc:{secret}".encode()).decode()
    text = (
        f"password={secret} form=p%40ss%2Fw0rd%2Bx b64={base64.b64encode(secret.encode()).decode()} "
        f"Authorization: Basic {basic} then Bearer eyJ0eXAi.abc.def"
    )
    out = Redactor([secret]).redact(text)
    assert secret not in out and basic not in out and "eyJ0eXAi" not in out
    assert "p%40ss%2Fw0rd%2Bx" not in out
    assert out.count("***") >= 5


def test_redact_leaves_prose_alone():
    assert redact("Basic authentication failed", []) == "Basic authentication failed"
    assert redact("nothing to hide", ["", None]) == "nothing to hide"


def test_mask_url():
    url = (
        "https://user:pw@sn.example.com:8443/api/now/table/x?sysparm_limit=10&access_token=abc&api_key=k#frag"
    )
    assert mask_url(url) == (
        "https://sn.example.com:8443/api/now/table/x?sysparm_limit=10&access_token=***&api_key=***"
    )
    assert mask_url("https://h/p?signature=abc&client_secret=x&password=y") == (
        "https://h/p?signature=***&client_secret=***&password=***"
    )


@pytest.mark.parametrize("ref", [
    "env:DATABASE_URL", "env:SECRET_KEY", "env:SYNCPLANE_VAULT_TOKEN", "file:/etc/shadow",
    "file:/run/secretsX/sn",
])
def test_references_to_the_servers_own_secrets_are_refused(ref):
    with pytest.raises(ValueError, match="SYNCPLANE_SECRET_REFERENCE_ALLOW"):
        to_reference(ref)


def test_the_allowed_references_are_configurable(settings):
    settings.SYNCPLANE_SECRET_REFERENCE_ALLOW = ["env:SN_*"]
    assert to_reference("env:SN_PASSWORD") == "env:SN_PASSWORD"
    with pytest.raises(ValueError, match="limited to env:SN_"):
        to_reference("env:SYNCPLANE_SECRET_X")


def test_the_api_refuses_a_reference_to_the_servers_database_url(api_as, simulator):
    body = {"name": "SN", "system_type": "servicenow_cmdb", "base_url": f"{simulator.url}/servicenow",
            "auth_type": "basic", "credentials": {"username": "u", "password": "env:DATABASE_URL"}}
    response = api_as("admin").post("/api/v1/integrations/", body, format="json")
    assert response.status_code == 400
    assert "SYNCPLANE_SECRET_REFERENCE_ALLOW" in str(response.data["credentials"])


@pytest.mark.parametrize("ref", ["vault:kv/sn#password", "vault:database/creds#password", "vault:syncplanex/a#k",
                                 "vault:other/syncplane/a#k"])
def test_vault_paths_outside_the_allow_list_are_refused(ref):
    """Whoever may edit an integration cannot name any secret the server's Vault token can read."""
    with pytest.raises(ValueError, match="SYNCPLANE_VAULT_PATH_ALLOW"):
        to_reference(ref)


def test_the_allowed_vault_paths_are_configurable(settings):
    assert to_reference("vault:syncplane/servicenow/prod#password") == "vault:syncplane/servicenow/prod#password"
    settings.SYNCPLANE_VAULT_PATH_ALLOW = ["integrations/*", "team-a/servicenow"]
    assert to_reference("vault:team-a/servicenow#password") == "vault:team-a/servicenow#password"
    assert to_reference("vault:integrations/jira/jsm#api_token") == "vault:integrations/jira/jsm#api_token"
    with pytest.raises(ValueError, match="limited to integrations/\\*, team-a/servicenow"):
        to_reference("vault:syncplane/servicenow#password")


def test_the_api_refuses_a_vault_reference_outside_the_allow_list(api_as, simulator):
    body = {"name": "SN", "system_type": "servicenow_cmdb", "base_url": f"{simulator.url}/servicenow",
            "auth_type": "basic", "credentials": {"username": "u", "password": "vault:database/creds/prod#password"},
            "webhook_secret": "vault:syncplane/sn#hook"}
    admin = api_as("admin")
    response = admin.post("/api/v1/integrations/", body, format="json")
    assert response.status_code == 400
    assert "SYNCPLANE_VAULT_PATH_ALLOW" in str(response.data["credentials"])
    body["credentials"]["password"] = "vault:syncplane/sn#password"
    body["webhook_secret"] = "vault:secret/root#token"
    response = admin.post("/api/v1/integrations/", body, format="json")
    assert response.status_code == 400
    assert "SYNCPLANE_VAULT_PATH_ALLOW" in str(response.data["webhook_secret"])


# --- stored secrets never follow a new host ---------------------------------------------------------------


def _create(admin, body) -> dict:
    response = admin.post("/api/v1/integrations/", body, format="json")
    assert response.status_code == 201, response.data
    return response.data


def test_pointing_base_url_at_another_host_needs_the_secrets_again(api_as, simulator):
    """PATCH only base_url to a host of your choice, press test, and the stored password went there: now the
    change is refused unless the secret fields come in the same request."""
    admin = api_as("admin")
    system = _create(admin, {"name": "SN", "system_type": "servicenow_cmdb",
                             "base_url": f"{simulator.url}/servicenow", "auth_type": "basic",
                             "credentials": {"username": "u", "password": "stored-secret"}})
    url = f"/api/v1/integrations/{system['id']}/"
    elsewhere = f"http://localhost:{simulator.port}/servicenow"  # another host name, same test server
    response = admin.patch(url, {"base_url": elsewhere}, format="json")
    assert response.status_code == 400
    assert "base_url" in str(response.data["credentials"]) and "password" in str(response.data["credentials"])
    assert ExternalSystem.objects.get(pk=system["id"]).base_url == f"{simulator.url}/servicenow"
    for moved in (f"{simulator.url.replace('http:', 'https:')}/servicenow",  # another scheme
                  f"http://127.0.0.1:{simulator.port + 1}/servicenow"):  # another port
        assert admin.patch(url, {"base_url": moved}, format="json").status_code == 400
    # The user name alone is not enough; the password is.
    response = admin.patch(url, {"base_url": elsewhere, "credentials": {"username": "v"}}, format="json")
    assert response.status_code == 400
    response = admin.patch(url, {"base_url": elsewhere, "credentials": {"password": "typed-again"}}, format="json")
    assert response.status_code == 200, response.data
    # Another path on the same host keeps the secrets.
    response = admin.patch(url, {"base_url": elsewhere + "/"}, format="json")
    assert response.status_code == 200, response.data


def test_a_config_url_the_credentials_go_to_follows_the_same_rule(api_as, simulator):
    admin = api_as("admin")
    config = {"object_types": ["Laptop"], "deployment": "data_center",
              "assets_api_base": f"{simulator.url}/jira/rest/assets/1.0"}
    system = _create(admin, {"name": "Assets", "system_type": "jira_assets", "base_url": f"{simulator.url}/jira",
                             "auth_type": "bearer", "credentials": {"token": "stored-token"}, "config": config})
    url = f"/api/v1/integrations/{system['id']}/"
    moved = {**config, "assets_api_base": f"http://localhost:{simulator.port}/jira/rest/assets/1.0"}
    response = admin.patch(url, {"config": moved}, format="json")
    assert response.status_code == 400
    reason = str(response.data["credentials"])
    assert "config.assets_api_base" in reason and "token" in reason
    response = admin.patch(url, {"config": moved, "credentials": {"token": "typed-again"}}, format="json")
    assert response.status_code == 200, response.data


@pytest.mark.parametrize(("system_type", "field", "extra"), [
    ("jira_assets", "assets_api_base", {"object_types": ["Laptop"]}),
    ("entra_id", "authority_url", {"tenant_id": "contoso"}),
])
def test_url_config_fields_pass_the_url_policy_when_saved(api_as, simulator, system_type, field, extra):
    """Checked at save, not only when a sync runs: a metadata address in a second URL is refused at once."""
    admin = api_as("admin")
    auth = {"jira_assets": ("bearer", {"token": "t"}),
            "entra_id": ("oauth2_client_credentials", {"client_id": "c", "client_secret": "s"})}[system_type]
    body = {"name": system_type, "system_type": system_type, "base_url": f"{simulator.url}/x",
            "auth_type": auth[0], "credentials": auth[1], "config": {**extra, field: "http://169.254.169.254"}}
    response = admin.post("/api/v1/integrations/", body, format="json")
    assert response.status_code == 400
    assert f"{field}: Outbound URL refused" in str(response.data["config"])
    body["config"][field] = "http://[64:ff9b::a9fe:a9fe]/"
    assert admin.post("/api/v1/integrations/", body, format="json").status_code == 400
