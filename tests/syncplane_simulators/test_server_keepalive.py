"""The simulators' server keeps connections open (HTTP/1.1), as the vendors' APIs do, without one request's
leftovers spoiling the next, and a stopped server refuses even a client holding a kept-alive connection."""

import socket

import httpx
import pytest

from syncplane_simulators.datadog import DEFAULT_API_KEY
from syncplane_simulators.server import SimulatorServer


def read_answer(stream) -> tuple[int, dict[str, str], bytes]:
    status = int(stream.readline().split()[1])
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, stream.read(int(headers["content-length"]))


def test_many_requests_share_one_connection(simulator):
    with httpx.Client(base_url=f"{simulator.url}/datadog", headers={"DD-API-KEY": DEFAULT_API_KEY}) as client:
        streams = set()
        for number in range(5):
            answer = client.post("/api/v1/events", json={"title": "t", "text": str(number)})
            assert answer.status_code == 202
            assert answer.headers.get("connection") != "close"
            streams.add(id(answer.extensions["network_stream"]))
        assert len(streams) == 1
        assert len(simulator._server.open_connections) == 1


def test_a_body_the_app_did_not_read_does_not_spoil_the_next_request(simulator):
    """Elastic answers 413 from Content-Length alone; its body must not be taken for the next request."""
    body = b'{"padding": "' + b"x" * 5000 + b'"}'
    with socket.create_connection(("127.0.0.1", simulator.port)) as raw:
        stream = raw.makefile("rb")
        raw.sendall(b"POST /nowhere HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        raw.sendall(b"GET /datadog/api/v1/validate HTTP/1.1\r\nHost: sim\r\nDD-API-KEY: "
                    + DEFAULT_API_KEY.encode() + b"\r\n\r\n")
        assert read_answer(stream)[0] == 404
        status, headers, answer = read_answer(stream)
        assert (status, answer) == (200, b'{"valid":true}')
        assert "connection" not in headers


def test_a_client_asking_to_close_gets_its_answer_then_the_close(simulator):
    with socket.create_connection(("127.0.0.1", simulator.port)) as raw:
        stream = raw.makefile("rb")
        raw.sendall(b"GET / HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n")
        status, headers, body = read_answer(stream)
        assert (status, headers["connection"]) == (200, "close") and b"datadog" in body
        assert stream.read() == b""  # closed


def test_a_stopped_server_drops_kept_alive_connections():
    server = SimulatorServer(records=10).start()
    client = httpx.Client(base_url=server.url)
    try:
        assert client.get("/").status_code == 200
        server.stop()
        with pytest.raises(httpx.TransportError):
            client.get("/")
    finally:
        client.close()
        server.stop()
