"""`python -m syncplane_simulators`: serve every simulator on one port, no Django needed.

`syncplane simulate` (the devtools command) is the same, under the project's command.
"""

from __future__ import annotations

import argparse
import sys

from .server import serve_forever


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8900, help="TCP port, 0 = any free port (default 8900)")
    parser.add_argument("--records", type=int, default=2000, help="generated CMDB records (default 2000)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the generated data (default 42)")
    parser.add_argument("--cache-records", type=int, default=20_000,
                        help="encoded records kept to answer repeated reads fast (default 20000)")
    parser.add_argument("--log-requests", action="store_true", help="log every request (off by default)")
    parser.add_argument("--overlap", type=float, default=0.6,
                        help="share of Jira / Freshservice devices that ServiceNow has too (default 0.6)")


def serve(*, host: str, port: int, records: int, seed: int, cache_records: int, log_requests: bool,
          overlap: float) -> None:
    """Check the options, then serve until Ctrl-C; a bad option or a busy port raises ValueError."""
    if not 0 <= overlap <= 1:
        raise ValueError("--overlap must be between 0 and 1")
    if records < 0:
        raise ValueError("--records must be >= 0")
    if not 0 <= port <= 65535:
        raise ValueError("--port must be between 0 and 65535")
    try:
        serve_forever(port=port, records=records, seed=seed, host=host, cache_records=cache_records,
                      log_requests=log_requests, overlap=overlap)
    except OSError as exc:  # typically: address already in use
        raise ValueError(f"cannot serve on {host}:{port}: {exc}") from exc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m syncplane_simulators", description=__doc__.splitlines()[0])
    add_arguments(parser)
    options = parser.parse_args(argv)
    try:
        serve(**vars(options))
    except ValueError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
