"""`syncplane bench mdm --records N`: Apple Business Manager (API account) into an inventory that already holds
N CMDB assets, measured against a ServiceNow full sync in the same run (docs/performance.md).

Each size runs on a simulator process of its own (ServiceNow and Apple with the same N, 60% of Apple's devices
carrying serials ServiceNow has, some in another case): a ServiceNow full sync of N, then an ABM full sync of N
(every device created or merged into its CMDB asset, with its MDM server), then the peak Python memory
(tracemalloc) of an ABM full sync on a second integration of the same account. The same at N/10, on another
seed, for the memory ratio. The API account's key pair is generated here and only its public half is given to
the simulator; the private key lives in this process as an encrypted reference.
"""

from __future__ import annotations

import os
import platform
import time
import tracemalloc

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from syncplane.devtools.management.commands.bench import PAGE_SIZE, simulator
from syncplane.integrations.choices import AuthType, RunStatus, SystemType
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.models import ExternalSystem
from syncplane.integrations.secrets import to_reference
from syncplane.inventory.models import AssetSource

MDM_TARGETS = {
    "ABM per device / ServiceNow per record": (1.5, "max"),
    "peak memory N / N/10": (1.3, "max"),
}
CLIENT_ID = "BUSINESSAPI.00000000-bench-4000-8000-000000000000"
KEY_ID = "bench-key"


def generated_key() -> tuple[str, str]:
    """(private PEM, public PEM) of a fresh P-256 key: the API account of this run only."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


class MdmBench:
    def __init__(self, stdout, records: int):
        self.stdout = stdout
        self.records = records
        self.count = 0
        self.private_key, self.public_key = generated_key()

    def say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def servicenow(self, url: str) -> ExternalSystem:
        self.count += 1
        return ExternalSystem.objects.create(
            name=f"bench servicenow {self.count}", system_type=SystemType.SERVICENOW_CMDB, category="cmdb",
            base_url=f"{url}/servicenow", auth_type=AuthType.BASIC,
            credentials={"username": "syncplane.integration", "password": to_reference("demo-password")},
            config={"page_size": PAGE_SIZE, "rate_limit_per_second": 1000},
        )

    def apple(self, url: str) -> ExternalSystem:
        self.count += 1
        httpx.post(f"{url}/apple/_control/keys", json={"client_id": CLIENT_ID, "key_id": KEY_ID,
                                                       "public_key": self.public_key}, timeout=30).raise_for_status()
        return ExternalSystem.objects.create(
            name=f"bench apple {self.count}", system_type=SystemType.APPLE_BUSINESS_MANAGER, category="mdm",
            base_url=f"{url}/apple/v1", auth_type=AuthType.OAUTH2_CLIENT_ASSERTION,
            credentials={"client_id": CLIENT_ID, "key_id": KEY_ID, "private_key": to_reference(self.private_key)},
            config={"token_url": f"{url}/apple/auth/oauth2/token", "page_size": 1000, "rate_limit_per_second": 1000},
        )

    def timed(self, system: ExternalSystem, label: str, *, trace: bool = False) -> tuple[float, float, object]:
        """(seconds, peak MiB or 0, log) of a full sync."""
        if trace:
            tracemalloc.start()
        try:
            started = time.perf_counter()
            log = run_sync(start_sync(system).pk)
            seconds = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else 0.0
        finally:
            if trace:
                tracemalloc.stop()
        if log.status != RunStatus.SUCCESS:
            raise CommandError(f"{label}: sync ended {log.status}: {log.error_summary}")
        self.say(f"  {label:<34} {seconds:8.2f} s  (read {log.records_read}, created {log.records_created}, "
                 f"updated {log.records_updated})" + (f"  peak {peak:.1f} MiB" if trace else ""))
        return seconds, peak, log

    def size(self, url: str, n: int, label: str) -> dict:
        cmdb = self.servicenow(url)
        cmdb_seconds, _, cmdb_log = self.timed(cmdb, f"ServiceNow full sync, {label}")
        apple = self.apple(url)
        abm_seconds, _, abm_log = self.timed(apple, f"ABM full sync, {label}")
        # ABM sources on an asset that a ServiceNow source holds too (an IN list: SQLite would join 2N x 2N).
        cmdb_assets = AssetSource.objects.filter(external_system=cmdb).values("asset_id")
        shared = AssetSource.objects.filter(external_system=apple, asset_id__in=cmdb_assets).count()
        self.say(f"  {'ABM devices joined to a CMDB asset':<34} {shared:8,} of {abm_log.records_read:,}")
        _, peak, _ = self.timed(self.apple(url), f"ABM memory run, {label}", trace=True)
        return {"cmdb_seconds": cmdb_seconds, "cmdb_records": cmdb_log.records_read, "abm_seconds": abm_seconds,
                "abm_records": abm_log.records_read, "shared": shared, "peak": peak}

    def run(self, big: str, small: str) -> dict:
        n = self.records
        self.say(f"Benchmark: Apple Business Manager (API), N = {n:,} devices over an inventory of N ServiceNow "
                 f"assets, 60% of the serials shared, {connection.vendor}")
        at_n = self.size(big, n, "N")
        at_small = self.size(small, n // 10, "N/10")
        per_cmdb = at_n["cmdb_seconds"] / at_n["cmdb_records"]
        per_abm = at_n["abm_seconds"] / at_n["abm_records"]
        return {
            "records": n,
            "database": connection.vendor,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}",
            "date": timezone.now().date().isoformat(),
            "seconds": {"ServiceNow full N": round(at_n["cmdb_seconds"], 3),
                        "ABM full N": round(at_n["abm_seconds"], 3),
                        "ABM full N/10": round(at_small["abm_seconds"], 3)},
            "microseconds_per_record": {"ServiceNow": round(per_cmdb * 1e6, 1), "ABM": round(per_abm * 1e6, 1)},
            "shared_serials": {"N": at_n["shared"], "N/10": at_small["shared"]},
            "peak_memory_mib": {"N": round(at_n["peak"], 1), "N/10": round(at_small["peak"], 1)},
            "ratios": {
                "ABM per device / ServiceNow per record": round(per_abm / per_cmdb, 2),
                "peak memory N / N/10": round(at_n["peak"] / at_small["peak"], 2),
            },
        }


def run_mdm_bench(stdout, records: int) -> dict:
    # Different seeds: the N/10 run's devices never meet the N run's assets.
    with simulator(records, overlap=0.6, seed=11) as big, simulator(records // 10, overlap=0.6, seed=12) as small:
        return MdmBench(stdout, records).run(big, small)
