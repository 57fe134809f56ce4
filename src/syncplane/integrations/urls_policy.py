"""Which outbound URLs Syncplane may call.

An integration's base URL is typed in by a person, so without a check it is a server-side request forgery
primitive: it could point at the cloud metadata service (and hand out the machine's cloud credentials), at
a database on the private network, or at a local file. The rules:

- https only; plain http only where the operator allows insecure outbound traffic (the demo does);
  any other scheme (file:, ftp:, gopher:...) never;
- no credentials in the URL: they belong in secret references, where they are never echoed back;
- every address the host resolves to is checked, so a DNS name cannot smuggle in a forbidden address;
  link-local and cloud metadata addresses are refused always, loopback/private/reserved ones unless
  insecure traffic is allowed.
"""

import ipaddress
import socket
from urllib.parse import urlsplit

from syncplane.integrations.errors import ConfigurationError, PolicyViolation

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, Azure, GCP, OpenStack, DigitalOcean...
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)
METADATA_HOSTNAMES = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.com",
    }
)


def _insecure_allowed_by_settings() -> bool:
    # Imported here so this module works (and stays strict) without Django configured.
    try:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured
    except ImportError:  # pragma: no cover - Django is a dependency
        return False
    try:
        if not settings.configured:
            return False
        return bool(getattr(settings, "SYNCPLANE_ALLOW_INSECURE_OUTBOUND", False))
    except ImproperlyConfigured:
        return False


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigurationError(f"Outbound URL refused: cannot resolve host {host!r} ({exc})") from None
    addresses = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        # Drop an IPv6 zone id ("fe80::1%eth0") before parsing.
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        # ::ffff:169.254.169.254 reaches the same place as 169.254.169.254.
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        addresses.append(address)
    return addresses


def _never_allowed(address: IPAddress) -> bool:
    return address in METADATA_ADDRESSES or address.is_link_local


def _internal(address: IPAddress) -> bool:
    # is_global is False for private, loopback, shared (100.64/10), documentation and similar ranges;
    # multicast is listed separately because ipaddress counts public multicast ranges as global.
    return (
        address.is_loopback
        or address.is_private
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        or not address.is_global
    )


def check_outbound_url(url: str, *, allow_insecure: bool | None = None) -> None:
    """Raise PolicyViolation unless Syncplane may send requests to ``url``.

    ``allow_insecure=None`` reads ``settings.SYNCPLANE_ALLOW_INSECURE_OUTBOUND`` (False without Django).
    A host that does not resolve raises ConfigurationError ("cannot resolve host").
    """
    if allow_insecure is None:
        allow_insecure = _insecure_allowed_by_settings()
    if not isinstance(url, str) or not url.strip():
        raise PolicyViolation("Outbound URL refused: the URL is empty")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise PolicyViolation("Outbound URL refused: the URL cannot be parsed (bad host or port)") from None

    scheme = parts.scheme.lower()
    if scheme == "http" and not allow_insecure:
        raise PolicyViolation(
            "Outbound URL refused: plain http is not allowed, use https "
            "(or set SYNCPLANE_ALLOW_INSECURE_OUTBOUND for a lab or demo)"
        )
    if scheme not in ("https", "http"):
        raise PolicyViolation(
            f"Outbound URL refused: scheme {scheme or '(none)'!r} is not allowed, use https"
        )
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        # The message does not repeat the URL: it contains the credentials we are refusing.
        raise PolicyViolation(
            "Outbound URL refused: the URL contains a user name or password; "
            "put credentials in the integration's secret references instead"
        )
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise PolicyViolation("Outbound URL refused: the URL has no host")
    if host in METADATA_HOSTNAMES:
        raise PolicyViolation(f"Outbound URL refused: {host} is a cloud metadata service")

    _check_addresses(host, _resolve(host, port or (443 if scheme == "https" else 80)), allow_insecure)


def connectable_addresses(host: str, port: int, *, allow_insecure: bool | None = None) -> list[str]:
    """The addresses `host` resolves to now, if every one is allowed; PolicyViolation otherwise.

    Called when a connection is opened, not only when a URL is accepted: a DNS answer that changes in between
    (DNS rebinding: public at check time, 169.254.169.254 at connect time) must not reach a forbidden address.
    """
    if allow_insecure is None:
        allow_insecure = _insecure_allowed_by_settings()
    name = host.rstrip(".").lower()
    if name in METADATA_HOSTNAMES:
        raise PolicyViolation(f"Outbound connection refused: {name} is a cloud metadata service")
    addresses = _resolve(name, port)
    _check_addresses(name, addresses, allow_insecure)
    return [str(address) for address in addresses]


def _check_addresses(host: str, addresses: list[IPAddress], allow_insecure: bool) -> None:
    for address in addresses:
        if _never_allowed(address):
            raise PolicyViolation(
                f"Outbound URL refused: {host} resolves to {address}, "
                "a link-local or cloud metadata address, which is never allowed"
            )
        if _internal(address) and not allow_insecure:
            raise PolicyViolation(
                f"Outbound URL refused: {host} resolves to {address}, a loopback, private or reserved "
                "address (allowed only with SYNCPLANE_ALLOW_INSECURE_OUTBOUND)"
            )
