"""The outbound URL policy. Host names resolve through a fake DNS so the tests need no network."""

import socket

import pytest

from syncplane.integrations import urls_policy
from syncplane.integrations.errors import ConfigurationError, PolicyViolation
from syncplane.integrations.urls_policy import check_outbound_url

DNS = {
    "sn.example.com": ["203.0.113.10"],  # documentation range, treated as public in the fake
    "dual.example.com": ["198.51.100.7", "2001:db8::7"],
    "rebind.example.com": ["198.51.100.7", "169.254.169.254"],
    "internal.example.com": ["198.51.100.7", "10.1.2.3"],
    "imds6.example.com": ["fd00:ec2::254"],
}


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch):
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in DNS:
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in DNS[host]
            ]
        if host.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, port, *args, **kwargs)  # IP literals resolve locally, no network

    monkeypatch.setattr(urls_policy.socket, "getaddrinfo", getaddrinfo)
    # 203.0.113.0/24 and 198.51.100.0/24 are documentation ranges; count them as public here.
    real_internal = urls_policy._internal
    monkeypatch.setattr(
        urls_policy,
        "_internal",
        lambda a: (
            False if str(a).startswith(("203.0.113.", "198.51.100.", "2001:db8:")) else real_internal(a)
        ),
    )


def test_https_public_host_is_allowed():
    check_outbound_url("https://sn.example.com/api/now/table/cmdb_ci", allow_insecure=False)
    check_outbound_url("https://dual.example.com:8443", allow_insecure=False)


def test_https_is_required_without_insecure():
    with pytest.raises(PolicyViolation, match="plain http is not allowed"):
        check_outbound_url("http://sn.example.com/", allow_insecure=False)
    check_outbound_url("http://sn.example.com/", allow_insecure=True)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://sn.example.com/x", "gopher://sn.example.com/"])
def test_other_schemes_are_never_allowed(url):
    for insecure in (False, True):
        with pytest.raises(PolicyViolation, match="scheme"):
            check_outbound_url(url, allow_insecure=insecure)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "https://169.254.169.254/",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
        "http://169.254.10.1/",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.google.internal./",
        "https://rebind.example.com/",
        "https://imds6.example.com/",
    ],
)
def test_metadata_and_link_local_are_refused_even_when_insecure(url):
    with pytest.raises(PolicyViolation):
        check_outbound_url(url, allow_insecure=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/",
        "http://localhost:8000/",
        "http://2130706433/",  # 127.0.0.1 as one integer
        "http://10.0.0.5/",
        "http://192.168.1.10/",
        "http://172.16.0.1/",
        "http://[fc00::1]/",
        "http://[::1]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "https://internal.example.com/",
    ],
)
def test_internal_addresses_need_insecure(url):
    with pytest.raises(PolicyViolation, match="loopback, private or reserved"):
        check_outbound_url(url.replace("http://", "https://"), allow_insecure=False)
    check_outbound_url(url, allow_insecure=True)


def test_userinfo_is_refused_without_echoing_it():
    with pytest.raises(PolicyViolation) as caught:
        check_outbound_url("https://admin:hunter2@sn.example.com/", allow_insecure=True)
    assert "hunter2" not in str(caught.value)
    assert "secret references" in str(caught.value)


@pytest.mark.parametrize("url", ["https:///path", "https://", "", "https://:443/"])
def test_a_host_is_required(url):
    with pytest.raises(PolicyViolation):
        check_outbound_url(url, allow_insecure=True)


def test_bad_port_is_refused():
    with pytest.raises(PolicyViolation, match="cannot be parsed"):
        check_outbound_url("https://sn.example.com:99999/", allow_insecure=False)


def test_unresolvable_host_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="cannot resolve host"):
        check_outbound_url("https://nowhere.invalid/", allow_insecure=False)


def test_default_reads_the_setting(settings):
    settings.SYNCPLANE_ALLOW_INSECURE_OUTBOUND = False
    with pytest.raises(PolicyViolation):
        check_outbound_url("http://127.0.0.1:8000/")
    settings.SYNCPLANE_ALLOW_INSECURE_OUTBOUND = True
    check_outbound_url("http://127.0.0.1:8000/")


