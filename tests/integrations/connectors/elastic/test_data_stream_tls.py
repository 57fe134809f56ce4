"""`ca_file`: a cluster whose certificate a private CA signed is reached over verified TLS, and refused without
it. The CA and the server certificate are made at test time."""

import datetime
import ipaddress
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.serving import make_server

from syncplane.integrations.connectors.elastic.data_stream import ElasticConnector
from syncplane.integrations.errors import ConnectFailure
from syncplane_simulators.elastic import DEFAULT_PASSWORD, DEFAULT_USER, ElasticSimulator
from tests.integrations.connectors.sink_events import context, envelope


def _certificate(subject: str, key, issuer_key, issuer: x509.Name | None, *, ca: bool) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
        builder = builder.add_extension(x509.SubjectAlternativeName([loopback]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def tls_cluster(tmp_path):
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Test cluster CA", ca_key, ca_key, None, ca=True)
    server = _certificate("es-test", server_key, ca_key, ca.subject, ca=False)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.key").write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    http = make_server("127.0.0.1", 0, ElasticSimulator(), threaded=True, ssl_context=tls)
    http.daemon_threads = True
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{http.server_port}", str(tmp_path / "ca.pem")
    http.shutdown()
    http.server_close()


def connector(url: str, **config) -> ElasticConnector:
    return ElasticConnector(context(url, {"username": DEFAULT_USER, "password": DEFAULT_PASSWORD}, config,
                                    auth_type="basic"))


def test_the_ca_file_verifies_the_clusters_certificate(tls_cluster):
    url, ca_file = tls_cluster
    with connector(url, ca_file=ca_file) as elastic:
        assert elastic.test_connection().details["version"] == "8.15.3"
        assert elastic.send_events([envelope(1)])[0].outcome == "delivered"


def test_without_the_ca_file_the_handshake_fails_and_nothing_is_sent(tls_cluster):
    url, _ca_file = tls_cluster
    with connector(url) as elastic, pytest.raises(ConnectFailure, match="TLS handshake failed"):
        elastic.test_connection()
