"""Command line of validation: the agreement harness, the paper's experiments and sweeps (one module of
commands per sub-package in validation/commands/)."""

from __future__ import annotations

import argparse
from pathlib import Path

from convert.cli import run_command
from validation.commands import grid, harness, paper


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument("--root", type=Path, default=None, help="data root (default: $SNN_DATA or data/)")
        p.add_argument("--runs", type=Path, default=None, help="results folder (default: $SNN_RUNS or runs/)")
        p.set_defaults(func=func)
        return p

    for group in (harness, paper, grid):
        group.register(add)

    from validation.harness.thirdparty import ThirdPartyError

    return run_command(parser, argv, extra_errors=(ThirdPartyError,))


if __name__ == "__main__":
    raise SystemExit(main())
