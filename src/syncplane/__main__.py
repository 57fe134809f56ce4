"""The `syncplane` command: Django's manage.py under the project's name."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syncplane.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    # Commands are Python modules (verify_evidence); `syncplane verify-evidence` is how people type them.
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        sys.argv[1] = sys.argv[1].replace("-", "_")
    try:
        execute_from_command_line(sys.argv)
    except KeyboardInterrupt:  # Ctrl-C before a command installed its own handling: no traceback
        sys.exit(130)
    except ImproperlyConfigured as exc:  # a missing or bad setting: what to set, not a traceback
        print(f"syncplane: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
