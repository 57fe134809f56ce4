"""Reading configuration from environment variables.

Each reader names the variable in its error, so a bad value stops start-up with a message a person can act
on instead of a traceback from deep inside a library.
"""

import json
import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of 1/0, true/false, yes/no, on/off; got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer; got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}; got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, default).strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def demo_secret_key(data_dir: Path) -> str:
    """The demo's SECRET_KEY: generated on first start, then read back (the file is readable by its owner only)."""
    path = data_dir / "demo-secret-key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


IDENTIFICATION_RULES = ("serial_number", "mac_address", "hostname", "azure_ad_device_id")

# Which system's value an asset attribute takes when several sources have one: the first system type in the
# list that has a non-empty value wins. "default" applies to every attribute without a list of its own.
DEFAULT_PRECEDENCE = {
    "default": [
        "servicenow_cmdb", "jira_assets", "freshservice_cmdb", "apple_business_manager", "android_enterprise",
        "entra_id", "active_directory", "defender_endpoint",
    ],
    # The security and device-management systems know compliance best. compliance_reasons and
    # compliance_checked_at have no list: they come from the source compliance_state was taken from.
    "compliance_state": ["defender_endpoint", "entra_id", "apple_business_manager", "android_enterprise"],
    "compliance_score": ["defender_endpoint"],
    "last_seen_at": ["defender_endpoint", "entra_id", "apple_business_manager", "android_enterprise"],
    # Who holds the device: the MDM that enrolled it (Intune arrives through entra_id) sees who signs in today;
    # a CMDB says who it was issued to, and lags behind.
    "assigned_to": [
        "entra_id", "android_enterprise", "apple_business_manager", "servicenow_cmdb", "jira_assets",
        "freshservice_cmdb",
    ],
    "azure_ad_device_id": ["entra_id", "defender_endpoint"],
    "exposure_level": ["defender_endpoint"],
    "risk_score": ["defender_endpoint"],
    "health_status": ["defender_endpoint"],
    "onboarding_status": ["defender_endpoint"],
}
# Attributes that follow compliance_state's source and so cannot have an order of their own.
FOLLOWS_COMPLIANCE_STATE = ("compliance_reasons", "compliance_checked_at")


def identification_rules(names: list[str]) -> list[str]:
    unknown = [name for name in names if name not in IDENTIFICATION_RULES]
    if unknown or not names or len(set(names)) != len(names):
        raise ImproperlyConfigured(
            "SYNCPLANE_IDENTIFICATION_RULES must list some of serial_number, azure_ad_device_id, mac_address, "
            "hostname, in order and "
            f"without repeats; got {', '.join(names) or 'nothing'}"
        )
    return names


def precedence(raw: str) -> dict[str, list[str]]:
    """DEFAULT_PRECEDENCE, with the per-attribute lists of SYNCPLANE_PRECEDENCE (JSON) laid over it."""
    result = {name: list(order) for name, order in DEFAULT_PRECEDENCE.items()}
    if not raw.strip():
        return result
    try:
        given = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"SYNCPLANE_PRECEDENCE is not valid JSON: {exc}") from None
    if not isinstance(given, dict) or not all(
        isinstance(order, list) and all(isinstance(item, str) for item in order) for order in given.values()
    ):
        raise ImproperlyConfigured(
            'SYNCPLANE_PRECEDENCE must map attribute names to lists of system types, e.g. '
            '{"location": ["jira_assets", "servicenow_cmdb"]}'
        )
    following = [name for name in FOLLOWS_COMPLIANCE_STATE if name in given]
    if following:
        raise ImproperlyConfigured(
            f"SYNCPLANE_PRECEDENCE cannot order {', '.join(following)}: they come from the source of "
            "compliance_state; give compliance_state's order instead"
        )
    result.update(given)
    return result
