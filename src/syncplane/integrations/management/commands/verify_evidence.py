"""`syncplane verify-evidence`: check every evidence chain and name the first broken link of each.

Exit status 0 when every chain holds, 1 when one is broken, so a cron job or a monitor can run it.
"""

import sys

from django.core.management.base import BaseCommand

from syncplane.integrations.evidence import evidence_checks


class Command(BaseCommand):
    help = (
        "Verify every integration's sync-log hash chain (with the server's evidence keys) and every change's "
        "event log; name the first broken link of each chain; exit 1 when one is broken."
    )

    def handle(self, *args, **options):
        broken = 0
        for name, check in evidence_checks().items():
            chains = links = 0
            for report in check():
                chains += 1
                links += report.links
                if report.broken:
                    broken += 1
                    self.stderr.write(f"BROKEN {report.subject}: {report.broken}")
            self.stdout.write(f"{name}: {chains} chains, {links} links checked")
        if broken:
            self.stderr.write(f"{broken} broken chain(s): the evidence above was changed below the API")
            sys.exit(1)
        self.stdout.write("evidence intact")
