"""Serve every simulator on one real HTTP port, each under its own prefix.

Tests start a `SimulatorServer` on an ephemeral port in a background thread; `manage.py simulate` runs
`serve_forever` for a demo. Connectors are pointed at `<url>/servicenow`, `<url>/vault`, ... exactly as at
the real services, so the same client code path (auth, paging, retries) is exercised.
"""

from __future__ import annotations

import io
import signal
import socket
import sys
import threading
import traceback

from werkzeug.serving import WSGIRequestHandler, make_server

from .android_enterprise import DEFAULT_ENTERPRISE as ANDROID_ENTERPRISE
from .android_enterprise import AndroidManagementSimulator
from .apple_business_manager import DEP_ACCESS_TOKEN, DEP_CONSUMER_KEY, AppleBusinessSimulator
from .base import PrefixDispatcher
from .datadog import DEFAULT_API_KEY as DATADOG_API_KEY
from .datadog import DatadogSimulator
from .defender_endpoint import DEFAULT_CLIENT_ID as DEFENDER_CLIENT_ID
from .defender_endpoint import DEFAULT_CLIENT_SECRET as DEFENDER_CLIENT_SECRET
from .defender_endpoint import DEFAULT_TENANT as DEFENDER_TENANT
from .defender_endpoint import DefenderSimulator
from .elastic import DEFAULT_ENCODED_KEY as ELASTIC_ENCODED_KEY
from .elastic import DEFAULT_PASSWORD as ELASTIC_PASSWORD
from .elastic import DEFAULT_USER as ELASTIC_USER
from .elastic import ElasticSimulator
from .entra_id import DEFAULT_CLIENT_ID as GRAPH_CLIENT_ID
from .entra_id import DEFAULT_CLIENT_SECRET as GRAPH_CLIENT_SECRET
from .entra_id import DEFAULT_TENANT as GRAPH_TENANT
from .entra_id import GraphSimulator
from .freshservice_cmdb import DEFAULT_API_KEY as FRESHSERVICE_API_KEY
from .freshservice_cmdb import FreshserviceSimulator
from .jira_assets import DEFAULT_API_TOKEN, DEFAULT_EMAIL, DEFAULT_PAT, JiraAssetsSimulator
from .servicenow_cmdb import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    ServiceNowSimulator,
)
from .splunk_hec import ACK_TOKEN as SPLUNK_ACK_TOKEN
from .splunk_hec import DEFAULT_TOKEN as SPLUNK_TOKEN
from .splunk_hec import SplunkHecSimulator
from .vault import DEFAULT_TOKEN, VaultSimulator

HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


