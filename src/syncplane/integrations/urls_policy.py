"""Which outbound URLs Syncplane may call.

An integration's base URL is typed in by a person, so without a check it is a server-side request forgery
primitive: it could point at the cloud metadata service (and hand out the machine's cloud credentials), at
a database on the private network, or at a local file. The rules:

- https only; plain http only where the operator allows insecure outbound traffic (the demo does);
  any other scheme (file:, ftp:, gopher:...) never;
- no credentials in the URL: they belong in secret references, where they are never echoed back;
- every address the host resolves to is checked, so a DNS name cannot smuggle in a forbidden address;
  link-local and cloud metadata addresses are refused always, loopback/private/reserved ones unless
  insecure traffic is allowed;
- an IPv6 address that carries an IPv4 address (IPv4-mapped and -compatible, 6to4, NAT64, Teredo) is judged
  by the IPv4 address too: a NAT64 gateway turns 64:ff9b::a9fe:a9fe into 169.254.169.254.

The same rules hold for every outbound address: base URLs, URL-valued config fields (checked when an
integration is saved) and LDAP servers (`check_outbound_host`), and again when a connection is opened.
Directory servers are the one declared difference: they may sit on private networks (`allow_private`).
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


NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix
NAT64_LOCAL_PREFIX = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215; the IPv4 part is in the last 32 bits
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, NAT64, Teredo client), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address.sixtofour:
        return address.sixtofour
    if address.teredo:
        return address.teredo[1]
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in NAT64_PREFIX or address in NAT64_LOCAL_PREFIX:
        return low32
    if address in IPV4_COMPATIBLE and int(address) > 1:  # not :: nor ::1, which are IPv6 of their own
        return low32
    return None


def _never_allowed(address: IPAddress) -> bool:
    embedded = embedded_ipv4(address)
    if embedded is not None and _never_allowed(embedded):
        return True
    return address in METADATA_ADDRESSES or address.is_link_local


def _internal(address: IPAddress) -> bool:
    # is_global is False for private, loopback, shared (100.64/10), documentation and similar ranges;
    # multicast is listed separately because ipaddress counts public multicast ranges as global.
    embedded = embedded_ipv4(address)
    if embedded is not None:
        if _internal(embedded):
            return True
        if address in NAT64_PREFIX:  # a public IPv4 address reached through the network's NAT64 gateway
            return False
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


def connectable_addresses(
    host: str, port: int, *, allow_insecure: bool | None = None, allow_private: bool = False
) -> list[str]:
    """The addresses `host` resolves to now, if every one is allowed; PolicyViolation otherwise.

    Called when a connection is opened, not only when a URL is accepted: a DNS answer that changes in between
    (DNS rebinding: public at check time, 169.254.169.254 at connect time) must not reach a forbidden address.
    `allow_private` admits RFC 1918 and unique-local addresses (directory servers live there); loopback and
    the rest still need insecure mode, metadata and link-local are never allowed.
    """
    if allow_insecure is None:
        allow_insecure = _insecure_allowed_by_settings()
    name = host.rstrip(".").lower()
    if not name:
        raise PolicyViolation("Outbound connection refused: no host")
    if name in METADATA_HOSTNAMES:
        raise PolicyViolation(f"Outbound connection refused: {name} is a cloud metadata service")
    addresses = _resolve(name, port)
    _check_addresses(name, addresses, allow_insecure, allow_private)
    return [str(address) for address in addresses]


def check_outbound_host(host: str, port: int, *, allow_insecure: bool | None = None,
                        allow_private: bool = False) -> None:
    """The URL policy for a connection that is not a URL of ours (an LDAP server): PolicyViolation unless
    every address `host` resolves to may be reached."""
    connectable_addresses(host, port, allow_insecure=allow_insecure, allow_private=allow_private)


def url_origin(url: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of a URL, default ports filled in; None for an empty or unparseable URL.
    Credentials follow an origin: a new origin is a new party to trust."""
    try:
        parts = urlsplit((url or "").strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").rstrip(".").lower()
    if not scheme and not host:
        return None
    return scheme, host, port or _DEFAULT_PORTS.get(scheme)


_DEFAULT_PORTS = {"https": 443, "http": 80, "ldaps": 636, "ldap": 389}
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)


def _private_network(address: IPAddress) -> bool:
    return any(address.version == network.version and address in network for network in PRIVATE_NETWORKS)


def _check_addresses(host: str, addresses: list[IPAddress], allow_insecure: bool, allow_private: bool = False) -> None:
    for address in addresses:
        if _never_allowed(address):
            raise PolicyViolation(
                f"Outbound URL refused: {host} resolves to {address}, "
                "a link-local or cloud metadata address, which is never allowed"
            )
        if allow_insecure or (allow_private and _private_network(address)):
            continue
        if _internal(address):
            raise PolicyViolation(
                f"Outbound URL refused: {host} resolves to {address}, a loopback, private or reserved "
                "address (allowed only with SYNCPLANE_ALLOW_INSECURE_OUTBOUND)"
            )
