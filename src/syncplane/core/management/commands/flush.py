"""`syncplane flush`, refused while the database holds evidence.

Django's flush empties every table (TRUNCATE on PostgreSQL, which row triggers do not see): it would wipe the
sync logs and change events that are meant to outlive everything. This command overrides it for the whole
project (an app's command wins over Django's own). Only settings that say SYNCPLANE_ALLOW_EVIDENCE_FLUSH (the
test settings: transactional tests end with a flush) let it through, lifting the evidence triggers for the
flush and putting them back after.
"""

from django.conf import settings
from django.core.management.base import CommandError
from django.core.management.commands.flush import Command as DjangoFlush
from django.db import connections

from syncplane.core.triggers import install_all, remove_all, tables_holding_evidence


class Command(DjangoFlush):
    help = DjangoFlush.help + " Refused while the database holds evidence (finished sync logs, change events)."

    def handle(self, **options):
        connection = connections[options["database"]]
        holding = tables_holding_evidence(connection)
        if not holding:
            return super().handle(**options)
        if not getattr(settings, "SYNCPLANE_ALLOW_EVIDENCE_FLUSH", False):
            raise CommandError(
                f"flush refused: the database holds evidence ({', '.join(holding)}), which is kept for good. "
                "To start from nothing, create a new database (a new DATABASE_URL, or a new SYNCPLANE_DATA_DIR "
                "for SQLite) and run `syncplane migrate`."
            )
        remove_all(connection)
        try:
            return super().handle(**options)
        finally:
            install_all(connection)
