"""Active Directory, read over LDAP with ldap3 (see shared/api-notes/active-directory.md).

Connection: the integration's base URL is the domain controller, `ldaps://dc01.ad.example.org:636` (TLS from
the first byte) or `ldap://dc01.ad.example.org:389`, upgraded with StartTLS (`start_tls`, on by default for
ldap://). The server certificate is verified against `ca_file` (the enterprise CA's PEM) or the system's CAs;
`tls_verify: false` exists for a lab only. Plain LDAP without StartTLS sends the password in clear text and is
allowed only where insecure outbound traffic is (SYNCPLANE_ALLOW_INSECURE_OUTBOUND, tests and the demo).
Referrals are not chased (AD hands out DomainDnsZones/ForestDnsZones/Configuration referrals from the domain
root; following them re-binds elsewhere or hangs).

Auth: a simple bind as a read-only service account (auth type "basic": `username` + secret `password`). The
username goes to the server unchanged: AD takes a UPN (`svc-sync@ad.example.org`), a down-level name
(`ADEX\\svc-sync`) or a DN; OpenLDAP only a DN. invalidCredentials (49) is an AuthenticationError whose text
carries the server's diagnostic (AD's "data 52e" etc.), never the password. Every failure to set up an LDAP
session (refused, timed out, not LDAP, untrusted certificate) is one TransientError with one text, so that
test-connection cannot map which hosts and ports answer on a private network; the cause goes to the log.
The DC's address follows the outbound URL policy (private networks allowed, loopback only in insecure mode),
when the integration is saved and at every connection.

Paging: the simple paged results control (RFC 2696, OID 1.2.840.113556.1.4.319), `page_size` entries per
page (default 500, at most AD's MaxPageSize of 1000); each LDAP page is one Page. The paging cookie belongs
to the connection, so a resume token cannot hold it: a resumed run restarts the stream it stopped in (writes
are idempotent upserts keyed on objectGUID, so re-reading part of a stream is harmless).
Large groups: AD returns at most MaxValRange (1,500) values of `member` per entry (`member;range=0-1499`);
ldap3's auto_range (kept on) fetches the rest, so a group's member list is always complete.

Streams, in this order: users (`user_filter`, default `(&(objectCategory=person)(objectClass=user))`; plain
`(objectClass=user)` would also return computers), groups (`(objectClass=group)`), computers
(`(objectClass=computer)`), all under `base_dn`, subtree.

Incremental: by uSNChanged. The cursor is `{"dc": dnsHostName, "usn": highestCommittedUSN}`, both read from
the root DSE *before* the first search, so a change made during a run is read again next time rather than
missed. The next run searches `(&(uSNChanged>=usn+1)<configured filter>)` on each stream. USNs are per DC:
when the run lands on another DC (or the DC's USN went backwards, a restore), it does a full listing instead.
Deleted objects are invisible to a normal search (tombstones): full runs find them, as objects not seen, and
incremental runs through `list_ids` (capability list_ids): after the changes, one objectGUID-only paged search
per stream lists every live object, and the engine marks the known ones it does not list deleted.

Mapping (record contract in briefs/directory-contract.md; external id = objectGUID as a lower-case GUID,
decoded little-endian as AD stores it):
  users      username = lower-cased userPrincipalName, else sAMAccountName; is_active = not
             (userAccountControl & 0x2); email = mail; first/last/display name = givenName/sn/displayName; dn
  groups     name = cn; members = every `member` DN (users and nested groups), member_ref "dn"
  computers  kind "device": name = cn, fqdn/hostname from dNSHostName, operating_system, os_version,
             asset_type server/desktop from the OS name, last_seen_at from lastLogonTimestamp (FILETIME;
             0 and 0x7FFFFFFFFFFFFFFF mean never), status retired when the account is disabled
DNs are normalised (lower-case attribute types, one escaping style) so a user's DN and the same DN in a
group's member list compare equal as strings: slapd writes `cn=Lee\\2C Kim`, AD `CN=Lee\\, Kim`.
Every value put into a filter is escaped (RFC 4515) with ldap3's escape_filter_chars.
"""

