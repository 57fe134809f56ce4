from django.core.management.base import BaseCommand, CommandError

from syncplane.simulators.server import serve_forever


class Command(BaseCommand):
    help = (
        "Serve the external-API simulators (ServiceNow, Vault, ...) over HTTP, each under its own path prefix, "
        "until Ctrl-C or SIGTERM."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8900, help="TCP port, 0 = any free port (default 8900)")
        parser.add_argument("--records", type=int, default=2000, help="generated CMDB records (default 2000)")
        parser.add_argument("--seed", type=int, default=42, help="seed of the generated data (default 42)")
        parser.add_argument("--cache-records", type=int, default=20_000,
                            help="encoded records kept to answer repeated reads fast (default 20000)")
        parser.add_argument("--log-requests", action="store_true", help="log every request (off by default)")
        parser.add_argument("--overlap", type=float, default=0.6,
                            help="share of Jira / Freshservice devices that ServiceNow has too (default 0.6)")

    def handle(self, *args, host, port, records, seed, cache_records, log_requests, overlap, **options):
        if not 0 <= overlap <= 1:
            raise CommandError("--overlap must be between 0 and 1")
        if records < 0:
            raise CommandError("--records must be >= 0")
        if not 0 <= port <= 65535:
            raise CommandError("--port must be between 0 and 65535")
        try:
            serve_forever(port=port, records=records, seed=seed, host=host, cache_records=cache_records,
                          log_requests=log_requests, overlap=overlap)
        except OSError as exc:  # typically: address already in use
            raise CommandError(f"cannot serve on {host}:{port}: {exc}") from exc
