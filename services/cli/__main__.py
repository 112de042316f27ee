"""`cohortflow` / `python -m services.cli`: run a command; every failure is one line.

Exit codes: 0 ok, 1 failure (the line on stderr says why), 2 usage error.
Set COHORTFLOW_DEBUG=1 to see a traceback for an unexpected error.
"""

from __future__ import annotations

import os
import sys

from services.cli.client import CliError
from services.cli.output import error


def main() -> None:
    from services.admin.commands import register
    from services.cli.app import app
    from services.common.logging import configure_logging

    register(app)  # the composition root: the client commands and the operator ones

    # Library and projector code log through structlog: only warnings, on stderr.
    configure_logging(os.environ.get("LOG_LEVEL", "WARNING"), "console")
    try:
        app(prog_name="cohortflow")
    except CliError as failure:
        error(str(failure))
        sys.exit(1)
    except KeyboardInterrupt:
        error("interrupted")
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (`cohortflow timeline u | head`): nothing left to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except Exception as unexpected:
        if os.environ.get("COHORTFLOW_DEBUG"):
            raise
        error(
            f"unexpected {type(unexpected).__name__}: {unexpected}"
            " (COHORTFLOW_DEBUG=1 shows a traceback)"
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