def test_a_dns_answer_that_changes_after_the_check_cannot_reach_a_forbidden_address(monkeypatch):
    """DNS rebinding: the name is local (allowed in a lab) when the client is built, the metadata service when
    the connection is opened. The address is checked again at connect time, so nothing is sent there."""
    from syncplane.integrations.http import HttpClient
    from tests.integrations.httpserver import Reply, ScriptedServer

    server = ScriptedServer().start()
    try:
        server.script("/api/ping", Reply(json={"ok": True}), Reply(json={"ok": True}))
        answers = {"rebind-later.example.com": ["127.0.0.1"]}
        real = urls_policy.socket.getaddrinfo

        def getaddrinfo(host, port, *args, **kwargs):
            if host in answers:
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[host]]
            return real(host, port, *args, **kwargs)

        monkeypatch.setattr(urls_policy.socket, "getaddrinfo", getaddrinfo)
        client = HttpClient(f"http://rebind-later.example.com:{server.port}", allow_insecure=True, max_attempts=1)
        assert client.get_json("/api/ping") == {"ok": True}  # a fresh name connects to what it resolves to now
        client.close()
        client = HttpClient(f"http://rebind-later.example.com:{server.port}", allow_insecure=True, max_attempts=1)
        answers["rebind-later.example.com"] = ["169.254.169.254"]
        with pytest.raises(PolicyViolation, match="169.254.169.254"):
            client.get("/api/ping")
        client.close()
        assert len(server.requests) == 1
    finally:
        server.stop()


@pytest.mark.parametrize(
    "url",
    [
        "http://[2002:a9fe:a9fe::]/",  # 6to4 of 169.254.169.254
        "http://[2002:a9fe:0101::1]/",  # 6to4 of 169.254.1.1, link-local
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 (RFC 6052) of the metadata service
        "http://[64:ff9b::169.254.169.254]/",
        "http://[64:ff9b:1::a9fe:a9fe]/",  # local-use NAT64 (RFC 8215)
        "http://[::169.254.169.254]/",  # IPv4-compatible
        "http://[::ffff:100.100.100.200]/",  # IPv4-mapped Alibaba metadata
        "http://[2001:0:4136:e378:8000:63bf:5601:5601]/",  # Teredo whose client is 169.254.169.254 (obfuscated)
    ],
)
def test_ipv6_forms_that_carry_a_forbidden_ipv4_address_are_refused_even_when_insecure(url):
    with pytest.raises(PolicyViolation, match="never allowed"):
        check_outbound_url(url, allow_insecure=True)


@pytest.mark.parametrize("url", ["https://[2002:7f00:1::]/", "https://[64:ff9b::10.0.0.5]/", "https://[::127.0.0.1]/"])
def test_ipv6_forms_that_carry_an_internal_ipv4_address_need_insecure(url):
    with pytest.raises(PolicyViolation, match="loopback, private or reserved"):
        check_outbound_url(url, allow_insecure=False)


def test_a_public_ipv4_address_behind_nat64_is_judged_as_that_address():
    assert urls_policy.embedded_ipv4(urls_policy.ipaddress.ip_address("64:ff9b::8.8.8.8")) == \
        urls_policy.ipaddress.ip_address("8.8.8.8")
    check_outbound_url("https://[64:ff9b::8.8.8.8]/", allow_insecure=False)


@pytest.mark.parametrize(
    ("host", "allowed_private"),
    [("10.1.2.3", True), ("192.168.0.10", True), ("fd12::5", True), ("127.0.0.1", False), ("::1", False),
     ("0.0.0.0", False), ("100.64.0.1", False)],
)
def test_an_ldap_host_may_be_private_but_not_loopback_outside_insecure_mode(host, allowed_private):
    if allowed_private:
        urls_policy.check_outbound_host(host, 636, allow_insecure=False, allow_private=True)
    else:
        with pytest.raises(PolicyViolation, match="loopback, private or reserved"):
            urls_policy.check_outbound_host(host, 636, allow_insecure=False, allow_private=True)
    for forbidden in ("169.254.169.254", "fe80::1", "64:ff9b::a9fe:a9fe"):
        with pytest.raises(PolicyViolation, match="never allowed"):
            urls_policy.check_outbound_host(forbidden, 636, allow_insecure=True, allow_private=True)


