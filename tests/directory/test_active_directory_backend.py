"""Signing in with an Active Directory password: a bind to the integration's server (real slapd), for synced,
enabled accounts only; the password is never stored."""

import pytest
from django.contrib.auth import authenticate
from rest_framework.test import APIClient

from syncplane.integrations.choices import RunStatus, SystemType
from syncplane.integrations.connectors.active_directory import ActiveDirectoryConnector
from syncplane.integrations.engine import run_sync, start_sync
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