from __future__ import annotations

import logging
import re
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.operation.search import parse_filter
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn

from syncplane.integrations.base import ConnectionResult, Connector, ConnectorContext, MappedRecord, Page
from syncplane.integrations.choices import AuthType, Capability, Category, RecordKind, SystemType
from syncplane.integrations.errors import (
    AuthenticationError,
    ConfigurationError,
    PermanentError,
    PolicyViolation,
    RecordError,
    TransientError,
)
from syncplane.integrations.paging import CursorPaginator
from syncplane.integrations.records import AssetAttributes, DirectoryDevice, DirectoryGroup, DirectoryUser
from syncplane.integrations.registry import register

logger = logging.getLogger("syncplane.integrations.active_directory")

PAGED_RESULTS = "1.2.840.113556.1.4.319"
MAX_PAGE_SIZE = 1000  # AD's MaxPageSize; OpenLDAP answers adminLimitExceeded above its size.pr
UAC_ACCOUNTDISABLE = 0x2
UAC_SERVER_TRUST_ACCOUNT = 0x2000  # a domain controller
FILETIME_NEVER = (0, 0x7FFFFFFFFFFFFFFF)
FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)

DEFAULT_FILTERS = {
    "users": "(&(objectCategory=person)(objectClass=user))",
    "groups": "(objectClass=group)",
    "computers": "(objectClass=computer)",
}
STREAMS = ("users", "groups", "computers")
ATTRIBUTES = {
    "users": ("objectGUID", "objectClass", "cn", "sAMAccountName", "userPrincipalName", "mail", "givenName", "sn",
              "displayName", "userAccountControl", "department", "title", "uSNChanged", "whenChanged"),
    "groups": ("objectGUID", "objectClass", "cn", "sAMAccountName", "displayName", "description", "member",
               "groupType", "uSNChanged", "whenChanged"),
    "computers": ("objectGUID", "objectClass", "cn", "sAMAccountName", "dNSHostName", "operatingSystem",
                  "operatingSystemVersion", "userAccountControl", "lastLogonTimestamp", "uSNChanged", "whenChanged"),
}
MULTI_VALUED = frozenset({"objectClass", "member", "mail"})  # mail: single in AD, multi-valued in cosine
INTEGERS = frozenset({"userAccountControl", "uSNChanged", "groupType", "lastLogonTimestamp"})
_CANONICAL_NAMES = {name.lower(): name for names in ATTRIBUTES.values() for name in names}
SERVER_OS = ("server", "linux", "ubuntu", "debian", "red hat", "rhel", "centos", "suse", "rocky", "alma")
DESKTOP_OS = ("windows", "mac os", "macos")
_BAD_ESCAPE = re.compile(r"\\(?![0-9A-Fa-f]{2})")
_DN_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{2})|\\(.)")
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# Errors a search can end with, by LDAP result code, and what they mean for the run.
_TRANSIENT_RESULTS = {3: "timeLimitExceeded", 51: "busy", 52: "unavailable", 80: "other"}
_TLS_PROBLEMS = ("certificate verify failed", "certificate_verify_failed", "unable to get local issuer",
                 "self-signed certificate", "self signed certificate", "hostname mismatch",
                 "doesn't match", "does not match", "wrong version number", "unknown ca")


def _filter_property(stream: str) -> dict:
    return {"type": "string", "minLength": 3, "default": DEFAULT_FILTERS[stream],
            "description": f"LDAP filter selecting the {stream}; combined with uSNChanged in incremental runs."}


# --- pure helpers ------------------------------------------------------------------------------------------------

def normalize_dn(dn: str) -> str:
    """One spelling per DN: attribute types lower-cased, values unescaped and re-escaped one way (RFC 4514).
    Raises ValueError for a string that is not a DN."""
    if not dn:
        return ""
    parts = []
    for attribute, value, separator in parse_dn(dn, escape=False, strip=True):
        parts.append(f"{attribute.lower()}={escape_rdn(_unescape_rdn(value))}{separator}")
    return "".join(parts)


