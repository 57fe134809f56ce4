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
