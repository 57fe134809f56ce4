"""A real OpenLDAP server (slapd) that looks enough like Active Directory for the connector, tests and demo.

Recipe: shared/api-notes/active-directory.md ("Real OpenLDAP"). Everything runs as an ordinary user in one
folder: an AD-like schema with Microsoft's OIDs (so ldap3's OID-keyed formatters and the connector's
attribute names work), a slapd.conf with the mdb backend, a throwaway CA and server certificate made with
`cryptography` (ldap:// with StartTLS and ldaps://), deterministic directory data loaded with slapadd, and a
root DSE that publishes defaultNamingContext, dnsHostName and highestCommittedUSN.

What the data holds (see `build_directory`): users (every 10th disabled through userAccountControl 0x2,
non-ASCII names such as "Zoë Ødegård" and "Jürgen Müller", a "Lee, Kim" whose DN needs escaping, one user
without a UPN, one without mail), groups (a nested group, an "All Staff" group with every user, more than
1,500 members at the default size) and computers (workstations and servers, dNSHostName, operatingSystem,
lastLogonTimestamp as FILETIME, 0 = never).

Differences to AD, on purpose or because slapd cannot: objectCategory is stored as the short name
("person", "computer") so AD's usual filter `(&(objectCategory=person)(objectClass=user))` works unchanged
(AD stores a DN and resolves the short name in filters); `user` derives from `top`, not organizationalPerson,
so no `sn` is required; no range retrieval (slapd returns all 1,600 values at once), no UPN or DOMAIN\\user
bind (DNs only), no tombstones. slapd does not maintain uSNChanged: the change helpers here bump it by hand
from a counter, and `changes()` restarts slapd afterwards, because the root DSE (highestCommittedUSN) is read
from a file at start-up only.

Use: `with SlapdDirectory() as directory: ...` (tests), or `prepare()` + `command()` to run slapd as a child
process of someone else (the demo). slapd runs in the foreground (`-d 0`), so stopping it is a SIGTERM to the
process this class (or the demo) started, then a wait.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SYSTEM_SCHEMA = Path("/etc/ldap/schema")
MODULE_PATH = "/usr/lib/ldap"

DOMAIN = "ad.example.org"
NETBIOS = "ADEX"
SUFFIX = "dc=ad,dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "test-only-root-password"  # a throwaway directory on 127.0.0.1; never a real secret
SERVICE_DN = f"cn=svc-syncplane,ou=Service Accounts,{SUFFIX}"
SERVICE_PASSWORD = "test-only-service-password"
USER_PASSWORD = "test-only-user-password"  # every generated user's password (for the sign-in backend)
DC_HOSTNAME = f"dc01.{DOMAIN}"
PEOPLE = f"ou=People,{SUFFIX}"
GROUPS = f"ou=Groups,{SUFFIX}"
COMPUTERS = f"ou=Computers,{SUFFIX}"
FIRST_USN = 12000
GUID_NAMESPACE = uuid.UUID("6f1c3a52-35a4-4c57-9d1e-2f5d3c6b7a10")
DOMAIN_SID = (21, 1004336348, 1177238915, 682003330)
WHEN = "20250501103000.0Z"
FILETIME_EPOCH = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)

UAC_NORMAL = 0x200
UAC_DISABLED = 0x2
UAC_DONT_EXPIRE = 0x10000
UAC_WORKSTATION = 0x1000
UAC_SERVER = 0x2000

_MS = "1.2.840.113556"
_PRIVATE = "1.3.6.1.4.1.4203.666.11.77"  # OpenLDAP's experimental arc: only for the root DSE's two extras
_STRING = "EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15"
_INTEGER = "EQUALITY integerMatch ORDERING integerOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27"
_OCTETS = "EQUALITY octetStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40"
_TIME = "EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.24"

# name -> (OID, matching rules and syntax). Everything is userApplications: slapd refuses dSAOperation here.
ATTRIBUTE_TYPES = {
    "objectGUID": (f"{_MS}.1.4.2", _OCTETS),
    "objectSid": (f"{_MS}.1.4.146", _OCTETS),
    "sAMAccountName": (f"{_MS}.1.4.221", _STRING),
    "userPrincipalName": (f"{_MS}.1.4.656", _STRING),
    "userAccountControl": (f"{_MS}.1.4.8", _INTEGER),
    "uSNChanged": (f"{_MS}.1.2.120", _INTEGER),
    "uSNCreated": (f"{_MS}.1.2.19", _INTEGER),
    "whenCreated": (f"{_MS}.1.2.2", _TIME),
    "whenChanged": (f"{_MS}.1.2.3", _TIME),
    "lastLogonTimestamp": (f"{_MS}.1.4.1696", _INTEGER),
    "pwdLastSet": (f"{_MS}.1.4.96", _INTEGER),
    "accountExpires": (f"{_MS}.1.4.159", _INTEGER),
    "groupType": (f"{_MS}.1.4.750", _INTEGER),
    "sAMAccountType": (f"{_MS}.1.4.302", _INTEGER),
    "primaryGroupID": (f"{_MS}.1.4.98", _INTEGER),
    "department": (f"{_MS}.1.2.141", _STRING),
    "dNSHostName": (f"{_MS}.1.4.619", _STRING),
    "operatingSystem": (f"{_MS}.1.4.363", _STRING),
    "operatingSystemVersion": (f"{_MS}.1.4.365", _STRING),
    "objectCategory": (f"{_MS}.1.4.782", _STRING),  # AD: a DN; here the short name, see the module docstring
    "defaultNamingContext": (f"{_PRIVATE}.1", _STRING),
    "highestCommittedUSN": (f"{_PRIVATE}.2", _INTEGER),
}
MULTI_VALUED = frozenset()  # every AD attribute above is single-valued
_ACCOUNT = ("objectGUID $ objectSid $ sAMAccountName $ userPrincipalName $ userAccountControl $ uSNChanged $ "
            "uSNCreated $ whenCreated $ whenChanged $ lastLogonTimestamp $ pwdLastSet $ accountExpires $ "
            "sAMAccountType $ primaryGroupID $ department $ objectCategory $ sn $ givenName $ displayName $ mail $ "
            "title $ description $ userPassword $ telephoneNumber")
OBJECT_CLASSES = (
    f"objectclass ( {_MS}.1.5.9 NAME 'user' SUP top STRUCTURAL MUST cn MAY ( {_ACCOUNT} ) )",
    f"objectclass ( {_MS}.1.5.86 NAME 'computer' SUP user STRUCTURAL "
    "MAY ( dNSHostName $ operatingSystem $ operatingSystemVersion ) )",
    f"objectclass ( {_MS}.1.5.8 NAME 'group' SUP top STRUCTURAL MUST cn MAY ( member $ objectGUID $ objectSid $ "
    "sAMAccountName $ groupType $ sAMAccountType $ description $ displayName $ mail $ uSNChanged $ uSNCreated $ "
    "whenCreated $ whenChanged $ objectCategory ) )",
)


def ad_schema() -> str:
    lines = ["# AD-like schema for tests and the demo (Microsoft's OIDs; see simulators/slapd.py)"]
    for name, (oid, rules) in ATTRIBUTE_TYPES.items():
        single = "" if name in MULTI_VALUED else " SINGLE-VALUE"
        lines.append(f"attributetype ( {oid} NAME '{name}' {rules}{single} )")
    lines.extend(OBJECT_CLASSES)
    return "\n".join(lines) + "\n"


# --- data ---------------------------------------------------------------------------------------------------

FIRST_NAMES = ("Anna", "Ben", "Chloé", "David", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kofi", "Lena",
               "Marco", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tanja")
LAST_NAMES = ("Andersen", "Brown", "Costa", "Dubois", "Eriksen", "Fischer", "García", "Hansen", "Ivanova",
              "Jensen", "Kowalski", "López", "Martin", "Nowak", "O'Brien", "Petrov", "Rossi", "Schmidt", "Tanaka",
              "Weber")
DEPARTMENTS = ("Engineering", "Finance", "Sales", "Operations", "Support")
# Named users first: the cases a naive connector gets wrong.
SPECIAL_USERS = (
    # sam, given, sn, extra
    ("zoe.odegard", "Zoë", "Ødegård", {}),
    ("juergen.mueller", "Jürgen", "Müller", {}),
    ("kim.lee", "Kim", "Lee", {"cn": "Lee, Kim"}),  # a comma in the RDN: the DN carries an escape
    ("pat.nodomain", "Pat", "Nodomain", {"upn": None}),  # no UPN: the username falls back to sAMAccountName
    ("sam.nomail", "Sam", "Nomail", {"mail": None}),
    ("alex.admin", "Alex", "Admin", {}),
    ("vera.viewer", "Vera", "Viewer", {}),
    ("otto.operator", "Otto", "Operator", {}),
)


@dataclass
class Entry:
    dn: str
    attributes: dict[str, list]  # name -> values (str, int or bytes)


@dataclass
class DirectoryData:
    entries: list[Entry] = field(default_factory=list)
    users: list[Entry] = field(default_factory=list)
    groups: dict[str, Entry] = field(default_factory=dict)  # cn -> entry
    computers: list[Entry] = field(default_factory=list)
    highest_usn: int = FIRST_USN


def guid_for(dn: str) -> uuid.UUID:
    """A stable objectGUID per DN, so every load of the harness gives the same ids."""
    return uuid.uuid5(GUID_NAMESPACE, dn.lower())


def sid_bytes(rid: int) -> bytes:
    """A binary objectSid S-1-5-21-a-b-c-rid (revision, count, 48-bit authority big-endian, sub-authorities LE)."""
    subs = (*DOMAIN_SID, rid)
    return bytes([1, len(subs)]) + (5).to_bytes(6, "big") + b"".join(s.to_bytes(4, "little") for s in subs)


def filetime(moment: dt.datetime) -> int:
    return int((moment - FILETIME_EPOCH).total_seconds() * 10_000_000)


def rdn_value(value: str) -> str:
    from ldap3.utils.dn import escape_rdn

    return escape_rdn(value)


def build_directory(users: int = 1600, computers: int = 24) -> DirectoryData:
    """The deterministic directory: `users` users in total (special ones included), groups and computers."""
    data = DirectoryData()
    usn = FIRST_USN

    def add(dn: str, attributes: dict) -> Entry:
        nonlocal usn
        usn += 1
        attributes = {"objectGUID": [guid_for(dn).bytes_le], "uSNCreated": [usn], "uSNChanged": [usn],
                      "whenCreated": [WHEN], "whenChanged": [WHEN], **attributes}
        entry = Entry(dn, {k: v for k, v in attributes.items() if v not in (None, [None], [])})
        data.entries.append(entry)
        return entry

    rid = 1100
    specs = list(SPECIAL_USERS)
    for index in range(max(0, users - len(specs))):
        given, last = FIRST_NAMES[index % len(FIRST_NAMES)], LAST_NAMES[(index // len(FIRST_NAMES)) % len(LAST_NAMES)]
        specs.append((f"user{index + 1:04d}", given, last, {}))
    for position, (sam, given, last, extra) in enumerate(specs[:users]):
        cn = extra.get("cn", f"{given} {last}" if not sam.startswith("user") else f"{given} {last} {sam[4:]}")
        dn = f"cn={rdn_value(cn)},{PEOPLE}"
        disabled = position % 10 == 9
        uac = UAC_NORMAL | (UAC_DISABLED if disabled else 0) | (UAC_DONT_EXPIRE if position % 7 == 0 else 0)
        rid += 1
        upn = extra.get("upn", f"{sam}@{DOMAIN}")
        mail = extra.get("mail", f"{sam}@example.org")
        data.users.append(add(dn, {
            "objectClass": ["top", "user"],
            "objectCategory": ["person"],
            "cn": [cn],
            "sn": [last],
            "givenName": [given],
            "displayName": [f"{given} {last}"],
            "sAMAccountName": [sam],
            "userPrincipalName": [upn] if upn else None,
            "mail": [mail] if mail else None,
            "department": [DEPARTMENTS[position % len(DEPARTMENTS)]],
            "userAccountControl": [uac],
            "sAMAccountType": [805306368],
            "primaryGroupID": [513],
            "objectSid": [sid_bytes(rid)],
            "pwdLastSet": [filetime(dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC))],
            "accountExpires": [9223372036854775807],
            "userPassword": [USER_PASSWORD],
        }))

    by_sam = {e.attributes["sAMAccountName"][0]: e for e in data.users}

    def group(cn: str, members: list[str], description: str = "") -> Entry:
        nonlocal rid
        rid += 1
        entry = add(f"cn={rdn_value(cn)},{GROUPS}", {
            "objectClass": ["top", "group"],
            "objectCategory": ["group"],
            "cn": [cn],
            "sAMAccountName": [cn.replace(" ", "-")[:20]],
            "groupType": [-2147483646],  # global security group
            "sAMAccountType": [268435456],
            "objectSid": [sid_bytes(rid)],
            "description": [description] if description else None,
            "member": members or None,
        })
        data.groups[cn] = entry
        return entry

    def sams(*names: str) -> list[str]:
        return [by_sam[n].dn for n in names if n in by_sam]

    operations = group("IT Operations", sams("otto.operator", "juergen.mueller", "user0001", "user0002"),
                       "Runs the estate; nested in Syncplane Admins")
    group("Syncplane Admins", [*sams("alex.admin"), operations.dn], "Admins of Syncplane; includes IT Operations")
    group("Syncplane Viewers", sams("vera.viewer", "zoe.odegard", "kim.lee", "user0003"), "Read-only Syncplane")
    group("Finance", [e.dn for e in data.users if "Finance" in e.attributes["department"]][:50])
    group("All Staff", [e.dn for e in data.users], "Everyone; more members than one AD range (1,500)")
    group("Empty Group", [], "No members yet")

    for index in range(computers):
        server = index % 4 == 3
        name = f"SRV-{index + 1:03d}" if server else f"WS-{index + 1:04d}"
        os_name, version = ("Windows Server 2022 Datacenter", "10.0 (20348)") if server else \
            ("Windows 11 Enterprise", "10.0 (22631)")
        if index == 5:
            os_name, version = "Ubuntu", "22.04"  # joined through sssd/realmd: a Linux server
        rid += 1
        logon = 0 if index == 1 else filetime(dt.datetime(2025, 4, 28, 8, index % 60, tzinfo=dt.UTC))
        data.computers.append(add(f"cn={name},{COMPUTERS}", {
            "objectClass": ["top", "user", "computer"],
            "objectCategory": ["computer"],
            "cn": [name],
            "sAMAccountName": [f"{name}$"],
            "dNSHostName": [f"{name.lower()}.{DOMAIN}"],
            "operatingSystem": [os_name],
            "operatingSystemVersion": [version],
            "userAccountControl": [UAC_SERVER if server and index == 3 else UAC_WORKSTATION],
            "sAMAccountType": [805306369],
            "primaryGroupID": [515],
            "objectSid": [sid_bytes(rid)],
            # One computer never logged on (0), one has no value at all: both mean "never seen".
            "lastLogonTimestamp": None if index == 2 else [logon],
        }))
    data.highest_usn = usn
    return data


def _ldif_value(name: str, value) -> str:
    if isinstance(value, bytes):
        return f"{name}:: {base64.b64encode(value).decode()}"
    text = str(value)
    safe = text.isascii() and text.isprintable() and not text.startswith((" ", ":", "<")) and not text.endswith(" ")
    if safe:
        return f"{name}: {text}"
    return f"{name}:: {base64.b64encode(text.encode()).decode()}"


def to_ldif(data: DirectoryData) -> str:
    parts = [
        "\n".join([_ldif_value("dn", SUFFIX), "objectClass: top", "objectClass: dcObject",
                   "objectClass: organization", "dc: ad", "o: AD Example"]),
        *("\n".join([_ldif_value("dn", f"ou={ou},{SUFFIX}"), "objectClass: top", "objectClass: organizationalUnit",
                     _ldif_value("ou", ou)]) for ou in ("People", "Groups", "Computers", "Service Accounts")),
        "\n".join([_ldif_value("dn", SERVICE_DN), "objectClass: top", "objectClass: person",
                   "cn: svc-syncplane", "sn: svc-syncplane", _ldif_value("userPassword", SERVICE_PASSWORD),
                   "description: Read-only service account of Syncplane"]),
    ]
    for entry in data.entries:
        lines = [_ldif_value("dn", entry.dn)]
        for name, values in entry.attributes.items():
            lines.extend(_ldif_value(name, value) for value in values)
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


# --- TLS ------------------------------------------------------------------------------------------------------

def write_certificates(folder: Path, hostnames: tuple[str, ...] = ("localhost", DC_HOSTNAME),
                       addresses: tuple[str, ...] = ("127.0.0.1",)) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate it signs: (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key, ca_cert = make_ca("Syncplane test directory CA")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(h) for h in hostnames] + [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
        ), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


def make_ca(common_name: str):
    """A self-signed CA (key, certificate); also what a test uses as "the wrong CA"."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def write_ca_file(path: Path, common_name: str = "Some other CA") -> Path:
    from cryptography.hazmat.primitives import serialization

    _key, cert = make_ca(common_name)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


