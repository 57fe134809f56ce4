"""Normalising identifiers so that the same device reported by different systems compares equal."""

import re

_HEX = re.compile(r"[0-9a-f]")


def normalize_mac(value: str) -> str:
    """aa:bb:cc:dd:ee:ff from any common spelling (dashes, dots, no separators, upper case); "" if not a MAC."""
    digits = "".join(_HEX.findall((value or "").lower()))
    if len(digits) != 12 or digits in ("000000000000", "ffffffffffff"):
        return ""
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))
