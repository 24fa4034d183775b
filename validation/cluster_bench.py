"""Measured scaling of Table 2's parts on a Dask LocalCluster: ``python -m validation.cluster_bench``.

Times the same parts (one record of a spec on the first ``--images`` test images × ``--steps``, cut in parts
of ``--part-images``) three ways: in this process (the single-process path), and as Dask tasks on ``local:1``
and ``local:2`` (or the ``--workers`` given); then the overhead of one task: many one-image, one-step parts
on ``local:1``, whose simulation takes next to nothing. Prints a Markdown table and writes it with the numbers
(JSON, with provenance) to ``--out``. Each cluster's start-up is timed apart and not counted, nor each
worker's first load of the compiled kernel and the spec's tables (a warm-up task per worker), which the
single-process run has paid too.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from convert import datasets
from convert.contract.io import load_spec
from convert.contract.provenance import provenance, write_json_atomic, write_text_atomic
from validation import cluster
from validation.markdown import table
from validation.paper.experiments import EvalConfig, Job, evaluate


def _job(spec, dataset: str, images: int, steps: int) -> Job:
    return Job(spec, dataset, "bench", 0, images, steps)


def single_process(spec, dataset: str, cfg: EvalConfig, root: Path | None) -> float:
    job = _job(spec, dataset, cfg.n_images, cfg.steps)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        evaluate(job, root, cfg, Path(out))
        return time.perf_counter() - start


def on_cluster(spec, dataset: str, cfg: EvalConfig, root: Path | None, workers: int) -> tuple[float, float]:
    """(start-up seconds, seconds for the parts) on ``local:workers``."""
    job = _job(spec, dataset, cfg.n_images, cfg.steps)
    start = time.perf_counter()
    with cluster.connect(f"{cluster.LOCAL}{workers}") as client, tempfile.TemporaryDirectory() as out:
        client.wait_for_workers(workers)
        # every worker loads the compiled kernel and builds the spec's tables before the clock starts (a long
        # run pays this once per worker)
        warm = cluster.missing_parts([_job(spec, dataset, 1, 2)], EvalConfig(n_images=1, steps=2), root, Path(out))
        futures = [
            client.submit(cluster.run_part_on_worker, warm[0].task, spec, workers=[w], pure=False)
            for w in client.nthreads()
        ]
        client.gather(futures)
        ready = time.perf_counter()
        cluster.simulate_parts(client, cluster.missing_parts([job], cfg, root, Path(out)))
        return ready - start, time.perf_counter() - ready


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m validation.cluster_bench", description=__doc__)
    p.add_argument("--spec", type=Path, required=True)
    p.add_argument("--dataset", default="fashion")
    p.add_argument("--root", type=Path, default=None)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--part-images", type=int, nargs="+", default=[50, 125, 250])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--overhead-tasks", type=int, default=200)
    p.add_argument("--machine", default="2-core CPU box")
    p.add_argument("--out", type=Path, default=Path("benchmarks/cluster-scaling"))
    args = p.parse_args(argv)
    spec = load_spec(args.spec)
    datasets.load(args.dataset, "test", args.root)  # a missing dataset fails here, before any cluster starts
    rows: list[dict[str, Any]] = []
    for part in args.part_images:
        cfg = EvalConfig(n_images=args.images, steps=args.steps, seeds=(0,), part_images=part)
        single_process(spec, args.dataset, EvalConfig(n_images=8, steps=8, seeds=(0,)), args.root)  # compiled
        wall = single_process(spec, args.dataset, cfg, args.root)
        rows.append({"part_images": part, "mode": "single process", "wall_s": wall, "startup_s": 0.0})
        for n in args.workers:
            startup, wall = on_cluster(spec, args.dataset, cfg, args.root, n)
            rows.append({"part_images": part, "mode": f"local:{n}", "wall_s": wall, "startup_s": startup})
        print(rows[-len(args.workers) - 1 :], flush=True)
    for r in rows:
        r["image_steps_per_s"] = args.images * args.steps / r["wall_s"]
    tiny = EvalConfig(n_images=args.overhead_tasks, steps=1, seeds=(0,), part_images=1)
    _, wall = on_cluster(spec, args.dataset, tiny, args.root, 1)
    overhead = wall / args.overhead_tasks
    results = {
        "machine": args.machine,
        "spec": str(args.spec.name),
        "images": args.images,
        "steps": args.steps,
        "rows": rows,
        "overhead_s_per_task": overhead,
        **provenance(vars(args) | {"spec": str(args.spec), "out": str(args.out), "root": str(args.root)}, 0),
    }
    base = {r["part_images"]: r["wall_s"] for r in rows if r["mode"] == "single process"}
    lines = [
        f"{args.images} test images × {args.steps} steps of `{args.spec.name}` on the {args.machine}; "
        "Table 2's parts as Dask tasks on a LocalCluster (start-up and each worker's first load of the kernel and "
        "tables not counted), against the same parts in one process (compiled kernel loaded, tables built). "
        f"Overhead per task (one image × one step, {args.overhead_tasks} tasks, local:1): "
        f"{1000 * overhead:.1f} ms.",
        "",
    ]
    lines += table(
        ("images per part", "run", "wall (s)", "image-steps/s", "speed-up vs one process", "cluster start-up (s)"),
        (
            (
                *(r["part_images"], r["mode"], f"{r['wall_s']:.1f}", f"{r['image_steps_per_s']:,.0f}"),
                *(f"{base[r['part_images']] / r['wall_s']:.2f}×", f"{r['startup_s']:.1f}"),
            )
            for r in rows
        ),
    )
    text = "\n".join(lines) + "\n"
    write_json_atomic(args.out.with_suffix(".json"), results)
    write_text_atomic(args.out.with_suffix(".md"), text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
