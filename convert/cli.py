"""What every command line of the project shares: run the parsed subcommand and turn a user's mistake (a bad
argument, a missing or damaged file, an unavailable device) into one line on stderr and exit status 2,
without a traceback."""

from __future__ import annotations

import argparse
import sys

# SpecError and DatasetError are ValueErrors; FileNotFoundError is an OSError
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)


def run_command(
    parser: argparse.ArgumentParser,
    argv: list[str] | None = None,
    extra_errors: tuple[type[BaseException], ...] = (),
) -> int:
    """Parse ``argv`` and call the chosen subcommand's ``func(args)``; user errors (and ``extra_errors``, such
    as a simulator's "device unavailable") exit with status 2."""
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS + extra_errors as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
