"""Serve every simulator on one real HTTP port, each under its own prefix.

Tests start a `SimulatorServer` on an ephemeral port in a background thread; `manage.py simulate` runs
`serve_forever` for a demo. Connectors are pointed at `<url>/servicenow`, `<url>/vault`, ... exactly as at
the real services, so the same client code path (auth, paging, retries) is exercised.
"""

from __future__ import annotations

import signal
import sys
import threading

from werkzeug.serving import WSGIRequestHandler, make_server

from .base import PrefixDispatcher
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
from .vault import DEFAULT_TOKEN, VaultSimulator


class _QuietHandler(WSGIRequestHandler):
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
    ):
        self.host = host
        self.port = port
        self.servicenow = ServiceNowSimulator(records=records, seed=seed, cache_records=cache_records)
        self.vault = VaultSimulator()
        # `overlap`: the share of Jira's and Freshservice's devices that are ServiceNow's too.
        self.jira = JiraAssetsSimulator(records=records, seed=seed, overlap=overlap)
        self.freshservice = FreshserviceSimulator(records=records, seed=seed, overlap=overlap)
        # Entra ID: a directory of people, not a CMDB; its size does not follow `records`. `graph`: keyword
        # arguments for GraphSimulator (users, devices, page_size, domain, ...), as the directory bench sizes it.
        self.graph = GraphSimulator(**{"seed": seed, **(graph or {})})
        self.app = PrefixDispatcher({
            "/servicenow": self.servicenow, "/jira": self.jira, "/freshservice": self.freshservice,
            "/vault": self.vault, "/graph": self.graph, **(extra_apps or {}),
        })
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
        handler = _QuietHandler if self._quiet else WSGIRequestHandler
        self._server = make_server(self.host, self.port, self.app, threaded=True, request_handler=handler)
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
