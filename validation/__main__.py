"""Command line of validation: ``python -m validation {agree,interop,table2,figures,sweep,reproduce} ...``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from convert.cli import at_most, check_count, nonnegative_int, positive_int, run_command
from convert.datasets import N_IMAGES
from convert.pipeline import default_runs


def _eval_config(args: argparse.Namespace):
    from validation.paper.experiments import EvalConfig

    engine = dict(device=args.device, dtype=args.dtype, matmul=args.matmul, kernel=args.kernel)
    if args.full:  # the replication's scale: every row on the whole test set for 10 000 ms
        seeds = tuple(args.seeds) if args.seeds else (0,)
        return EvalConfig(n_images=10_000, steps=10_000, seeds=seeds, part_images=args.part_images, **engine)
    slow = dict(slow_rows=tuple(args.slow_rows), slow_steps=args.slow_steps, slow_images=args.slow_images)
    seeds = tuple(args.seeds) if args.seeds else (0, 1, 2)
    return EvalConfig(
        n_images=args.images, steps=args.steps, seeds=seeds, part_images=args.part_images, **slow, **engine
    )


def _spec_args(p: argparse.ArgumentParser, images: int, steps: int) -> None:
    """The options of a command that runs one spec on the first images of a split."""
    p.add_argument("--spec", type=Path, required=True)
    p.add_argument("--dataset", default="mnist", choices=("mnist", "fashion"))
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--images", type=positive_int, default=images)
    p.add_argument("--steps", type=positive_int, default=steps)
    p.add_argument("--seed", type=nonnegative_int, default=0)


def _spec_and_images(args: argparse.Namespace):
    """The spec of ``--spec`` (checked against ``--dataset``) and the first ``--images`` images and labels of
    the split, or the one-line error that says why not."""
    from convert import datasets
    from convert.contract.io import load_spec

    spec = load_spec(args.spec)
    datasets.check_spec_dataset(spec, args.dataset, args.spec)
    split = datasets.load(args.dataset, args.split, args.root)
    n = check_count("--images", args.images, len(split.images), f"the {args.dataset} {args.split} split")
    return spec, split.images[:n], split.labels[:n]


@contextlib.contextmanager
def _cluster_runner(args: argparse.Namespace, desc: str, run_fn):
    """None (run here), or with --dask a runner of ``run_fn`` that shards the images over the cluster."""
    if not args.dask:
        yield None
        return
    from validation import cluster

    with cluster.connect(args.dask) as client:
        yield cluster.sharded(client, run_fn, block=args.block_images, desc=desc)


def cmd_agree(args: argparse.Namespace) -> int:
    from validation.harness.agreement import agreement, parse_engine, write_report

    engines = tuple(args.engines.split(","))
    if len(engines) != 2:
        raise ValueError(f"--engines takes two engines separated by a comma, got {args.engines!r}")
    for engine in engines:  # a misspelt engine is refused before anything runs
        parse_engine(engine)
    spec, images, labels = _spec_and_images(args)
    n = len(images)
    if args.poisson_images > n:
        raise ValueError(f"--poisson-images {args.poisson_images} exceeds --images {n}; ask for at most {n}")
    from validation.harness.agreement import _run

    with _cluster_runner(args, "agree", _run) as runner:
        report, recs = agreement(
            spec,
            images,
            labels,
            args.steps,
            engines,
            seed=args.seed,
            poisson_images=args.poisson_images,
            progress=True,
            runner=runner,
        )
    config = {k: str(v) for k, v in vars(args).items() if k != "func"}
    name = args.name or f"{Path(args.spec).stem}-{'-vs-'.join(e.replace(':', '_') for e in engines)}"
    paths = write_report(report, recs, args.out or default_runs() / "agreement", name, config)
    print(paths[1].read_text())
    print("written " + ", ".join(str(p) for p in paths))
    return 0


def cmd_interop(args: argparse.Namespace) -> int:
    from validation.harness.interop import InteropConfig, run_interop, table, write

    libs = tuple(args.libraries)
    cfg = InteropConfig(specs=tuple(args.specs), images=args.images, steps=args.steps, seed=args.seed, libraries=libs)
    results = run_interop(cfg, args.root, args.specs_dir or (args.runs or default_runs()) / "specs")
    print(table(results))
    paths = write(results, args.docs)
    print("written " + ", ".join(str(p) for p in paths))
    return 0


def cmd_table2(args: argparse.Namespace) -> int:
    from validation.paper.table2 import run_table2
    from validation.paper.table2_report import markdown

    cfg = _eval_config(args)
    runs = args.runs or default_runs()
    results = run_table2(cfg, args.root, runs, estimate=args.full or args.estimate, dask=args.dask)
    print(markdown(results))
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from validation.paper.figures import convergence_markdown, make_figures
    from validation.paper.table2 import run_table2

    cfg = _eval_config(args)
    runs = args.runs or default_runs()
    results = run_table2(cfg, args.root, runs)  # resumes: only missing records are simulated
    print(convergence_markdown(make_figures(results, runs), cfg.steps))
    print(f"figures under {runs / 'table2' / cfg.tag}")
    return 0


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


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Per spiking layer, the SNN's rates against the ANN's (validation/harness/diagnose.py): a Markdown table, a PNG
    grid of hexbin plots and the numbers (JSON), written atomically to --out."""
    from validation.harness.diagnose import run_diagnosis

    spec, images, labels = _spec_and_images(args)
    out = args.out or (args.runs or default_runs()) / "diagnose" / args.spec.stem
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "func"}
    from validation.harness.engines import run

    with _cluster_runner(args, "diagnose", run) as runner:
        result = run_diagnosis(
            spec,
            args.spec.name,
            images,
            labels,
            args.steps,
            out,
            config,
            seed=args.seed,
            device=args.device,
            runner=runner,
        )
    print(result["markdown"])
    print(f"written {out / 'diagnose.md'}, {out / 'diagnose.png'}, {out / 'diagnose.json'}")
    return 0