class KeepAliveHandler(WSGIRequestHandler):
    """HTTP/1.1 with persistent connections, as the vendors' APIs keep them.

    werkzeug's development server closes every connection after one answer, so a client sending one request
    per event (Datadog's events API) would pay a TCP connect each time and measure the server, not itself.
    Here the request body is read in full before the app runs, and the answer goes out with its length, so the
    next request on the connection starts where it should whatever the app read (Elastic answers 413 from the
    Content-Length alone).
    """

    protocol_version = "HTTP/1.1"
    # On a kept-alive connection Nagle's algorithm would hold a small answer until the client's delayed ACK
    # (40 ms on Linux), capping each connection at about 25 answers a second.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.server.open_connections.add(self.connection)

    def finish(self) -> None:
        self.server.open_connections.discard(self.connection)
        super().finish()

    def run_wsgi(self) -> None:
        if self.headers.get("Expect", "").lower().strip() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        environ = self.environ = self.make_environ()
        try:
            body = self._request_body(environ)
        except ValueError:
            self.close_connection = True
            self.send_error(400, "Bad request body length")
            return
        environ.update({"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))})
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ.pop("wsgi.input_terminated", None)
        status, headers, content = self._call_app(environ)
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        bodiless = self.command == "HEAD" or int(code) < 200 or int(code) in (204, 304)
        if not bodiless:
            self.send_header("Content-Length", str(len(content)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not bodiless:
            self.wfile.write(content)
        self.wfile.flush()

    def _request_body(self, environ: dict) -> bytes:
        if "wsgi.input_terminated" in environ:  # chunked: werkzeug's reader stops at the last chunk
            return environ["wsgi.input"].read()
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length) if length else b""

    def _call_app(self, environ: dict) -> tuple[str, list[tuple[str, str]], bytes]:
        """The app's status, headers and whole body; a crash is a 500, its traceback in the server's log."""
        started: list = []
        written: list[bytes] = []

        def start_response(status, headers, exc_info=None):
            started[:] = [status, headers]
            return written.append

        try:
            result = self.server.app(environ, start_response)
            try:
                content = b"".join([*written, *result])
            finally:
                if hasattr(result, "close"):
                    result.close()
        except Exception:
            self.log_error("Error on request:\n%s", traceback.format_exc())
            return "500 Internal Server Error", [("Content-Type", "text/plain")], b"Internal Server Error"
        return started[0], started[1], content


class _QuietHandler(KeepAliveHandler):
    """Tests make thousands of requests; one log line each would drown the output."""

    def log_request(self, *args, **kwargs) -> None:
        pass


class SimulatorServer:
    """All simulators behind one threaded werkzeug server.

    >>> with SimulatorServer(records=500) as sim:
    ...     sim.servicenow.touch(count=3)
    ...     base_url = sim.url + "/servicenow"
    """

    def __init__(
        self,
        records: int = 2000,
        seed: int = 42,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        quiet: bool = True,
        cache_records: int = 20_000,
        extra_apps: dict | None = None,
        overlap: float = 0.6,
        graph: dict | None = None,
        apple: dict | None = None,
    ):
        self.host = host
        self.port = port
        self.servicenow = ServiceNowSimulator(records=records, seed=seed, cache_records=cache_records)
        self.vault = VaultSimulator()
        # `overlap`: the share of Jira's and Freshservice's devices that are ServiceNow's too.
        self.jira = JiraAssetsSimulator(records=records, seed=seed, overlap=overlap, cache_records=cache_records)
        self.freshservice = FreshserviceSimulator(records=records, seed=seed, overlap=overlap)
        # Entra ID: a directory of people, not a CMDB; its size does not follow `records`. `graph`: keyword
        # arguments for GraphSimulator (users, devices, page_size, domain, ...), as the directory bench sizes it.
        self.graph = GraphSimulator(**{"seed": seed, **(graph or {})})
        # Defender for Endpoint: the Entra devices' machines (same aadDeviceId) and servers of the shared fleet.
        self.defender = DefenderSimulator(seed=seed, entra_devices=self.graph.devices.values())
        # Android Enterprise: an enterprise's phones; a few company ones carry serials of the fleet's tablets.
        self.android = AndroidManagementSimulator(seed=seed)
        # Apple Business Manager: `records` devices, the first `overlap` share of them the fleet's (same serials as
        # ServiceNow's, in lower case now and then). `apple`: keyword arguments (keys, token_lifetime, ...).
        self.apple = AppleBusinessSimulator(**{"records": records, "seed": seed, "overlap": overlap, **(apple or {})})
        self.app = PrefixDispatcher({
            "/android": self.android,
            "/servicenow": self.servicenow, "/jira": self.jira, "/freshservice": self.freshservice,
            "/vault": self.vault, "/graph": self.graph, "/defender": self.defender, **(extra_apps or {}),
        })
        # Monitoring sinks: they read nothing, they keep what they were sent (GET <prefix>/_control/received).
        self.datadog, self.splunk, self.elastic = DatadogSimulator(), SplunkHecSimulator(), ElasticSimulator()
        self.app.mounts.update({"/datadog": self.datadog, "/splunk": self.splunk, "/elastic": self.elastic})
        self.app.mounts["/apple"] = self.apple
        self._quiet = quiet
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("SimulatorServer is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def urls(self) -> dict[str, str]:
        """Base URL a connector should use, per simulator."""
        return {prefix.strip("/"): self.url + prefix for prefix in self.app.mounts}

    def start(self) -> SimulatorServer:
        if self._server is not None:
            return self
        handler = _QuietHandler if self._quiet else KeepAliveHandler
        self._server = make_server(self.host, self.port, self.app, threaded=True, request_handler=handler)
        self._server.open_connections = set()  # kept-alive connections, closed by stop()
        # Request threads must not keep the process alive after stop(), e.g. one sleeping in a "slow" fault.
        self._server.daemon_threads = True
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="simulators", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        # A stopped simulator must refuse clients, even one holding a kept-alive connection.
        for connection in list(self._server.open_connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def banner(server: SimulatorServer) -> str:
    lines = [f"Simulators listening on {server.url}"]
    lines += [f"  {name:<11} {url}" for name, url in server.urls.items()]
    lines += [
        "",
        "ServiceNow  (table cmdb_ci_computer, "
        f"{server.servicenow.base_records} records, seed {server.servicenow.seed})",
        f"  basic auth      {DEFAULT_USERNAME} / {DEFAULT_PASSWORD}",
        f"  OAuth client    {DEFAULT_CLIENT_ID} / {DEFAULT_CLIENT_SECRET}  (POST /servicenow/oauth_token.do)",
        f"  control         {server.url}/servicenow/_control/{{faults,touch,delete,add,hidden,reset,state}}",
        "ServiceNow ITSM (same instance: change_request, sysapproval_approver, sys_user_group 'CAB', same auth)",
        f"  CAB control     POST {server.url}/servicenow/_control/changes/<sys_id or number>/"
        "{approve,reject,implement,close,cancel}",
        f"                  POST {server.url}/servicenow/_control/cab {{auto_approve_seconds}}; "
        "webhook {url, secret}; GET webhooks",
        f"Jira Assets (site {server.url}/jira, {server.jira.base_records} objects, 60% shared with ServiceNow)",
        f"  cloud basic     {DEFAULT_EMAIL} / {DEFAULT_API_TOKEN}",
        f"  data center PAT {DEFAULT_PAT}",
        f"  control         {server.url}/jira/_control/{{faults,touch,delete,reset,state,config}}",
        f"Jira Service Management (same site {server.url}/jira, project ITSM, issue type Change, same credentials)",
        f"  CAB control     POST {server.url}/jira/_control/changes/<issue id>/"
        "{approve,reject,implement,close,cancel}",
        f"                  POST {server.url}/jira/_control/cab {{auto_approve_seconds}}; "
        "webhook {url, secret}; GET webhooks",
        f"Freshservice ({server.url}/freshservice, {server.freshservice.base_records} assets, "
        "60% shared with ServiceNow)",
        f"  API key         {FRESHSERVICE_API_KEY} (password X)",
        f"  control         {server.url}/freshservice/_control/{{faults,touch,delete,add,reset,state,config}}",
        f"Freshservice ITSM (same account {server.url}/freshservice, /api/v2/changes, same API key; "
        "custom field syncplane_correlation_id)",
        f"  CAB control     POST {server.url}/freshservice/_control/changes/<id>/"
        "{request-approval,approve,reject,implement,close,cancel}",
        f"                  POST {server.url}/freshservice/_control/cab {{auto_approve_seconds}}; "
        "webhook {url, secret}; GET webhooks",
        f"Entra ID / Graph ({server.url}/graph/v1.0, {server.graph.user_count} users, "
        f"{server.graph.device_count} devices)",
        f"  authority       {server.url}/graph/login  tenant {GRAPH_TENANT}",
        f"  client          {GRAPH_CLIENT_ID} / {GRAPH_CLIENT_SECRET}",
        f"  control         {server.url}/graph/_control/{{faults,users/*,groups/*,devices/remove,expire-tokens,"
        "reset,state}",
        f"Defender for Endpoint ({server.url}/defender, {len(server.defender.machines)} machines)",
        f"  authority       {server.url}/defender/login  tenant {DEFENDER_TENANT}  (v2.0 and v1 token endpoints)",
        f"  client          {DEFENDER_CLIENT_ID} / {DEFENDER_CLIENT_SECRET}",
        f"  control         {server.url}/defender/_control/{{faults,fix,add,update,machines/remove,revoke,"
        "expire-tokens,reset,state}",
        f"Android Management API ({server.url}/android/v1, enterprise {ANDROID_ENTERPRISE}, "
        f"{len(server.android.devices)} devices)",
        f"  token endpoint  {server.url}/android/token  (a key's token_uri; register its public key first)",
        f"  control         {server.url}/android/_control/{{faults,service-accounts,service-accounts/revoke,"
        "devices/remove,devices/update,expire-tokens,config,reset,state}",
        f"Datadog ({server.url}/datadog: events v1, series v2)  DD-API-KEY {DATADOG_API_KEY}",
        f"  received        GET {server.url}/datadog/_control/received  (and /series); control faults, reset",
        f"Splunk HEC ({server.url}/splunk, indexes main, itgov)  Authorization: Splunk {SPLUNK_TOKEN}",
        f"  ack token       {SPLUNK_ACK_TOKEN}  (indexer acknowledgement on: send X-Splunk-Request-Channel)",
        f"  received        GET {server.url}/splunk/_control/received; control faults, tokens, ack, reset",
        f"Elastic ({server.url}/elastic, data streams logs-*-*)  ApiKey {ELASTIC_ENCODED_KEY}",
        f"  basic           {ELASTIC_USER} / {ELASTIC_PASSWORD}",
        f"  received        GET {server.url}/elastic/_control/received; control faults, item-faults, config, "
        "api-keys, documents, reset",
        f"Apple Business Manager ({server.url}/apple/v1, {server.apple.device_count} devices; token endpoint "
        f"{server.url}/apple/auth/oauth2/token)",
        f"  API account     register the public key of a generated P-256 key: POST {server.url}/apple/_control/keys "
        "{client_id, key_id, public_key}",
        f"  legacy DEP      {server.url}/apple/dep, server token consumer key {DEP_CONSUMER_KEY}, access token "
        f"{DEP_ACCESS_TOKEN} (secrets in apple_business_manager.py)",
        f"  control         {server.url}/apple/_control/{{faults,keys,keys/revoke,touch,release,add,expire-tokens,"
        "expire-sessions,expire-cursors,config,reset,state}",
        "Vault (KV v2, mount 'secret')",
        f"  token           {DEFAULT_TOKEN}",
        f"  control         POST {server.url}/vault/_control/secrets  {{path, data, mount}}",
    ]
    return "\n".join(lines)


def serve_forever(
    port: int = 8900, records: int = 2000, seed: int = 42, host: str = "127.0.0.1", cache_records: int = 20_000,
    log_requests: bool = False, overlap: float = 0.6, graph: dict | None = None,
) -> None:
    """Run until SIGINT (Ctrl-C) or SIGTERM, then shut down cleanly."""
    server = SimulatorServer(
        records=records, seed=seed, host=host, port=port, quiet=not log_requests, cache_records=cache_records,
        overlap=overlap, graph=graph,
    ).start()
    stopping = threading.Event()

    def request_stop(signum, frame) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(banner(server), flush=True)
        while not stopping.wait(0.5):
            pass
        print("Stopping simulators...", file=sys.stderr, flush=True)
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
