from django.core.management.base import BaseCommand, CommandError

from syncplane_simulators.__main__ import add_arguments, serve


class Command(BaseCommand):
    help = (
        "Serve the external-API simulators (ServiceNow, Vault, ...) over HTTP, each under its own path prefix, "
        "until Ctrl-C or SIGTERM."
    )

    def add_arguments(self, parser):
        add_arguments(parser)

    def handle(self, *args, host, port, records, seed, cache_records, log_requests, overlap, **options):
        try:
            serve(host=host, port=port, records=records, seed=seed, cache_records=cache_records,
                  log_requests=log_requests, overlap=overlap)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
