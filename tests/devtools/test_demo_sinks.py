"""The demo's three monitoring sinks: pointed at the simulators, able to connect, and named in the banner with
the address where each simulator shows what it received."""

import httpx

from syncplane.devtools.management.commands.demo import DEMO_INTEGRATIONS, DEMO_SINKS, Command
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.outbox import deliver_sink_events
from syncplane.integrations.registry import build_connector


def test_the_demo_sinks_connect_receive_the_first_sync_and_are_in_the_banner(simulator, db):
    command = Command()
    sinks = [command._integration(spec, simulator.url) for spec in DEMO_SINKS]
    cmdb = command._integration(DEMO_INTEGRATIONS[0], simulator.url)
    for system in sinks:
        with build_connector(system) as connector:
            assert connector.test_connection().ok, system.name
    log = run_sync(start_sync(cmdb).pk)
    for system in sinks:
        deliver_sink_events(system.pk)
        received = httpx.get(f"{system.base_url}/_control/received").json()
        assert received["count"] == 1, system.name
    text = command.banner(8000, simulator.url, "admin", "pw", [(cmdb, log)], None, sinks)
    for system in sinks:
        assert f"{simulator.url}/{system.base_url.rsplit('/', 1)[1]}/_control/received" in text
