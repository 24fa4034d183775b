"""Commands of the sweeps: ``sweep``."""

from __future__ import annotations

import argparse
from pathlib import Path

from convert.cli import worker_count
from convert.contract.provenance import check_output
from validation.commands.common import Add, dask_address


def cmd_sweep(args: argparse.Namespace) -> int:
    from validation.grid.results_log import first_by_key, read_results
    from validation.grid.sweep import execute, plan_sweep
    from validation.grid.sweep_plot import plot_sweep

    if args.dask:  # a bad address is refused before anything is written
        from validation import cluster

        cluster.check_address(args.dask)
    plan = plan_sweep(args.config, out=args.out, root=args.root, runs=args.runs)
    if not args.no_plot:
        check_output(plan.path.with_suffix(".png"))
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
    p.add_argument(
        "--workers", type=worker_count, default=1, help="worker processes, at most the cores (0: run in this process)"
    )
    p.add_argument(
        "--dask",
        type=dask_address,
        default=None,
        help="address of a Dask distributed scheduler, or local:N (N worker processes here)",
    )
    p.add_argument("--no-plot", action="store_true")
