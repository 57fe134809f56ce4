"""`syncplane bench findings --records N`: a generated Trivy report of N vulnerabilities over 10·N listed packages
(hundreds of MB at the default N), streamed from a temporary file by TrivyConnector.parse_report into
findings.ingest.ingest_scan, as an upload is.

Measured in one run, on one database: the parse alone (what every ingest pays to read the file), the first
ingest, the same report again, and the report after 1% of the vulnerabilities changed (an upgrade: new findings,
and the old ones fixed). Ingest times are the write side: the time ingest_scan spends outside the parser's
iterator, so that the ratios between ingests say what the findings app costs; the end-to-end times are printed
next to them. On SQLite each ingest ends with a WAL checkpoint, in its time: each pays for its own writes, not
for the previous one's (a commit that crosses wal_autocheckpoint checkpoints the whole WAL). Peak memory is
traced (tracemalloc) over a whole parse + first ingest of a fresh image, at N and at N/10: the report's size must
not show in it.
"""

from __future__ import annotations

import os
import platform
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from pathlib import Path

from django.db import connection
from django.utils import timezone

from syncplane.devtools.scan_reports import IMAGE, trivy_report, write_report
from syncplane.findings.ingest import ingest_scan
from syncplane.integrations.connectors.scanners.trivy import TrivyConnector

PACKAGES_PER_VULNERABILITY = 10
TARGETS = {  # ratio name -> (limit, "max" or "min")
    "first ingest findings/s": (5000, "min"),
    "re-ingest / first": (0.3, "max"),
    "1% changed / first": (0.1, "max"),
    "peak memory MiB": (100, "max"),
}


def checkpoint() -> None:
    """SQLite: move the WAL into the database file now. Each ingest then pays for its own writes: without it,
    the next ingest whose commit crosses wal_autocheckpoint (settings) pays for the previous one's too."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class TimedRecords:
    """The parser's records, timing what is spent inside it (reading the report), so the rest is the ingest."""

    def __init__(self, records: Iterable):
        self.records = records
        self.seconds = 0.0
        self.cpu_seconds = 0.0

    def __iter__(self) -> Iterator:
        records = iter(self.records)
        while True:
            started, cpu = time.perf_counter(), time.process_time()
            try:
                record = next(records)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - started
                self.cpu_seconds += time.process_time() - cpu
            yield record


class FindingsBench:
    def __init__(self, stdout, records: int):
        self.stdout = stdout
        self.records = records
        self.workdir = Path(tempfile.mkdtemp(prefix="syncplane-bench-findings-"))

    def say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def report(self, name: str, vulnerabilities: int, **options) -> Path:
        path = self.workdir / f"{name}.json"
        started = time.perf_counter()
        with path.open("wb") as out:
            write_report(trivy_report(vulnerabilities, packages=vulnerabilities * PACKAGES_PER_VULNERABILITY,
                                      **options), out)
        self.say(f"  {'generated ' + name:<30} {path.stat().st_size / 2**20:8.1f} MiB in "
                 f"{time.perf_counter() - started:.1f} s")
        return path

    def parse_floor(self, path: Path) -> tuple[float, int]:
        started = time.perf_counter()
        with path.open("rb") as stream:
            count = sum(1 for _ in TrivyConnector.parse_report(stream))
        seconds = time.perf_counter() - started
        self.say(f"  {'parse only (floor)':<30} {seconds:8.2f} s  ({count} records, "
                 f"{path.stat().st_size / 2**20 / seconds:.0f} MiB/s)")
        return seconds, count

    def ingest(self, path: Path, label: str) -> tuple[float, float, object]:
        """(end-to-end seconds, write-side seconds, ScanResult); the write side's CPU time is printed too (on a
        shared machine it moves less than the wall time)."""
        started, cpu = time.perf_counter(), time.process_time()
        with path.open("rb") as stream:
            records = TimedRecords(TrivyConnector.parse_report(stream))
            result = ingest_scan(tool="trivy", records=records, filename=path.name)
        checkpoint()
        total = time.perf_counter() - started
        write = total - records.seconds
        write_cpu = time.process_time() - cpu - records.cpu_seconds
        self.say(f"  {label:<30} {total:8.2f} s, of which ingest {write:6.2f} s (CPU {write_cpu:6.2f} s)  "
                 f"(new {result.new}, still open {result.still_open}, fixed {result.fixed}, total {result.total})")
        return total, write, result

    def peak_memory(self, vulnerabilities: int, label: str) -> float:
        """Traced peak of writing nothing but reading and ingesting a report of a fresh image."""
        path = self.report(f"memory-{vulnerabilities}", vulnerabilities, image=f"{IMAGE}-memory-{vulnerabilities}:1")
        tracemalloc.start()
        try:
            with path.open("rb") as stream:
                ingest_scan(tool="trivy", records=TrivyConnector.parse_report(stream), filename=path.name)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            path.unlink()
        mib = peak / 2**20
        self.say(f"  {label:<30} {mib:8.1f} MiB")
        return mib

    def run(self) -> dict:
        n = self.records
        self.say(f"Benchmark: findings from Trivy reports, {n:,} vulnerabilities over "
                 f"{n * PACKAGES_PER_VULNERABILITY:,} listed packages, {connection.vendor}")
        try:
            first = self.report("first", n)
            changed = self.report("changed-1pct", n, changed=0.01)
            size = first.stat().st_size
            floor, _ = self.parse_floor(first)
            first_total, first_write, result = self.ingest(first, "first ingest")
            again_total, again_write, _ = self.ingest(first, "same report again")
            changed_total, changed_write, _ = self.ingest(changed, "after 1% changed")
            for path in (first, changed):
                path.unlink()
            peak_small = self.peak_memory(max(n // 10, 10), "peak memory at N/10")
            peak_big = self.peak_memory(n, "peak memory at N")
        finally:
            for leftover in self.workdir.glob("*"):
                leftover.unlink()
            self.workdir.rmdir()
        max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.say(f"  {'process max RSS (whole run)':<30} {max_rss:8.1f} MiB")
        findings = result.total
        return {
            "records": n,
            "packages": n * PACKAGES_PER_VULNERABILITY,
            "report_mib": round(size / 2**20, 1),
            "findings": findings,
            "database": connection.vendor,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}",
            "date": timezone.now().date().isoformat(),
            "seconds": {
                "parse only": round(floor, 3),
                "first ingest (end to end)": round(first_total, 3), "first ingest (write side)": round(first_write, 3),
                "re-ingest (end to end)": round(again_total, 3), "re-ingest (write side)": round(again_write, 3),
                "1% changed (end to end)": round(changed_total, 3), "1% changed (write side)": round(changed_write, 3),
            },
            "findings_per_second": {"write side": round(findings / first_write), "end to end": round(
                findings / first_total)},
            "peak_memory_mib": {"N": round(peak_big, 1), "N/10": round(peak_small, 1), "max RSS": round(max_rss, 1)},
            "ratios": {
                "first ingest findings/s": round(findings / first_write),
                "re-ingest / first": round(again_write / first_write, 3),
                "1% changed / first": round(changed_write / first_write, 3),
                "peak memory MiB": round(max(peak_big, peak_small), 1),
            },
        }
