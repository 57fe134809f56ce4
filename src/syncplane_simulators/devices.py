"""The fleet every simulator describes: one deterministic device per index.

ServiceNow, Jira Assets, Freshservice, Entra ID and the MDM simulators all talk about the *same* laptops and
servers, so that reconciliation has something real to join on. Each simulator maps its record index to a
device index and asks `device_identity(seed, i)`; the identity (serial, MAC, host name, make, model, OS) is a
pure function of `(seed, i)`, so no simulator ever has to hold the fleet in memory.

Identifiers are unique by construction (an invertible mix of the index, not a random draw), except for the
vendor quirks the connectors must survive: placeholder serials written by cheap BIOSes and VMware serials
with spaces.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import NamedTuple

# Serials that firmware writes when the OEM did not: reconciliation must ignore them.
PLACEHOLDER_SERIALS = ("To be filled by O.E.M.", "0", "N/A", "Default string")

SITES = ("BER", "MUC", "FRA", "HAM", "LON", "PAR", "AMS", "NYC")

# kind -> (share in 1000, name prefix)
_KINDS = (
    ("laptop", 420, "LT"),
    ("desktop", 230, "DT"),
    ("tablet", 50, "TB"),
    ("server", 120, "SRV"),
    ("virtual_machine", 180, "VM"),
)

# manufacturer -> (MAC OUI, models); the OUIs are the vendors' real prefixes.
MAKES = {
    "Dell Inc.": (
        "f8:bc:12",
        {
            "laptop": ("Latitude 7440", "Latitude 5540", "XPS 13 9340"),
            "desktop": ("OptiPlex 7010", "Precision 3660"),
            "server": ("PowerEdge R750", "PowerEdge R650"),
        },
    ),
    "Lenovo": (
        "54:ee:75",
        {
            "laptop": ("ThinkPad T14 Gen 4", "ThinkPad X1 Carbon Gen 11"),
            "desktop": ("ThinkCentre M90q Gen 4",),
            "server": ("ThinkSystem SR650 V3",),
        },
    ),
    "HP Inc.": (
        "3c:52:82",
        {"laptop": ("EliteBook 840 G10", "ProBook 450 G10"), "desktop": ("EliteDesk 800 G9", "Z2 Tower G9")},
    ),
    "Apple Inc.": (
        "a4:83:e7",
        {
            "laptop": ("MacBook Pro 14-inch (M3)", "MacBook Air 13-inch (M2)"),
            "desktop": ("Mac mini (M2)",),
            "tablet": ("iPad Pro 11-inch (4th generation)",),
        },
    ),
    "Microsoft Corporation": ("98:5f:d3", {"tablet": ("Surface Pro 9",), "laptop": ("Surface Laptop 5",)}),
    "Hewlett Packard Enterprise": (
        "94:40:c9",
        {"server": ("ProLiant DL380 Gen10 Plus", "ProLiant DL360 Gen11")},
    ),
    "VMware, Inc.": ("00:50:56", {"virtual_machine": ("VMware Virtual Platform",)}),
}
MAKES_BY_KIND: dict[str, tuple[str, ...]] = {}
for _make, (_oui, _models) in MAKES.items():
    for _kind in _models:
        MAKES_BY_KIND.setdefault(_kind, ())
        MAKES_BY_KIND[_kind] += (_make,)

_OS = {
    "laptop": (("Windows 11 Enterprise", "10.0.22631.3447"), ("Windows 10 Enterprise", "10.0.19045.4291")),
    "desktop": (("Windows 11 Enterprise", "10.0.22631.3447"), ("Windows 10 Enterprise", "10.0.19045.4291")),
    "tablet": (("Windows 11 Pro", "10.0.22631.3447"),),
    "server": (
        ("Windows Server 2022 Datacenter", "10.0.20348.2402"),
        ("Red Hat Enterprise Linux", "9.3"),
        ("VMware ESXi", "8.0.2"),
    ),
    "virtual_machine": (
        ("Windows Server 2019 Standard", "10.0.17763.5696"),
        ("Ubuntu", "22.04.4"),
        ("Red Hat Enterprise Linux", "8.9"),
    ),
}
_APPLE_OS = {"laptop": ("macOS", "14.4.1"), "desktop": ("macOS", "14.4.1"), "tablet": ("iPadOS", "17.4.1")}

_B36 = "0123456789ABCDEFGHIJKLMNPQRSTUVWXYZ"  # 35 symbols: no letter O, as on real service tags


class DeviceIdentity(NamedTuple):
    index: int
    kind: str  # laptop, desktop, tablet, server, virtual_machine
    site: str  # three-letter site code, e.g. "BER"
    name: str  # asset name as people write it, e.g. "LT-BER-0142"
    hostname: str  # lower-case DNS label, e.g. "lt-ber-0142"
    serial: str
    mac: str  # lower-case, colon separated
    manufacturer: str
    model: str
    os: str
    os_version: str

    @property
    def serial_is_placeholder(self) -> bool:
        return self.serial in PLACEHOLDER_SERIALS


def device_hash(seed: int, i: int, salt: bytes = b"device") -> bytes:
    """32 stable pseudo-random bytes for (seed, i): every choice about a device comes from here."""
    return hashlib.blake2b(
        i.to_bytes(8, "big"), key=seed.to_bytes(8, "big", signed=True), person=salt[:16], digest_size=32
    ).digest()


def mix32(i: int, seed: int) -> int:
    """An invertible scramble of a 32-bit index: unique, random-looking identifiers without a lookup table."""
    x = (i ^ (seed * 0x5BD1E995)) & 0xFFFFFFFF
    x = (x * 0x9E3779B1) & 0xFFFFFFFF
    return x ^ (x >> 16)


def unmix32(x: int, seed: int) -> int:
    x ^= x >> 16  # x ^ (x >> 16) is its own inverse on 32 bits
    x = (x * pow(0x9E3779B1, -1, 1 << 32)) & 0xFFFFFFFF
    return x ^ ((seed * 0x5BD1E995) & 0xFFFFFFFF)


_B35_PAIRS = [a + b for a in _B36 for b in _B36]  # two digits per step: half the divisions


def _base35(n: int, width: int) -> str:
    out = []
    for _ in range((width + 1) // 2):
        n, r = divmod(n, 1225)
        out.append(_B35_PAIRS[r])
    return "".join(reversed(out))[-width:]


def _serial(make: str, kind: str, i: int, seed: int, h: bytes) -> str:
    if make == "VMware, Inc.":
        # The BIOS UUID rendered the VMware way, "VMware-42 1a 2b ... 3c-4d 5e ...": spaces included.
        b = h[8:24]
        return "VMware-" + " ".join(f"{x:02x}" for x in b[:8]) + "-" + " ".join(f"{x:02x}" for x in b[8:])
    if kind in ("desktop", "server") and h[2] < 4:  # ~1.5 % white-box boards with an unset serial
        return PLACEHOLDER_SERIALS[h[3] % len(PLACEHOLDER_SERIALS)]
    # The body is a bijection of the index, so serials never collide within one vendor format;
    # the formats have different lengths, so they never collide across vendors either.
    body = mix32(i, seed)
    if make == "Dell Inc.":
        return _base35(body, 7)  # service tag, e.g. "7XK2M93"
    if make == "Lenovo":
        return "PF" + _base35(body, 7)
    if make in ("HP Inc.", "Hewlett Packard Enterprise"):
        return ("5CG" if make == "HP Inc." else "CZJ") + _base35(body, 7)
    if make == "Apple Inc.":
        return "C02" + _base35(body, 9)
    return f"{body:012d}"  # Microsoft: twelve digits


def _kind_for(roll: int) -> tuple[str, str]:
    for kind, share, prefix in _KINDS:
        if roll < share:
            return kind, prefix
        roll -= share
    return _KINDS[-1][0], _KINDS[-1][2]


@lru_cache(maxsize=8192)  # bounded: neighbours are asked for again (duplicates), memory stays flat
def device_identity(seed: int, i: int) -> DeviceIdentity:
    """The device with index `i` in the fleet generated from `seed`."""
    h = device_hash(seed, i)
    kind, prefix = _kind_for(int.from_bytes(h[0:2], "big") % 1000)
    makes = MAKES_BY_KIND[kind]
    make = makes[h[4] % len(makes)]
    oui, models = MAKES[make]
    model = models[kind][h[5] % len(models[kind])]
    site = SITES[h[6] % len(SITES)]
    name = f"{prefix}-{site}-{i:04d}"
    if make == "Apple Inc.":
        os_name, os_version = _APPLE_OS[kind]
    elif make == "Microsoft Corporation" and kind == "laptop":
        os_name, os_version = _OS["laptop"][0]
    else:
        choices = _OS[kind]
        os_name, os_version = choices[h[7] % len(choices)]
    # An odd multiplier is a bijection modulo 2**24: MACs are unique per vendor for the first 16M devices.
    nic = (i * 0xB5AD4B + seed * 0x1F123) & 0xFFFFFF
    mac = oui + ":" + nic.to_bytes(3, "big").hex(":")
    return DeviceIdentity(
        index=i,
        kind=kind,
        site=site,
        name=name,
        hostname=name.lower(),
        serial=_serial(make, kind, i, seed, h),
        mac=mac,
        manufacturer=make,
        model=model,
        os=os_name,
        os_version=os_version,
    )


def serial_for(seed: int, i: int) -> str:
    return device_identity(seed, i).serial
