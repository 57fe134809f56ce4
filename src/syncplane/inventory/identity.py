"""Which sources describe the same device.

Each source gets identification keys, normalised so that the same device reported by different systems
compares equal: its serial number (trimmed, upper-cased, placeholders such as "To be filled by O.E.M."
ignored), its MAC address, and its host name (the first label of the FQDN or host name, lower-cased). Two
sources are the same device when, for the first rule (in the configured order) for which both have a key,
the keys are equal: a serial that differs overrules a shared host name, because host names get reused.
"""

from collections.abc import Iterable

from django.conf import settings

from syncplane.core.normalize import normalize_mac

# The positions of the keys in every key tuple; the configured order (SYNCPLANE_IDENTIFICATION_RULES) is separate.
RULES = ("serial_number", "mac_address", "hostname", "azure_ad_device_id")
KEY_COLUMNS = {
    "serial_number": "serial_key", "mac_address": "mac_key", "hostname": "host_key",
    "azure_ad_device_id": "device_key",
}

# Serials that firmware and imaging tools fill in when they do not know one; they identify nothing.
PLACEHOLDER_SERIALS = frozenset({
    "0", "00", "000", "0000", "N/A", "NA", "N.A.", "NONE", "NULL", "NIL", "UNKNOWN", "-", "--", "TBD", "TBA",
    "DEFAULT STRING", "TO BE FILLED BY O.E.M.", "TO BE FILLED BY OEM", "SYSTEM SERIAL NUMBER",
    "CHASSIS SERIAL NUMBER", "BASE BOARD SERIAL NUMBER", "BASEBOARD SERIAL NUMBER", "SERIAL NUMBER", "SERIAL",
    "NOT SPECIFIED", "NOT APPLICABLE", "NOT AVAILABLE", "INVALID", "OEM", "O.E.M.", "123456789", "1234567890",
    "0123456789", "ABCDEFGHIJ", "EMPTY", "NO SERIAL", "NOSERIAL", "SN", "S/N", "XXXXXXXX",
})
IGNORED_HOSTS = frozenset({"localhost", "unknown", "none", "n/a", "default", "host"})


def serial_key(value: str | None) -> str:
    serial = " ".join((value or "").split()).upper()
    if not serial or serial in PLACEHOLDER_SERIALS or len(serial) < 3:
        return ""
    if len(set(serial.replace(" ", "").replace("-", ""))) <= 1:  # 000000, XXXXXXX, ---
        return ""
    return serial


def mac_key(value: str | None) -> str:
    return normalize_mac(value or "")


def host_key(hostname: str | None, fqdn: str | None = None) -> str:
    name = (fqdn or hostname or "").strip().lower().rstrip(".")
    short = name.split(".", 1)[0]
    return "" if not short or short in IGNORED_HOSTS else short


def device_key(value: str | None) -> str:
    """The Entra deviceId (a GUID) that Entra ID, Intune and Defender all report for one machine."""
    key = (value or "").strip().lower()
    return "" if key in ("", "00000000-0000-0000-0000-000000000000") else key


def keys_of(attributes: dict) -> tuple[str, str, str, str]:
    """(serial_key, mac_key, host_key, device_key) of a source's mapped attributes, in the order of RULES."""
    return (
        serial_key(attributes.get("serial_number")),
        mac_key(attributes.get("mac_address")),
        host_key(attributes.get("hostname"), attributes.get("fqdn")),
        device_key(attributes.get("azure_ad_device_id")),
    )


def rules() -> tuple[str, ...]:
    """The configured rules in order (SYNCPLANE_IDENTIFICATION_RULES), validated at start-up."""
    return tuple(settings.SYNCPLANE_IDENTIFICATION_RULES)


def rule_indexes(active: Iterable[str]) -> tuple[int, ...]:
    return tuple(RULES.index(rule) for rule in active)


def same_device(a: tuple, b: tuple, order: tuple[int, ...]) -> bool:
    """a and b are key triples; the first rule for which both have a key decides."""
    for index in order:
        if a[index] and b[index]:
            return a[index] == b[index]
    return False
