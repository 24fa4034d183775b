"""What every command line of the project shares: run the parsed subcommand and turn a user's mistake (a bad
argument, a missing or damaged file, an unavailable device) into one line on stderr and exit status 2,
without a traceback, and an interruption (Ctrl-C, SIGINT) into one line and exit status 130, the shell's
convention for a command ended by SIGINT; and the argument types that refuse impossible values at parse time."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

# SpecError and DatasetError are ValueErrors; FileNotFoundError is an OSError
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)

# Every file the project writes is written whole to a temporary name and renamed (convert.contract.provenance),
# and every long job caches each finished part by content, so an interrupted command leaves no partial file behind.
INTERRUPTED = (
    "interrupted: no partial file was written (results are written whole or not at all); "
    "the parts that finished are kept, and the same command resumes from them"
)
EXIT_INTERRUPTED = 130

ALL = "all"


# ------------------------------------------------------------------------------------------ argument types
def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (a count of steps, epochs, images...)."""
    value = _int(text, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (an index, an optional count where 0 means none)."""
    value = _int(text, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


#: every seed is below 2^32: an input seed keys the 32-bit counter hash of the Poisson input
#: (convert.encoding) and Brian2's runtime generator (numpy's ``np.random.seed``); a training seed torch's
SEED_LIMIT = 2**32


def check_seed(value: object, where: str = "seed") -> int:
    """``value`` as a seed (an integer in [0, 2^32)), or a ValueError naming ``where`` and the range."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < SEED_LIMIT:
        raise ValueError(f"{where} must be an integer from 0 to {SEED_LIMIT - 1} (2^32 - 1), got {value!r}")
    return value


def seed_int(text: str) -> int:
    """A random seed, refused at parse time unless in [0, 2^32) (:data:`SEED_LIMIT`): a larger one failed late,
    after the work of the seeds before it (``Overflow when unpacking long long`` from torch)."""
    value = _int(text, f"a seed from 0 to {SEED_LIMIT - 1}")
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be a seed from 0 to {SEED_LIMIT - 1} (2^32 - 1), got {text!r}")
    return value


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it, else the CPU count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def worker_count(text: str) -> int:
    """A number of local worker processes: 0 (none: run in this process) up to the usable cores; more would
    only share the cores, each with its own copy of the data and engines."""
    value = _int(text, "an integer >= 0")
    cores = usable_cores()
    if not 0 <= value <= cores:
        raise argparse.ArgumentTypeError(
            f"must be from 0 (run in this process) to {cores}, the cores of this machine, got {text!r}"
        )
    return value


def output_file(text: str) -> Path:
    """A file to write: a new path or an existing regular file. A symbolic link, directory, device (``/dev/null``),
    FIFO or socket there is refused at parse time (the write renames a new file onto the path, replacing it)."""
    from convert.contract.provenance import OutputPathError, check_output

    try:
        check_output(text)
    except OutputPathError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return Path(text)


def positive_float(text: str) -> float:
    """A finite number > 0 (a learning rate, a threshold)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def count_or_all(text: str) -> int | None:
    """A positive integer, or the word ``all`` (returned as None): how many images to use."""
    if text.strip().lower() == ALL:
        return None
    value = _int(text, f"a positive integer or `{ALL}`")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or `{ALL}`, got {text!r}")
    return value


def at_most(limit: int, where: str, base: Callable[[str], int | None] = positive_int) -> Callable[[str], int | None]:
    """``base`` (default :func:`positive_int`), refusing values above ``limit`` (the size of ``where``)."""

    def parse(text: str) -> int | None:
        value = base(text)
        if value is not None and value > limit:
            raise argparse.ArgumentTypeError(f"{value} exceeds the {limit} images of {where}; ask for at most {limit}")
        return value

    parse.__name__ = base.__name__
    return parse


def check_count(option: str, requested: int | None, available: int, where: str, start: int = 0) -> int:
    """The number of items to take from ``where`` (``available`` of them) from index ``start``: ``requested``,
    or all of the rest when None; asking for more than there are raises ValueError naming the size."""
    if start < 0 or start >= available:
        raise ValueError(f"--start {start}: {where} has {available} images (indices 0..{available - 1})")
    if requested is None:
        return available - start
    if requested < 1:
        raise ValueError(f"{option} must be a positive integer or `{ALL}`, got {requested}")
    if start + requested > available:
        have = f"{available} images" + (f", {available - start} from index {start}" if start else "")
        raise ValueError(f"{option} {requested} exceeds {where} ({have}); ask for at most {available - start}")
    return requested


# ------------------------------------------------------------------------------------------ running
class _UsageError(Exception):
    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


def _one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` and its subparsers raise :class:`_UsageError` instead of printing usage and exiting."""

    def error(message: str):
        raise _UsageError(parser, message)

    parser.error = error  # type: ignore[method-assign]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _one_line_errors(sub)


def run_command(
    parser: argparse.ArgumentParser,
    argv: list[str] | None = None,
    extra_errors: tuple[type[BaseException], ...] = (),
) -> int:
    """Parse ``argv`` and call the chosen subcommand's ``func(args)``; a bad argument, user errors (and
    ``extra_errors``, such as a simulator's "device unavailable") print one line and exit with status 2;
    Ctrl-C prints one line (what was kept) and exits with status 130."""
    _one_line_errors(parser)
    try:
        args = parser.parse_args(argv)
    except _UsageError as err:
        print(f"error: {err} (see `{err.parser.prog} --help`)", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except USER_ERRORS + extra_errors as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{INTERRUPTED}", file=sys.stderr)
        return EXIT_INTERRUPTED


def _one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (a tool's captured stderr can span several)."""
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
