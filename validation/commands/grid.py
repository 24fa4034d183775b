"""Commands of the sweeps: ``sweep``."""

from __future__ import annotations

import argparse
from pathlib import Path

from validation.commands.common import Add


def cmd_sweep(args: argparse.Namespace) -> int:
    from validation.grid.results_log import first_by_key, read_results
    from validation.grid.sweep import execute, plan_sweep
    from validation.grid.sweep_plot import plot_sweep

    plan = plan_sweep(args.config, out=args.out, root=args.root, runs=args.runs)
    ran = execute(plan, workers=args.workers, dask=args.dask)
    keys = [t.key for t in plan.tasks]
    done = first_by_key(read_results(plan.path))
    print(f"{sum(k in done for k in keys)} of {len(keys)} cells done ({ran} run now) in {plan.path}")
    if not args.no_plot:
        print(f"plot: {plot_sweep(plan.path, keys=keys)}")
    return 0


def register(add: Add) -> None:
    """Add this group's commands with ``add(name, func, help)`` (it adds --root and --runs)."""
    p = add("sweep", cmd_sweep, "a resumable grid of fastsim evaluations from a TOML config")
    p.description = "Run the cells of a TOML grid not yet in the results file; --root/--runs override run.root/runs."
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--out", type=Path, default=None, help="results file (default: the config's run.out)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (0: run in this process)")
    p.add_argument("--dask", default=None, help="address of a Dask distributed scheduler")
    p.add_argument("--no-plot", action="store_true")
