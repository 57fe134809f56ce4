"""Signing in: API tokens that expire and can be revoked, and brute-force protection for every password check.

- `POST /api/v1/auth/token/` takes a user name and password and answers a token and when it expires
  (`SYNCPLANE_TOKEN_TTL_HOURS` after it was issued); `DELETE` revokes the caller's own token.
- Throttles (`SYNCPLANE_LOGIN_RATE`, per client address and per user name) slow guessing down on the token
  endpoint; a lockout stops it: after `SYNCPLANE_LOGIN_MAX_FAILURES` failed sign-ins for one user name (or
  `SYNCPLANE_LOGIN_MAX_FAILURES_PER_ADDRESS` from one address) within `SYNCPLANE_LOGIN_LOCKOUT_SECONDS`, every
  sign-in for that name (from that address) is refused for that long, the right password included.
- The lockout is an authentication backend (`LockoutBackend`, first in AUTHENTICATION_BACKENDS) and failures are
  counted from Django's `user_login_failed` signal, so it holds wherever a password is checked: the token
  endpoint, the browsable API's and the admin's login forms, local users and directory users alike (the
  directory backend asks too, before it binds: repeated binds would lock the account in Active Directory).

The token view is in auth_views.py: this module is loaded by DRF's settings (the authentication class), so
it must not import DRF's views. Counters live in Django's cache, which must be shared by every web process
(Redis or the database cache in production; see SYNCPLANE_CACHE_URL). A name locked out is refused whether or
not it exists, so the lockout does not tell which accounts exist.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

logger = logging.getLogger("syncplane.auth")


# --- tokens ---------------------------------------------------------------------------------------------


def token_expires_at(token: Token):
    return token.created + timedelta(hours=settings.SYNCPLANE_TOKEN_TTL_HOURS)


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, refusing (and deleting) a token older than SYNCPLANE_TOKEN_TTL_HOURS."""

    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if token_expires_at(token) <= timezone.now():
            token.delete()
            raise exceptions.AuthenticationFailed("Token expired; request a new one at /api/v1/auth/token/.")
        return user, token


# --- lockout --------------------------------------------------------------------------------------------


def client_address(request) -> str:
    """The caller's address, trusting X-Forwarded-For only as far as SYNCPLANE_NUM_PROXIES says (DRF's rule)."""
    if request is None:
        return ""
    return BaseThrottle().get_ident(request) or ""


def _user_key(username: str) -> str:
    # Hashed: a cache key must be short and safe whatever a user types; lower-cased, as directory names are.
    return "login-fail:user:" + hashlib.sha256(username.strip().lower().encode()).hexdigest()


def _address_key(address: str) -> str:
    return f"login-fail:addr:{address}"


def _limits(request, username) -> list[tuple[str, int]]:
    limits = []
    if isinstance(username, str) and username.strip():
        limits.append((_user_key(username), settings.SYNCPLANE_LOGIN_MAX_FAILURES))
    address = client_address(request)
    if address:
        limits.append((_address_key(address), settings.SYNCPLANE_LOGIN_MAX_FAILURES_PER_ADDRESS))
    return limits


def locked_out_for(request, username) -> int:
    """Seconds left of a lockout on this user name or the caller's address; 0 when neither is locked."""
    now = time.time()
    keys = [f"{key}:locked" for key, _limit in _limits(request, username)]
    until = max((value for value in cache.get_many(keys).values() if isinstance(value, int | float)), default=0)
    return max(0, int(until - now + 0.999))


def record_failure(request, username) -> None:
    """Count a failed sign-in against the name and the address; reaching a limit starts the lockout."""
    window = settings.SYNCPLANE_LOGIN_LOCKOUT_SECONDS
    for key, limit in _limits(request, username):
        cache.add(key, 0, window)  # the first failure opens the window
        try:
            failures = cache.incr(key)
        except ValueError:  # the window closed between add and incr
            cache.set(key, 1, window)
            failures = 1
        if failures >= limit and cache.add(f"{key}:locked", time.time() + window, window):
            logger.warning("sign-in locked out after repeated failures",
                           extra={"lock": key.split(":")[1], "address": client_address(request),
                                  "failures": failures, "seconds": window})


def clear_failures(username) -> None:
    """A successful sign-in forgets the name's failures (not the address's: one known account must not let an
    address go on guessing others)."""
    if isinstance(username, str) and username.strip():
        cache.delete(_user_key(username))


class LockoutBackend(BaseBackend):
    """First in AUTHENTICATION_BACKENDS: refuses a locked-out name or address before any backend checks a
    password. PermissionDenied makes django.contrib.auth.authenticate stop and fail."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if locked_out_for(request, username):
            raise PermissionDenied("too many failed sign-ins")
        return None


@receiver(user_login_failed, dispatch_uid="syncplane-login-failed")
def _count_failed_sign_in(sender, credentials, request=None, **kwargs):
    record_failure(request, (credentials or {}).get("username"))


@receiver(user_logged_in, dispatch_uid="syncplane-logged-in")
def _forget_failures(sender, request, user, **kwargs):
    clear_failures(user.get_username())


# --- throttles of the token endpoint ----------------------------------------------------------------------


class _LoginThrottle(SimpleRateThrottle):
    def get_rate(self):
        return settings.SYNCPLANE_LOGIN_RATE  # read per request, so a test or an operator can change it


class LoginAddressThrottle(_LoginThrottle):
    scope = "login-address"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginUsernameThrottle(_LoginThrottle):
    scope = "login-username"

    def get_cache_key(self, request, view):
        username = request.data.get("username") if hasattr(request.data, "get") else None
        if not isinstance(username, str) or not username.strip():
            return None
        return self.cache_format % {"scope": self.scope, "ident": _user_key(username).rsplit(":", 1)[1]}


__all__ = [
    "ExpiringTokenAuthentication", "LockoutBackend", "LoginAddressThrottle", "LoginUsernameThrottle",
    "clear_failures", "client_address", "locked_out_for", "record_failure", "token_expires_at",
]
