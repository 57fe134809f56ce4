"""Signing in for an API token: throttled, locked out after repeated failures, tokens that expire and can be
revoked (syncplane/core/auth.py)."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from syncplane.core import roles

TOKEN_URL = "/api/v1/auth/token/"
PASSWORD = "pw-for-tests-123"


@pytest.fixture(autouse=True)
def no_throttle(settings):
    settings.SYNCPLANE_LOGIN_RATE = "1000/min"  # the lockout tests are not about the throttle


@pytest.fixture
def alice(db):
    user = get_user_model().objects.create_user("alice", password=PASSWORD)
    roles.grant_role(user, roles.VIEWER)
    return user


def sign_in(client, username="alice", password=PASSWORD, address="203.0.113.5", **headers):
    return client.post(TOKEN_URL, {"username": username, "password": password}, format="json",
                       REMOTE_ADDR=address, **headers)


def test_a_token_comes_with_its_expiry(alice, settings):
    settings.SYNCPLANE_TOKEN_TTL_HOURS = 24
    response = sign_in(APIClient())
    assert response.status_code == 200, response.content
    token = Token.objects.get(user=alice)
    assert response.json()["token"] == token.key
    expires = response.json()["expires_at"]
    assert expires.startswith((token.created + timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M"))


def test_the_right_password_is_refused_once_the_name_is_locked_out(alice, settings):
    """300 wrong passwords, then the right one, used to succeed: now the name is locked out for a while."""
    settings.SYNCPLANE_LOGIN_MAX_FAILURES = 5
    settings.SYNCPLANE_LOGIN_LOCKOUT_SECONDS = 600
    client = APIClient()
    statuses = [sign_in(client, password=f"guess-{n}", address=f"198.51.100.{n}").status_code for n in range(5)]
    assert statuses == [400, 400, 400, 400, 429]
    response = sign_in(client, address="192.0.2.77")  # the right password, from a fresh address
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 600
    assert "try again in" in response.json()["detail"]
    assert not Token.objects.filter(user=alice).exists()
    # The same for the browsable API's login form: every backend is behind the lockout.
    browser = Client()
    form = browser.post("/api-auth/login/", {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="192.0.2.78")
    assert form.status_code == 200  # the form again, not the redirect of a successful login
    assert "_auth_user_id" not in browser.session
    cache.clear()  # the lockout has passed
    assert sign_in(client).status_code == 200


def test_a_name_that_does_not_exist_is_locked_out_the_same_way(db, settings):
    settings.SYNCPLANE_LOGIN_MAX_FAILURES = 3
    client = APIClient()
    assert [sign_in(client, "nobody", "x").status_code for _ in range(4)] == [400, 400, 429, 429]


def test_one_address_guessing_many_names_is_locked_out(alice, settings):
    settings.SYNCPLANE_LOGIN_MAX_FAILURES_PER_ADDRESS = 4
    client = APIClient()
    statuses = [sign_in(client, f"user{n}", "x", address="198.51.100.9").status_code for n in range(4)]
    assert statuses == [400, 400, 400, 429]
    assert sign_in(client, address="198.51.100.9").status_code == 429  # even alice, right password, from there
    assert sign_in(client, address="198.51.100.10").status_code == 200  # alice elsewhere is fine


def test_x_forwarded_for_is_not_trusted_without_proxies(alice, settings):
    """Otherwise each guess could claim a new address."""
    settings.SYNCPLANE_LOGIN_MAX_FAILURES_PER_ADDRESS = 3
    client = APIClient()
    statuses = [sign_in(client, f"u{n}", "x", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}").status_code for n in range(3)]
    assert statuses == [400, 400, 429]


def test_a_success_forgets_the_names_failures(alice, settings):
    settings.SYNCPLANE_LOGIN_MAX_FAILURES = 3
    client = APIClient()
    for _ in range(2):
        assert sign_in(client, password="wrong").status_code == 400
    assert sign_in(client).status_code == 200
    for _ in range(2):
        assert sign_in(client, password="wrong").status_code == 400
    assert sign_in(client).status_code == 200


def test_the_token_endpoint_is_throttled_per_address_and_per_name(alice, settings):
    settings.SYNCPLANE_LOGIN_RATE = "3/min"
    client = APIClient()
    assert [sign_in(client, address="198.51.100.1").status_code for _ in range(4)] == [200, 200, 200, 429]
    cache.clear()
    # One name from many addresses is throttled too.
    assert [sign_in(client, address=f"198.51.100.{n}").status_code for n in range(4)] == [200, 200, 200, 429]


def test_an_expired_token_is_refused_and_a_new_sign_in_issues_another(alice, settings):
    settings.SYNCPLANE_TOKEN_TTL_HOURS = 1
    key = sign_in(APIClient()).json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/assets/").status_code == 200
    Token.objects.filter(key=key).update(created=timezone.now() - timedelta(hours=1, seconds=1))
    response = client.get("/api/v1/assets/")
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
    fresh = sign_in(APIClient()).json()["token"]
    assert fresh != key


def test_a_user_revokes_their_own_token(alice, make_user):
    key = sign_in(APIClient()).json()["token"]
    other = Token.objects.create(user=make_user(roles.VIEWER, "bob"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.delete(TOKEN_URL).status_code == 204
    assert client.get("/api/v1/assets/").status_code == 401
    assert Token.objects.filter(pk=other.pk).exists()  # only one's own
    assert APIClient().delete(TOKEN_URL).status_code == 401


def test_a_locked_out_directory_user_is_not_even_tried_against_the_directory(alice, settings, monkeypatch):
    """The directory backend would bind with each guess, and every wrong bind counts towards the account's own
    lockout in Active Directory: a locked-out name never reaches it."""
    from syncplane.core.auth import record_failure
    from syncplane.directory import backends

    settings.SYNCPLANE_LOGIN_MAX_FAILURES = 2
    asked = []
    monkeypatch.setattr(backends, "password_sign_in_types", lambda: asked.append(1) or [])
    backend = backends.DirectoryPasswordBackend()
    assert backend.authenticate(None, username="zoe@ad.example.org", password="x") is None
    assert asked == [1]
    record_failure(None, "zoe@ad.example.org")
    record_failure(None, "ZOE@ad.example.org")  # the same name, as directories compare them
    assert backend.authenticate(None, username="zoe@ad.example.org", password="x") is None
    assert asked == [1]