def test_url_origin_fills_in_default_ports():
    origin = urls_policy.url_origin
    assert origin("https://SN.example.com/api") == origin("https://sn.example.com:443")
    assert origin("https://sn.example.com") == ("https", "sn.example.com", 443)
    assert origin("ldaps://dc01.ad.example.org") == ("ldaps", "dc01.ad.example.org", 636)
    assert origin("https://sn.example.com:8443") != origin("https://sn.example.com")
    assert origin("") is None and origin("https://sn.example.com:99999") is None


# --- the same policy for LDAP: the Active Directory connector ------------------------------------------------


def test_an_ldap_base_url_is_checked_by_the_policy_when_saved(settings):
    from syncplane.integrations.connectors.active_directory import ActiveDirectoryConnector as AD

    settings.SYNCPLANE_ALLOW_INSECURE_OUTBOUND = False
    for url in ("ldaps://127.0.0.1:636", "ldap://localhost", "ldaps://[::1]", "ldaps://169.254.169.254",
                "ldaps://[2002:a9fe:a9fe::]", "ldaps://metadata.google.internal"):
        with pytest.raises(PolicyViolation):
            AD.check_base_url(url)
    assert AD.check_base_url("ldaps://10.1.2.3") == ("ldaps", "10.1.2.3", 636)  # DCs live on private networks
    settings.SYNCPLANE_ALLOW_INSECURE_OUTBOUND = True
    assert AD.check_base_url("ldap://127.0.0.1:3389") == ("ldap", "127.0.0.1", 3389)
    with pytest.raises(PolicyViolation):
        AD.check_base_url("ldaps://[64:ff9b::a9fe:a9fe]")


def test_the_api_refuses_a_loopback_directory_outside_insecure_mode(api_as, settings):
    settings.SYNCPLANE_ALLOW_INSECURE_OUTBOUND = False
    body = {"name": "AD", "system_type": "active_directory", "base_url": "ldaps://127.0.0.1:636",
            "auth_type": "basic", "credentials": {"username": "svc", "password": "pw"},
            "config": {"base_dn": "DC=ad,DC=example,DC=org"}}
    response = api_as("admin").post("/api/v1/integrations/", body, format="json")
    assert response.status_code == 400
    assert "loopback" in str(response.data["base_url"])


def test_an_ldap_test_connection_does_not_tell_open_ports_from_closed_ones(caplog):
    """Pointed at a closed port, at a port where something else listens (here an SSH-like banner) or at a TLS
    mismatch, the connector gives one answer; the log has the cause for the operator."""
    import threading

    from syncplane.integrations.base import ConnectorContext
    from syncplane.integrations.connectors.active_directory import ActiveDirectoryConnector
    from syncplane.integrations.errors import TransientError
    from syncplane_simulators.active_directory import free_port

    listener = socket.create_server(("127.0.0.1", 0))
    open_port = listener.getsockname()[1]

    def banner():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    threading.Thread(target=banner, daemon=True).start()
    answers = set()
    try:
        for scheme in ("ldaps", "ldap"):
            for port in (free_port(), open_port):
                context = ConnectorContext(
                    base_url=f"{scheme}://127.0.0.1:{port}", auth_type="basic",
                    config={"base_dn": "DC=ad,DC=example,DC=org", "timeout_seconds": 2},
                    credentials={"username": "svc", "password": "env:X"}, resolve_secret=lambda _ref: "pw")
                with pytest.raises(TransientError) as caught, ActiveDirectoryConnector(context) as ad:
                    ad.test_connection()
                answers.add((caught.value.kind, str(caught.value).replace(f"{scheme}://127.0.0.1:{port}", "X")))
    finally:
        listener.close()
    assert len(answers) == 1, answers
    assert "cannot reach the directory at X" in answers.pop()[1]
    assert "no LDAP session with the directory" in caplog.text