def cmd_seeds(args: argparse.Namespace) -> int:
    """Table 1 and Table 2 over several training seeds (validation/paper/seeds.py): mean and spread."""
    import dataclasses

    from validation.paper.seeds import SeedsConfig, markdown, run_seeds

    cfg = SeedsConfig(seeds=tuple(args.seeds), **({"models": None} if args.train else {}))
    scale = {k: v for k, v in (("n_images", args.images), ("slow_images", args.slow_images)) if v is not None}
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, **scale))  # plan() caps slow rows at n
    print(markdown(run_seeds(cfg, args.root, args.runs or default_runs())))
    return 0


def cmd_beyond(args: argparse.Namespace) -> int:
    """The deeper networks' table (validation/paper/beyond.py) on its own: trains nothing, so their checkpoints must
    be in <runs>/models (the main job copies the published ones there)."""
    import dataclasses

    from validation.paper.beyond import BeyondConfig, run_beyond

    cfg = BeyondConfig()
    ev = dataclasses.replace(cfg.eval, n_images=args.images, steps=args.steps, device=args.device)
    cfg = dataclasses.replace(
        cfg, eval=ev, agreement_images=args.agreement_images, agreement_steps=args.agreement_steps
    )
    if args.rows:
        from validation.paper.rows import named

        named(tuple(args.rows))  # an unknown row is an error before anything runs
        cfg = dataclasses.replace(cfg, rows=tuple(args.rows))
    from convert.train import checkpoint_paths

    runs = args.runs or default_runs()
    if not any(checkpoint_paths(runs, ds, m)[1].exists() for ds, m in cfg.networks):
        raise ValueError(
            f"no checkpoint of {', '.join(m for _, m in cfg.networks)} in {runs / 'models'}: run `make reproduce` "
            "(it copies the published ones there) or train them with `python -m convert select`"
        )
    run_beyond(cfg, args.root, runs)
    print((runs / "beyond" / "beyond.md").read_text())
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from validation.paper.publish import publish

    for path in publish(args.runs or default_runs(), args.docs, args.readme):
        print(f"wrote {path}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    import dataclasses

    from validation.paper.horizon_check import HorizonCheck
    from validation.paper.replication_config import ReplicationConfig
    from validation.paper.reproduce import (
        MAIN_JOB_EVAL,
        PUBLISHED,
        PUBLISHED_MODELS,
        ReproduceConfig,
        print_estimate,
        reproduce,
    )

    scale = {k: v for k, v in (("n_images", args.images), ("slow_images", args.slow_images)) if v is not None}
    evaluation = dataclasses.replace(MAIN_JOB_EVAL, **scale)
    repl = ReplicationConfig()
    repl = dataclasses.replace(repl, images=min(repl.images, evaluation.n_images))
    if args.slow_images is not None:
        repl = dataclasses.replace(repl, slow_images=min(repl.slow_images, max(100, args.slow_images // 4)))
    agree = {} if args.agreement_steps is None else {"agreement_steps": args.agreement_steps}
    flags = " ".join(sys.argv[1:]) if sys.argv[0].endswith("__main__.py") else "reproduce"
    command = "make reproduce" if flags.strip() == "reproduce" else f"python -m validation {flags}"
    horizon = {} if args.horizon_images is None else {"horizon": HorizonCheck(images=args.horizon_images)}
    if args.models is not None and not args.models.is_dir():
        raise ValueError(f"--models {args.models}: not a folder of checkpoints (<dataset>-<model>.pt and .json)")
    if args.train and args.models is not None:
        raise ValueError("--train and --models exclude each other: train from scratch, or start from checkpoints")
    models = None if args.train or args.select else (args.models or PUBLISHED_MODELS)
    small = {}
    if args.images is not None:  # a smaller main job: the deeper networks and the diagnosis shrink with it
        from validation.paper.beyond import BeyondConfig

        beyond = BeyondConfig()
        n = max(100, min(beyond.eval.n_images, args.images // 5))
        small = {
            "beyond": dataclasses.replace(beyond, eval=dataclasses.replace(beyond.eval, n_images=n)),
            "diagnose_images": max(100, min(500, args.images // 20)),
        }
    cfg = ReproduceConfig(
        **small,
        beyond_stages=args.beyond,
        select=args.select,
        eval=evaluation,
        replication=repl,
        command=command,
        models=models,
        agreement_all=args.agreement == "all",
        **agree,
        **horizon,
    )
    if args.estimate:
        print_estimate(cfg, PUBLISHED)
        return 0
    path = reproduce(cfg, args.root, args.runs or default_runs())
    print(path.read_text())
    return 0


def _eval_args(p: argparse.ArgumentParser) -> None:
    test_images = at_most(N_IMAGES["test"], "a test split")
    p.add_argument("--images", type=test_images, default=500, help="test images (default 500)")
    p.add_argument("--steps", type=positive_int, default=300, help="simulated ms per image (default 300)")
    p.add_argument("--seeds", type=nonnegative_int, nargs="+", default=None, help="input seeds (default 0 1 2)")
    p.add_argument("--slow-rows", nargs="*", default=["model"], help="rows run longer on fewer images (default model)")
    p.add_argument("--slow-steps", type=positive_int, default=5000, help="their horizon in ms (default 5000)")
    p.add_argument("--slow-images", type=test_images, default=2000, help="their images (default 2000)")
    p.add_argument("--estimate", action="store_true", help="print the expected wall time before simulating")
    p.add_argument(
        "--part-images",
        type=positive_int,
        default=1000,
        help="images per cached part, the unit of resumption and "
        "of a cluster task (default 1000; smaller parts keep more cluster workers busy)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, or (with --dask) worker: each worker's own")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--matmul", default="fp32", choices=("fp32", "tf32x2", "tf32x3"), help="fastsim float32 products")
    p.add_argument(
        "--kernel",
        default="auto",
        choices=("auto", "events", "torch", "triton"),
        help="fastsim kernel (auto: events on a CPU, torch on a GPU; triton: GPU)",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="the replication's scale: every row on 10 000 images x 10 000 ms, seed 0 (resumable; prints the "
        "expected wall time on this machine first)",
    )


def _dask_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dask",
        default=None,
        help="shard the images over a Dask cluster: a scheduler address (tcp://host:8786) or local:N (N worker "
        "processes here); see docs/scale-out.md",
    )
    p.add_argument(
        "--block-images",
        type=positive_int,
        default=None,
        help="images per cluster task (default: one per worker)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument("--root", type=Path, default=None, help="data root (default: $SNN_DATA or data/)")
        p.add_argument("--runs", type=Path, default=None, help="results folder (default: runs/)")
        p.set_defaults(func=func)
        return p

    p = add("agree", cmd_agree, "compare two engines on one spec, identical and independent inputs")
    _spec_args(p, images=20, steps=100)
    p.add_argument(
        "--engines",
        default="fastsim:float64,refsim:cpp_standalone",
        help="two of fastsim[:opts], refsim[:device], {norse,snntorch,sinabs,spikingjelly}[:adapter]",
    )
    p.add_argument(
        "--poisson-images", type=nonnegative_int, default=0, help="also compare independent Poisson runs (<= --images)"
    )
    p.add_argument("--name", default=None)
    p.add_argument("--out", type=Path, default=None)
    _dask_args(p)

    p = add("interop", cmd_interop, "NIR conformance table: Norse, snnTorch, sinabs, SpikingJelly x network vs fastsim")
    p.add_argument("--specs", nargs="+", default=["mnist-mlp-data", "mnist-cnn-data"], help="spec names")
    p.add_argument("--specs-dir", type=Path, default=None, help="folder of the specs (default: <runs>/specs)")
    p.add_argument("--libraries", nargs="+", default=["norse", "snntorch", "sinabs", "spikingjelly"])
    p.add_argument("--images", type=at_most(N_IMAGES["test"], "a test split"), default=1000)
    p.add_argument("--steps", type=positive_int, default=100)
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--docs", type=Path, default=Path("docs"), help="where interop.md and results/ go")

    p = add("table2", cmd_table2, "Table 2: SNN accuracy per dataset x model x method")
    _eval_args(p)
    p.add_argument(
        "--dask",
        default=None,
        help="run the simulations on a Dask cluster: a scheduler address (tcp://host:8786) or local:N (N worker "
        "processes here); with --device worker each worker uses its GPU if it has one (docs/scale-out.md)",
    )
    _eval_args(add("figures", cmd_figures, "Figures 3/4: error vs simulated time, and convergence times"))

    p = add("sweep", cmd_sweep, "a resumable grid of fastsim evaluations from a TOML config")
    p.description = "Run the cells of a TOML grid not yet in the results file; --root/--runs override run.root/runs."
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--out", type=Path, default=None, help="results file (default: the config's run.out)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (0: run in this process)")
    p.add_argument("--dask", default=None, help="address of a Dask distributed scheduler")
    p.add_argument("--no-plot", action="store_true")

    p = add("reproduce", cmd_reproduce, "the main job: training, conversion, Tables 1/2, Figures 3/4, agreement")
    p.add_argument(
        "--select", action="store_true", help="train and rerun the model selection over every candidate (+~35 min)"
    )
    test_images = at_most(N_IMAGES["test"], "a test split")
    p.add_argument("--images", type=test_images, default=None, help="Table 2's test images (default all 10 000)")
    p.add_argument("--slow-images", type=test_images, default=None, help="model-based rows' images (default 500)")
    p.add_argument("--agreement-steps", type=positive_int, default=None, help="steps of the Brian2 checks (300)")
    p.add_argument("--horizon-images", type=test_images, default=None, help="the horizon check's images (1000)")
    p.add_argument(
        "--models", type=Path, default=None, help="start from these checkpoints (default: docs/results/models)"
    )
    p.add_argument("--train", action="store_true", help="train the four networks from scratch instead")
    p.add_argument(
        "--agreement", default="main", choices=("main", "all"), help="Brian2 checks: the main job's six, or all ten"
    )
    p.add_argument("--estimate", action="store_true", help="print the expected wall time here and exit")
    p.add_argument(
        "--beyond", action="store_true", help="also the deeper networks' table and every network's diagnosis"
    )

    p = add("diagnose", cmd_diagnose, "per layer, the SNN's firing rates against the ANN's: where a conversion loses")
    _spec_args(p, images=200, steps=300)
    p.add_argument("--device", default="cpu", help="cpu (the event engine) or cuda")
    p.add_argument("--out", type=Path, default=None, help="folder (default: <runs>/diagnose/<spec name>)")
    _dask_args(p)

    p = add("beyond", cmd_beyond, "the deeper Fashion-MNIST networks (vgg, resnet): fast rows, tests, Brian2 sample")
    p.add_argument("--images", type=test_images, default=2000, help="test images (default 2000)")
    p.add_argument("--steps", type=positive_int, default=300, help="the horizon T in steps (default 300)")
    p.add_argument("--agreement-images", type=nonnegative_int, default=10, help="Brian2 sample images (0: none)")
    p.add_argument("--agreement-steps", type=positive_int, default=100, help="Brian2 sample steps")
    p.add_argument("--device", default="cpu", help="cpu (the event engine) or cuda")
    p.add_argument(
        "--rows", nargs="+", default=None, help="rows to run (default: data, data-subtract, robust, baseline-tuned)"
    )

    p = add("seeds", cmd_seeds, "Table 1 and Table 2 over several training seeds: mean and spread (hours)")
    p.add_argument("--seeds", type=nonnegative_int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    p.add_argument("--images", type=test_images, default=None, help="Table 2 test images (default the main job's)")
    p.add_argument("--slow-images", type=test_images, default=None, help="model-based rows' images (default 500)")
    p.add_argument(
        "--train",
        action="store_true",
        help="train every seed, the main job's too (default: its published networks stand for seed 0)",
    )

    p = add("publish", cmd_publish, "copy the main job's results to docs/results and the README's results block")
    p.add_argument("--docs", type=Path, default=Path("docs/results"))
    p.add_argument("--readme", type=Path, default=Path("README.md"))

    from validation.harness.thirdparty import ThirdPartyError

    return run_command(parser, argv, extra_errors=(ThirdPartyError,))


if __name__ == "__main__":
    sys.exit(main())