# --- the server -----------------------------------------------------------------------------------------------

def slapd_available() -> bool:
    return Path(SLAPD).exists() and Path(SLAPADD).exists() and (SYSTEM_SCHEMA / "core.schema").exists()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SlapdDirectory:
    """One slapd with the AD-like schema and data, on 127.0.0.1, owned by this object."""

    def __init__(self, folder: str | Path | None = None, *, ldap_port: int | None = None,
                 ldaps_port: int | None = None, users: int = 1600, computers: int = 24):
        self._own_folder = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix="syncplane-slapd-"))
        self.ldap_port = ldap_port or free_port()
        self.ldaps_port = ldaps_port or free_port()
        self.users, self.computers = users, computers
        self.data: DirectoryData | None = None
        self.usn = FIRST_USN
        self.process: subprocess.Popen | None = None

    # Addresses and files the connector needs.
    @property
    def ldap_url(self) -> str:
        return f"ldap://127.0.0.1:{self.ldap_port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def ca_file(self) -> Path:
        return self.folder / "tls" / "ca.pem"

    base_dn = SUFFIX
    root_dn = ROOT_DN
    root_password = ROOT_PASSWORD
    service_dn = SERVICE_DN
    service_password = SERVICE_PASSWORD
    user_password = USER_PASSWORD

    # Set-up --------------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Write schema, certificates, slapd.conf and data, and load the data with slapadd (a fresh database)."""
        if not slapd_available():
            raise RuntimeError(f"slapd is not installed ({SLAPD}); apt-get install slapd ldap-utils")
        self.folder.mkdir(parents=True, exist_ok=True)
        db = self.folder / "db"
        shutil.rmtree(db, ignore_errors=True)
        db.mkdir()
        write_certificates(self.folder / "tls")
        (self.folder / "ad.schema").write_text(ad_schema())
        self.data = build_directory(self.users, self.computers)
        self.usn = self.data.highest_usn
        self._write_root_dse()
        (self.folder / "slapd.conf").write_text(self._config())
        (self.folder / "data.ldif").write_text(to_ldif(self.data), encoding="utf-8")
        result = subprocess.run(  # noqa: S603 - fixed argument list, no shell
            [SLAPADD, "-q", "-f", str(self.folder / "slapd.conf"), "-l", str(self.folder / "data.ldif")],
            capture_output=True, text=True, timeout=120, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"slapadd failed ({result.returncode}): {result.stderr.strip()[-2000:]}")

    def _write_root_dse(self) -> None:
        (self.folder / "rootdse.ldif").write_text(
            "dn:\n"
            f"defaultNamingContext: {SUFFIX}\n"
            f"dNSHostName: {DC_HOSTNAME}\n"
            f"highestCommittedUSN: {self.usn}\n"
        )

    def _config(self) -> str:
        f = self.folder
        return "\n".join([
            f"include {SYSTEM_SCHEMA / 'core.schema'}",
            f"include {SYSTEM_SCHEMA / 'cosine.schema'}",
            f"include {SYSTEM_SCHEMA / 'inetorgperson.schema'}",
            f"include {f / 'ad.schema'}",
            f"pidfile {f / 'slapd.pid'}",
            f"modulepath {MODULE_PATH}",
            "moduleload back_mdb",
            f"rootDSE {f / 'rootdse.ldif'}",
            f"TLSCACertificateFile {f / 'tls' / 'ca.pem'}",
            f"TLSCertificateFile {f / 'tls' / 'server.pem'}",
            f"TLSCertificateKeyFile {f / 'tls' / 'server.key'}",
            # AD's MaxPageSize is 1000 as well: an unpaged search is cut at 1000, a paged one is not.
            "sizelimit size.soft=1000 size.hard=1000 size.pr=1000 size.prtotal=unlimited",
            # Anyone may read the root DSE and the schema; the data needs a bind, as on a DC.
            'access to dn.base="" by * read',
            'access to dn.base="cn=Subschema" by * read',
            "database mdb",
            f'suffix "{SUFFIX}"',
            f'rootdn "{ROOT_DN}"',
            f"rootpw {ROOT_PASSWORD}",
            f"directory {f / 'db'}",
            "maxsize 268435456",
            "index objectClass,sAMAccountName,userPrincipalName,objectCategory eq",
            "index uSNChanged eq",
            "access to attrs=userPassword by self write by anonymous auth by * none",
            "access to * by users read by * none",
            "",
        ])

    def command(self) -> list[str]:
        """slapd in the foreground (-d 0: no fork), so whoever starts it owns the process and can stop it."""
        return [SLAPD, "-d", "0", "-f", str(self.folder / "slapd.conf"),
                "-h", f"ldap://127.0.0.1:{self.ldap_port}/ ldaps://127.0.0.1:{self.ldaps_port}/"]

    # Running -------------------------------------------------------------------------------------------------
    def start(self) -> SlapdDirectory:
        if self.data is None:
            self.prepare()
        log = open(self.folder / "slapd.log", "ab")  # noqa: SIM115 - kept open for the process's lifetime
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,  # noqa: S603
                                        stderr=subprocess.STDOUT)
        log.close()
        wait_until_ready(self.ldap_port, self.ldaps_port, process=self.process)
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> SlapdDirectory:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # Changes, as a DC would record them ---------------------------------------------------------------------
    def admin_connection(self):
        import ldap3

        server = ldap3.Server("127.0.0.1", port=self.ldap_port, get_info=ldap3.NONE)
        return ldap3.Connection(server, ROOT_DN, ROOT_PASSWORD, auto_bind=True, raise_exceptions=True)

    @contextlib.contextmanager
    def changes(self):
        """Make changes (each bumps uSNChanged from the counter), then publish the new highestCommittedUSN:
        slapd reads the root DSE file only at start-up, so it is rewritten and slapd restarted."""
        editor = DirectoryEditor(self)
        try:
            yield editor
        finally:
            editor.connection.unbind()
            self._write_root_dse()
            self.restart()

    def next_usn(self) -> int:
        self.usn += 1
        return self.usn

    # Lookups for tests ---------------------------------------------------------------------------------------
    def user(self, sam: str) -> Entry:
        return next(e for e in self.data.users if e.attributes["sAMAccountName"][0] == sam)

    def group(self, cn: str) -> Entry:
        return self.data.groups[cn]