def _unescape_rdn(value: str) -> str:
    """`\\2C` (hex, UTF-8 bytes) and `\\,` (a character) both back to the character."""
    out = bytearray()
    position = 0
    for match in _DN_ESCAPE.finditer(value):
        out += value[position:match.start()].encode()
        out += bytes.fromhex(match.group(1)) if match.group(1) else match.group(2).encode()
        position = match.end()
    out += value[position:].encode()
    return out.decode("utf-8", errors="replace")


def filetime_to_datetime(value: Any) -> datetime | None:
    """AD's FILETIME (100-ns ticks since 1601-01-01 UTC); 0 and the maximum mean "never"."""
    try:
        ticks = int(value)
    except (TypeError, ValueError):
        return None
    if ticks in FILETIME_NEVER or ticks < 0:
        return None
    return FILETIME_EPOCH + timedelta(microseconds=ticks // 10)


def ldap_filter_matching(attribute: str, value: str) -> str:
    """`(attribute=value)` with the value escaped: a user-supplied `*)(objectClass=*` stays a literal."""
    return f"({attribute}={escape_filter_chars(value)})"


def validate_filter(name: str, value: str) -> None:
    if not (value.startswith("(") and value.endswith(")")):
        raise ConfigurationError(f"{name}: an LDAP filter is written in parentheses, e.g. (objectClass=user)")
    if _BAD_ESCAPE.search(value):
        raise ConfigurationError(f"{name}: a backslash in an LDAP filter must start a \\XX hex escape "
                                 "(\\28 for '(', \\29 for ')', \\2a for '*', \\5c for '\\')")
    try:
        parse_filter(value, None, False, False, None, False)
    except ldap_errors.LDAPInvalidFilterError as exc:
        raise ConfigurationError(f"{name}: not a valid LDAP filter ({exc}); check that parentheses balance and "
                                 "that '(', ')', '*' and '\\' inside values are escaped") from None


def _check_address(host: str, port: int) -> None:
    """The one outbound policy (urls_policy), with the directory's one difference: domain controllers live on
    private networks, so RFC 1918 addresses are fine; loopback only in insecure mode, metadata and link-local
    never."""
    from syncplane.integrations.urls_policy import check_outbound_host

    check_outbound_host(host, port, allow_private=True)


@dataclass
class RootDse:
    naming_context: str
    dc: str
    highest_usn: int | None


@register
class ActiveDirectoryConnector(Connector):
    system_type = SystemType.ACTIVE_DIRECTORY
    category = Category.IDENTITY
    display_name = "Active Directory"
    base_url_help = (
        "The domain controller as ldaps://host:636 (or ldap://host:389 with StartTLS), without a path: "
        "where the searches start is config base_dn."
    )
    base_url_example = "ldaps://dc01.ad.example.org:636"
    record_kind = RecordKind.DIRECTORY
    auth_types = (AuthType.BASIC,)
    capabilities = frozenset({Capability.TEST_CONNECTION, Capability.FULL, Capability.INCREMENTAL, Capability.DRY_RUN,
                              Capability.PASSWORD_SIGN_IN, Capability.LIST_IDS})
    config_schema = {
        "type": "object",
        "properties": {
            "base_dn": {"type": "string", "minLength": 3,
                        "description": "Where the searches start, e.g. DC=ad,DC=example,DC=org or an OU."},
            "start_tls": {"type": ["boolean", "null"], "default": None,
                          "description": "Upgrade ldap:// with StartTLS (default: on for ldap://; ldaps:// is "
                                         "TLS already)."},
            "ca_file": {"type": "string", "default": "",
                        "description": "PEM file of the CA that signed the DC's certificate (default: system CAs)."},
            "tls_verify": {"type": "boolean", "default": True,
                           "description": "Verify the DC's certificate. Turn off only in a lab: without it anyone "
                                          "on the path can read the service account's password."},
            "user_filter": _filter_property("users"),
            "group_filter": _filter_property("groups"),
            "computer_filter": _filter_property("computers"),
            "sync_computers": {"type": "boolean", "default": True,
                               "description": "Also read computer accounts, as devices of the inventory."},
            "page_size": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": 500},
            "timeout_seconds": {"type": "number", "minimum": 1, "maximum": 600, "default": 30},
            "role_mapping": {"type": "object", "additionalProperties": {"enum": ["admin", "operator", "viewer"]},
                             "default": {},
                             "description": "Directory group (name or id) -> Syncplane role, applied after each "
                                            "sync."},
        },
        "required": ["base_dn"],
        "additionalProperties": False,
    }

    @classmethod
    def validated_config(cls, config: dict | None) -> dict:
        config = super().validated_config(config)
        try:
            parse_dn(config["base_dn"])
        except ldap_errors.LDAPInvalidDnError as exc:
            raise ConfigurationError(f"base_dn: {config['base_dn']!r} is not a DN ({exc}); "
                                     "write it as DC=ad,DC=example,DC=org") from None
        for name in ("user_filter", "group_filter", "computer_filter"):
            validate_filter(name, config[name])
        return config

    @classmethod
    def check_base_url(cls, url: str) -> tuple[str, str, int]:
        """(scheme, host, port) of an ldap:// or ldaps:// URL that the outbound policy lets us reach, or
        ConfigurationError / PolicyViolation. Checked when saved and again when connecting (DNS can change)."""
        scheme, host, port = cls.parse_base_url(url)
        _check_address(host, port)
        return scheme, host, port

    @staticmethod
    def parse_base_url(url: str) -> tuple[str, str, int]:
        """(scheme, host, port) of an ldap:// or ldaps:// URL, or ConfigurationError / PolicyViolation."""
        parts = urlsplit((url or "").strip())
        scheme = parts.scheme.lower()
        if scheme not in ("ldap", "ldaps"):
            raise ConfigurationError("base_url: use ldaps://dc.example.org:636 or ldap://dc.example.org:389")
        if parts.username or parts.password or "@" in parts.netloc:
            raise PolicyViolation("base_url: put the bind account in the credentials, not in the URL")
        if not parts.hostname:
            raise ConfigurationError("base_url: no host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigurationError("base_url: only scheme, host and port (the base DN goes in base_dn)")
        try:
            return scheme, parts.hostname, parts.port or (636 if scheme == "ldaps" else 389)
        except ValueError:
            raise ConfigurationError("base_url: the port is not a number") from None

    def __init__(self, context: ConnectorContext):
        super().__init__(context)
        self.scheme, self.host, self.port = self.parse_base_url(context.base_url)
        start_tls = self.config["start_tls"]
        self.start_tls = self.scheme == "ldap" and (start_tls is None or start_tls)
        self.encrypted = self.scheme == "ldaps" or self.start_tls
        self._connection: ldap3.Connection | None = None

    @property
    def where(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    # --- connecting ----------------------------------------------------------------------------------------------
    def _server(self) -> ldap3.Server:
        self._check_destination()
        tls = None
        if self.encrypted:
            verify = self.config["tls_verify"]
            if not verify:
                logger.warning("TLS certificate verification is off for this directory",
                               extra={"integration": self.context.name, "server": self.where})
            tls = ldap3.Tls(validate=ssl.CERT_REQUIRED if verify else ssl.CERT_NONE,
                            ca_certs_file=self.config["ca_file"] or None, version=ssl.PROTOCOL_TLS_CLIENT)
        return ldap3.Server(self.host, port=self.port, use_ssl=self.scheme == "ldaps", tls=tls,
                            get_info=ldap3.NONE, connect_timeout=self.config["timeout_seconds"])

    def _check_destination(self) -> None:
        """The outbound policy, at connect time. Clear-text binds need the insecure switch."""
        from syncplane.integrations import urls_policy

        _check_address(self.host, self.port)
        if not self.encrypted and not urls_policy._insecure_allowed_by_settings():  # noqa: SLF001
            raise PolicyViolation("plain ldap:// without StartTLS would send the password in clear text; use "
                                  "ldaps:// or start_tls (allowed only with SYNCPLANE_ALLOW_INSECURE_OUTBOUND)")

    def connect(self, user: str | None = None, password: str | None = None) -> ldap3.Connection:
        """A bound connection: the service account's, or (for the sign-in backend) the given account's."""
        if self.ca_missing():
            raise ConfigurationError(f"ca_file {self.config['ca_file']} does not exist or cannot be read")
        user = self.context.credential("username") if user is None else user
        password = self.context.credential("password") if password is None else password
        connection = ldap3.Connection(
            self._server(), user=user, password=password, authentication=ldap3.SIMPLE, read_only=True,
            auto_referrals=False, raise_exceptions=False, auto_range=True,
            receive_timeout=self.config["timeout_seconds"],
        )
        try:
            connection.open()
            if self.start_tls and not connection.start_tls():
                raise ConfigurationError(f"StartTLS with {self.where} failed: {connection.result.get('message')}")
            if not connection.bind():
                self._bind_failed(connection.result, user)
        except ldap_errors.LDAPException as exc:
            _unbind(connection)
            raise self._classify(exc) from None
        except BaseException:
            _unbind(connection)
            raise
        return connection

    def check_password(self, username: str, password: str) -> None:
        """A simple bind as the person (a DN, or a UPN on AD): the bind succeeding is the proof. An empty password
        is refused before anything is sent, since LDAP takes a DN with no password as an unauthenticated bind,
        which succeeds (RFC 4513 5.1.2)."""
        if not username or not password:
            raise AuthenticationError("a user name and a password are needed")
        _unbind(self.connect(user=username, password=password))

    def ca_missing(self) -> bool:
        ca_file = self.config["ca_file"]
        if not ca_file or not self.encrypted:
            return False
        try:
            with open(ca_file, "rb"):
                return False
        except OSError:
            return True

    def _bind_failed(self, result: dict, user: str) -> None:
        code, message = result.get("result"), (result.get("message") or "").strip()
        detail = f" ({message})" if message else ""
        if code == 49:
            raise AuthenticationError(f"the directory refused the bind as {user!r}: invalid credentials{detail}")
        if code in (8, 13):
            raise ConfigurationError(f"{self.where} requires a protected bind ({result.get('description')}): use "
                                     "ldaps:// or start_tls")
        if code in _TRANSIENT_RESULTS:
            raise TransientError(f"bind at {self.where} failed: {result.get('description')}{detail}")
        raise PermanentError(f"bind as {user!r} at {self.where} failed: {result.get('description')}{detail}")

    def _classify(self, exc: Exception) -> Exception:
        """One answer for every failure to talk LDAP with the server: refused, timed out, not LDAP, TLS failed.
        Whoever may edit base_url could otherwise map which hosts and ports answer on the private networks a
        directory connector may reach. The exact cause goes to the log, for the operator."""
        text = str(exc).strip()[:300]
        cause = text
        if any(problem in text.lower() for problem in _TLS_PROBLEMS):
            ca = self.config["ca_file"] or "the system's CA store"
            cause = f"TLS failed, the certificate could not be verified against {ca}: {text}"
        elif isinstance(exc, ldap_errors.LDAPStartTLSError):
            cause = f"StartTLS failed: {text}"
        logger.warning("no LDAP session with the directory", extra={
            "integration": self.context.name, "server": self.where, "cause": cause})
        return TransientError(
            f"cannot reach the directory at {self.where}: no LDAP session could be set up (server down, port "
            "closed or filtered, not an LDAP server, or TLS failed: check that ca_file holds the CA that signed "
            "the DC certificate and that base_url names the host the certificate names). The exact cause is in "
            "the Syncplane log."
        )

    @property
    def connection(self) -> ldap3.Connection:
        if self._connection is None:
            self._connection = self.connect()
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            _unbind(self._connection)
            self._connection = None

    # --- reading -------------------------------------------------------------------------------------------------
    def root_dse(self) -> RootDse:
        conn = self.connection
        self._call(conn.search, "", "(objectClass=*)", ldap3.BASE,
                   attributes=["defaultNamingContext", "dnsHostName", "highestCommittedUSN"])
        self._check(conn.result, "reading the root DSE")
        raw = conn.response[0].get("raw_attributes", {}) if conn.response else {}

        def first(name: str) -> str:
            for key, values in raw.items():
                if key.lower() == name.lower() and values:
                    return values[0].decode("utf-8", errors="replace")
            return ""

        usn = first("highestCommittedUSN")
        return RootDse(first("defaultNamingContext"), first("dnsHostName").lower(),
                       int(usn) if usn.isdigit() else None)

    def test_connection(self) -> ConnectionResult:
        dse = self.root_dse()
        conn = self.connection
        self._call(conn.search, self.config["base_dn"], "(objectClass=*)", ldap3.BASE, attributes=["objectClass"])
        self._check(conn.result, f"reading base_dn {self.config['base_dn']!r}")
        details = {"server": self.where, "tls": "ldaps" if self.scheme == "ldaps" else
                   ("starttls" if self.start_tls else "none"), "dc": dse.dc,
                   "default_naming_context": dse.naming_context, "highest_committed_usn": dse.highest_usn}
        return ConnectionResult(True, f"bound to {dse.dc or self.host}; base DN found", details)

    def lookup_user(self, login: str) -> dict | None:
        """The one user whose UPN or sAMAccountName is `login` (`ADEX\\name` is taken as name), or None."""
        found = self.find_users(login)
        return found[0] if len(found) == 1 else None

    def find_users(self, login: str) -> list[dict]:
        """Users whose UPN or sAMAccountName equals `login`; the value is escaped into the filter, so `*` or
        `*)(objectClass=*` match only themselves (nothing), never every user."""
        login = login.strip()
        if not login:
            return []
        account = login.split("\\", 1)[1] if "\\" in login else login  # ADEX\user -> user
        flt = (f"(&{self.config['user_filter']}(|{ldap_filter_matching('userPrincipalName', login)}"
               f"{ldap_filter_matching('sAMAccountName', account)}))")
        records: list[dict] = []
        for page, _more in self._pages("users", flt):
            records.extend(page)
        return records

    def fetch(self, mode: str, cursor: Any = None, resume: dict | None = None) -> Iterator[Page]:
        dse = self.root_dse()  # before any search: changes made from here on are read again next run
        now = {"dc": dse.dc, "usn": dse.highest_usn} if dse.dc and dse.highest_usn is not None else None
        streams = self._streams()
        start, since, run_cursor = 0, None, now
        if resume and resume.get("dc") == dse.dc and resume.get("stream") in streams:
            # The paging cookie died with the old connection: start the stream again, keep the run's cursor.
            start, since, run_cursor = streams.index(resume["stream"]), resume.get("since"), resume.get("cursor")
        elif resume:
            logger.info("resuming on another domain controller: reading everything again",
                        extra={"integration": self.context.name, "dc": dse.dc})
        elif mode == "incremental":
            since = self._incremental_start(cursor, dse)
        for index in range(start, len(streams)):
            stream = streams[index]
            flt = self.config[f"{stream[:-1]}_filter"]
            if since is not None:
                flt = f"(&(uSNChanged>={escape_filter_chars(str(int(since) + 1))}){flt})"
            for records, more in self._pages(stream, flt):
                if more:
                    next_stream = stream
                elif index + 1 < len(streams):
                    next_stream = streams[index + 1]
                else:
                    next_stream = None
                token = None if next_stream is None else {"stream": next_stream, "dc": dse.dc, "since": since,
                                                          "cursor": run_cursor}
                yield Page(records, resume=token, cursor=run_cursor)

    def list_ids(self) -> Iterator[str]:
        """The objectGUID of every object a full run would read: per stream one paged search for objectGUID
        alone (a few dozen bytes an entry). A deleted object becomes a tombstone that no search under base_dn
        returns, uSNChanged included, so this is how an incremental run learns of deletions."""
        for stream in self._streams():
            for records, _more in self._pages(stream, self.config[f"{stream[:-1]}_filter"], ("objectGUID",)):
                yield from (raw["objectGUID"] for raw in records if raw.get("objectGUID"))

    def _streams(self) -> list[str]:
        return [s for s in STREAMS if s != "computers" or self.config["sync_computers"]]

    def _incremental_start(self, cursor: Any, dse: RootDse) -> int | None:
        """The USN to read changes after, or None for a full listing (and why, in the log)."""
        reason = ""
        if not isinstance(cursor, dict) or "usn" not in cursor:
            reason = "no cursor from an earlier run"
        elif dse.highest_usn is None:
            reason = "the server publishes no highestCommittedUSN"
        elif cursor.get("dc") != dse.dc:
            reason = f"USNs are per domain controller: the cursor is from {cursor.get('dc')!r}, this is {dse.dc!r}"
        elif int(cursor["usn"]) > dse.highest_usn:
            reason = "the domain controller's USN went backwards (restored?)"
        if reason:
            logger.info(f"incremental sync reads everything: {reason}",
                        extra={"integration": self.context.name, "dc": dse.dc})
            return None
        return int(cursor["usn"])

    def _pages(self, stream: str, flt: str, attributes: tuple[str, ...] = ()) -> Iterator[tuple[list[dict], bool]]:
        """(records, more) per page of the simple paged results control; its cookie is the cursor token. Each
        entry carries the stream's attributes, or only `attributes` when given."""
        conn = self.connection
        wanted = list(attributes or ATTRIBUTES[stream])

        def read(cookie: bytes | None) -> dict:
            self._call(conn.search, self.config["base_dn"], flt, ldap3.SUBTREE, attributes=wanted,
                       paged_size=self.config["page_size"], paged_cookie=cookie, paged_criticality=True)
            self._check(conn.result, f"searching {stream}")
            records = [raw_record(e, stream) for e in conn.response if e.get("type") == "searchResEntry"]
            control = (conn.result.get("controls") or {}).get(PAGED_RESULTS, {}).get("value", {})
            return {"records": records, "cookie": control.get("cookie")}

        pages = CursorPaginator(vendor=f"Active Directory ({stream})", key="cookie")
        for page in pages.pages(read):
            yield page["records"], not pages.finished

    def _call(self, operation, *args, **kwargs):
        try:
            return operation(*args, **kwargs)
        except ldap_errors.LDAPException as exc:
            self.close()
            raise self._classify(exc) from None

    def _check(self, result: dict, doing: str) -> None:
        code = result.get("result")
        if code == 0:
            return
        description, message = result.get("description"), (result.get("message") or "").strip()
        text = f"{doing} at {self.where} failed: {description}" + (f" ({message})" if message else "")
        if code == 32:
            raise ConfigurationError(f"{text}; check base_dn")
        if code == 11:
            raise ConfigurationError(f"{text}; page_size is above the server's limit")
        if code == 4:
            raise PermanentError(f"{text}; the result was cut at the server's size limit although it was paged")
        if code in _TRANSIENT_RESULTS:
            raise TransientError(text)
        raise PermanentError(text)

    # --- mapping -------------------------------------------------------------------------------------------------
    def external_id(self, raw: Any) -> str:
        return raw.get("objectGUID", "") if isinstance(raw, dict) else ""

    def map_record(self, raw: dict) -> MappedRecord:
        return map_directory_record(raw)


def _unbind(connection: ldap3.Connection) -> None:
    """Close, whatever state the socket is in (after a failed TLS handshake it is already gone)."""
    try:
        connection.unbind()
    except (ldap_errors.LDAPException, OSError):
        pass


def raw_record(entry: dict, stream: str) -> dict:
    """An ldap3 search entry as a JSON-ready dict: GUID as text, integers as ints, DNs normalised, text UTF-8."""
    record: dict[str, Any] = {"stream": stream, "dn": _safe_dn(entry.get("dn", ""))}
    for key, values in (entry.get("raw_attributes") or {}).items():
        name = _CANONICAL_NAMES.get(key.lower().split(";", 1)[0])
        if name is None or not values:
            continue
        if name == "objectGUID":
            record[name] = str(uuid.UUID(bytes_le=values[0])) if len(values[0]) == 16 else ""
        elif name == "member":
            record[name] = [_safe_dn(v.decode("utf-8", errors="replace")) for v in values]
        elif name in MULTI_VALUED:
            record[name] = [v.decode("utf-8", errors="replace") for v in values]
        elif name in INTEGERS:
            try:
                record[name] = int(values[0])
            except ValueError:
                record[name] = None
        else:
            record[name] = values[0].decode("utf-8", errors="replace")
    return record


def _safe_dn(dn: str) -> str:
    try:
        return normalize_dn(dn)
    except (ldap_errors.LDAPInvalidDnError, ValueError):
        return dn


def _text(raw: dict, name: str) -> str:
    value = raw.get(name)
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value).strip() if value is not None else ""


def _kind(raw: dict) -> str:
    classes = {c.lower() for c in raw.get("objectClass") or ()}
    if "computer" in classes:
        return "computer"
    if "group" in classes:
        return "group"
    if "user" in classes or "person" in classes:
        return "user"
    return {"users": "user", "groups": "group", "computers": "computer"}.get(raw.get("stream"), "")


def map_directory_record(raw: dict) -> MappedRecord:
    """Pure: one raw AD record (as `raw_record` builds it) -> the directory record contract."""
    if not isinstance(raw, dict):
        raise RecordError("a directory record must be an object")
    guid = _text(raw, "objectGUID").lower().strip("{}")
    if not _GUID.match(guid):
        raise RecordError(f"objectGUID {guid!r} is missing or not a GUID")
    kind = _kind(raw)
    dn = _text(raw, "dn")
    attributes: DirectoryUser | DirectoryGroup | DirectoryDevice
    if kind == "user":
        username = (_text(raw, "userPrincipalName") or _text(raw, "sAMAccountName")).lower()
        if not username:
            raise RecordError("the user has neither a userPrincipalName nor a sAMAccountName")
        uac = raw.get("userAccountControl")
        attributes = {
            "kind": "user",
            "username": username,
            "email": _text(raw, "mail"),
            "first_name": _text(raw, "givenName"),
            "last_name": _text(raw, "sn"),
            "display_name": _text(raw, "displayName") or _text(raw, "cn"),
            "is_active": not (isinstance(uac, int) and uac & UAC_ACCOUNTDISABLE),
            "dn": dn,
            "removed": False,
        }
    elif kind == "group":
        name = _text(raw, "cn") or _text(raw, "sAMAccountName")
        if not name:
            raise RecordError("the group has no cn")
        attributes = {
            "kind": "group",
            "name": name,
            "dn": dn,
            "member_ref": "dn",
            "members": list(raw.get("member") or ()),  # complete: ldap3 fetched every range
            "members_added": [],
            "members_removed": [],
            "removed": False,
        }
    elif kind == "computer":
        attributes = {"kind": "device", "removed": False, "asset": computer_asset(raw)}
    else:
        raise RecordError(f"not a user, group or computer (objectClass {raw.get('objectClass')!r})")
    return MappedRecord(guid, attributes, raw)


def computer_asset(raw: dict) -> AssetAttributes:
    fqdn = _text(raw, "dNSHostName").lower().rstrip(".")
    name = _text(raw, "cn") or _text(raw, "sAMAccountName").rstrip("$")
    operating_system = _text(raw, "operatingSystem")
    uac = raw.get("userAccountControl") if isinstance(raw.get("userAccountControl"), int) else 0
    seen = filetime_to_datetime(raw.get("lastLogonTimestamp"))
    return {
        "name": name,
        "asset_type": asset_type_for(operating_system, uac),
        # A disabled computer account is how AD admins retire a machine before deleting it.
        "status": "retired" if uac & UAC_ACCOUNTDISABLE else "active",
        "hostname": fqdn.split(".", 1)[0] if fqdn else name.lower(),
        "fqdn": fqdn,
        "operating_system": operating_system,
        "os_version": _text(raw, "operatingSystemVersion"),
        "last_seen_at": seen.isoformat() if seen else None,
    }


def asset_type_for(operating_system: str, uac: int = 0) -> str:
    lowered = operating_system.lower()
    if uac & UAC_SERVER_TRUST_ACCOUNT or any(word in lowered for word in SERVER_OS):
        return "server"
    if any(word in lowered for word in DESKTOP_OS):
        return "desktop"  # AD cannot tell a laptop from a desktop
    return "other"
