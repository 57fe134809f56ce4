"""Signing in with an Active Directory password: a bind to the integration's server (real slapd), for synced,
enabled accounts only; the password is never stored."""

import pytest
from django.contrib.auth import authenticate
from rest_framework.test import APIClient

from syncplane.integrations.base import Connector
from syncplane.integrations.choices import Capability, RunStatus, SystemType
from syncplane.integrations.connectors.active_directory import ActiveDirectoryConnector
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.errors import AuthenticationError
from syncplane.integrations.models import ExternalSystem
from syncplane.integrations.secrets import to_reference

pytestmark = pytest.mark.django_db


@pytest.fixture
def synced(slapd_small):
    system = ExternalSystem.objects.create(
        name="AD sign-in", system_type=SystemType.ACTIVE_DIRECTORY, category="identity",
        base_url=slapd_small.ldaps_url, auth_type="basic",
        credentials={"username": slapd_small.service_dn, "password": to_reference(slapd_small.service_password)},
        config=ActiveDirectoryConnector.validated_config({"base_dn": slapd_small.base_dn,
                                                          "ca_file": str(slapd_small.ca_file)}),
    )
    assert run_sync(start_sync(system).pk).status == RunStatus.SUCCESS
    return system


def test_a_synced_user_signs_in_with_the_directory_password(synced, slapd_small):
    user = authenticate(None, username="Zoe.Odegard@ad.example.org", password=slapd_small.user_password)
    assert user is not None and user.username == "zoe.odegard@ad.example.org"
    user.refresh_from_db()
    assert not user.has_usable_password()  # nothing of the password was kept
    token = APIClient().post("/api/v1/auth/token/", {"username": "zoe.odegard@ad.example.org",
                                                     "password": slapd_small.user_password})
    assert token.status_code == 200 and token.json()["token"]


def test_wrong_empty_or_unknown_fails(synced, slapd_small):
    assert authenticate(None, username="zoe.odegard@ad.example.org", password="not-the-password") is None
    # A DN with an empty password is an unauthenticated bind, which LDAP lets succeed: refused before the bind.
    assert authenticate(None, username="zoe.odegard@ad.example.org", password="") is None
    assert authenticate(None, username="nobody@ad.example.org", password=slapd_small.user_password) is None
    assert authenticate(None, username="*", password=slapd_small.user_password) is None


def test_disabled_in_the_directory_cannot_sign_in(synced, slapd_small):
    # user0002 is disabled in AD (userAccountControl 0x2); slapd would accept its bind, Syncplane does not try.
    assert authenticate(None, username="user0002@ad.example.org", password=slapd_small.user_password) is None


def test_a_disabled_integration_signs_no_one_in(synced, slapd_small):
    ExternalSystem.objects.filter(pk=synced.pk).update(enabled=False)
    assert authenticate(None, username="zoe.odegard@ad.example.org", password=slapd_small.user_password) is None


def test_a_directory_that_is_down_fails_the_login_only(synced, slapd_small):
    slapd_small.stop()
    assert authenticate(None, username="zoe.odegard@ad.example.org", password=slapd_small.user_password) is None


def test_the_connector_checks_the_password_through_the_contract(synced, slapd_small):
    from syncplane.integrations.registry import build_connector

    assert ActiveDirectoryConnector.supports(Capability.PASSWORD_SIGN_IN)
    dn = synced.directory_accounts.get(username="zoe.odegard@ad.example.org").dn
    with build_connector(synced) as connector:
        connector.check_password(dn, slapd_small.user_password)
        for wrong in ("not-the-password", ""):
            with pytest.raises(AuthenticationError):
                connector.check_password(dn, wrong)
    with pytest.raises(NotImplementedError):
        Connector.check_password(connector, dn, slapd_small.user_password)


def test_only_connectors_offering_password_sign_in_are_asked(synced, slapd_small, monkeypatch):
    asked = []
    check = ActiveDirectoryConnector.check_password
    monkeypatch.setattr(ActiveDirectoryConnector, "check_password",
                        lambda self, name, password: asked.append(name) or check(self, name, password))
    assert authenticate(None, username="zoe.odegard@ad.example.org", password=slapd_small.user_password)
    assert asked
    asked.clear()
    monkeypatch.setattr(ActiveDirectoryConnector, "capabilities",
                        ActiveDirectoryConnector.capabilities - {Capability.PASSWORD_SIGN_IN})
    assert authenticate(None, username="zoe.odegard@ad.example.org", password=slapd_small.user_password) is None
    assert asked == []