class DirectoryEditor:
    """Modifications as the root DN, each stamping uSNChanged and whenChanged as AD would."""

    def __init__(self, directory: SlapdDirectory):
        self.directory = directory
        self.connection = directory.admin_connection()

    def _stamp(self) -> dict:
        from ldap3 import MODIFY_REPLACE

        now = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S.0Z")
        return {"uSNChanged": [(MODIFY_REPLACE, [self.directory.next_usn()])], "whenChanged": [(MODIFY_REPLACE, [now])]}

    def modify(self, dn: str, changes: dict) -> None:
        self.connection.modify(dn, {**changes, **self._stamp()})

    def set_disabled(self, dn: str, disabled: bool = True) -> None:
        from ldap3 import BASE, MODIFY_REPLACE

        self.connection.search(dn, "(objectClass=*)", BASE, attributes=["userAccountControl"])
        uac = int(self.connection.entries[0].userAccountControl.value)
        uac = uac | UAC_DISABLED if disabled else uac & ~UAC_DISABLED
        self.modify(dn, {"userAccountControl": [(MODIFY_REPLACE, [uac])]})

    def add_member(self, group_dn: str, member_dn: str) -> None:
        from ldap3 import MODIFY_ADD

        self.modify(group_dn, {"member": [(MODIFY_ADD, [member_dn])]})

    def remove_member(self, group_dn: str, member_dn: str) -> None:
        from ldap3 import MODIFY_DELETE

        self.modify(group_dn, {"member": [(MODIFY_DELETE, [member_dn])]})

    def rename_user(self, dn: str, display_name: str) -> None:
        from ldap3 import MODIFY_REPLACE

        self.modify(dn, {"displayName": [(MODIFY_REPLACE, [display_name])]})

    def delete(self, dn: str) -> None:
        """Gone, as a tombstone is to a normal search (no USN to read: only a full sync notices)."""
        self.connection.delete(dn)

    def add_user(self, sam: str, given: str, last: str, *, disabled: bool = False) -> str:
        cn = f"{given} {last}"
        dn = f"cn={rdn_value(cn)},{PEOPLE}"
        usn = self.directory.next_usn()
        self.connection.add(dn, attributes={
            "objectClass": ["top", "user"], "objectCategory": "person", "cn": cn, "sn": last, "givenName": given,
            "displayName": cn, "sAMAccountName": sam, "userPrincipalName": f"{sam}@{DOMAIN}",
            "mail": f"{sam}@example.org", "userAccountControl": UAC_NORMAL | (UAC_DISABLED if disabled else 0),
            "objectGUID": guid_for(dn).bytes_le, "uSNCreated": usn, "uSNChanged": usn, "whenCreated": WHEN,
            "whenChanged": WHEN, "userPassword": USER_PASSWORD,
        })
        return dn


def wait_until_ready(*ports: int, process: subprocess.Popen | None = None, timeout: float = 20) -> None:
    """Until every port accepts a connection; a slapd that exits on the way is reported with its log."""
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"slapd exited with {process.returncode} at start-up; see its log")
        try:
            with socket.create_connection(("127.0.0.1", pending[0]), timeout=1):
                pending.pop(0)
                continue
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"slapd did not answer on port {pending[0]} within {timeout:.0f} s")
        time.sleep(0.05)


if __name__ == "__main__":  # a quick look: python -m syncplane_simulators.active_directory
    with SlapdDirectory(users=int(os.environ.get("USERS", "40"))) as directory:
        print(directory.ldap_url, directory.ldaps_url, directory.ca_file)
        input("slapd is running; Enter stops it ")
