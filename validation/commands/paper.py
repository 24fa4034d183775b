"""Commands of the paper's experiments: ``table2``, ``figures``, ``reproduce`` (the main job), ``beyond``,
``latency``, ``seeds``, ``publish``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convert.cli import at_most, nonnegative_int, positive_float, positive_int, seed_int
from convert.datasets import N_IMAGES
from convert.pipeline import default_runs
from validation.commands.common import Add, build_dir_arg, dask_address


def eval_config(args: argparse.Namespace):
    from validation.paper.experiments import EvalConfig

    engine = dict(device=args.device, dtype=args.dtype, matmul=args.matmul, kernel=args.kernel)
    only = tuple(args.rows) if getattr(args, "rows", None) else None
    if args.full:  # the replication's scale: every row on the whole test set for 10 000 ms
        seeds = tuple(args.seeds) if args.seeds else (0,)
        return EvalConfig(n_images=10_000, steps=10_000, seeds=seeds, part_images=args.part_images, rows=only, **engine)
    slow = dict(slow_rows=tuple(args.slow_rows), slow_steps=args.slow_steps, slow_images=args.slow_images)
    seeds = tuple(args.seeds) if args.seeds else (0, 1, 2)
    return EvalConfig(
        n_images=args.images, steps=args.steps, seeds=seeds, part_images=args.part_images, rows=only, **slow, **engine
    )


def eval_args(p: argparse.ArgumentParser) -> None:
    test_images = at_most(N_IMAGES["test"], "a test split")
    p.add_argument("--images", type=test_images, default=500, help="test images (default 500)")
    p.add_argument("--steps", type=positive_int, default=300, help="simulated ms per image (default 300)")
    p.add_argument("--seeds", type=seed_int, nargs="+", default=None, help="input seeds (default 0 1 2)")
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


def cmd_table2(args: argparse.Namespace) -> int:
    from validation.paper.networks import require_checkpoints
    from validation.paper.table2 import PAIRS, run_table2
    from validation.paper.table2_report import markdown

    cfg = eval_config(args)
    runs = args.runs or default_runs()
    require_checkpoints(runs, PAIRS)  # a network without a checkpoint was left out of the table silently
    if args.dask:  # a bad address is refused now, not after the threshold searches
        from validation import cluster

        cluster.check_address(args.dask)
    results = run_table2(
        cfg, args.root, runs, estimate=args.full or args.estimate, dask=args.dask, publish=args.publish_parts
    )
    print(markdown(results))
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from validation.paper.figures import convergence_markdown, make_figures
    from validation.paper.networks import require_checkpoints
    from validation.paper.table2 import PAIRS, run_table2

    cfg = eval_config(args)
    runs = args.runs or default_runs()
    require_checkpoints(runs, PAIRS)
    results = run_table2(cfg, args.root, runs)  # resumes: only missing records are simulated
    print(convergence_markdown(make_figures(results, runs), cfg.steps))
    print(f"figures under {runs / 'table2' / cfg.tag}")
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
        build_dir=args.build_dir,
        **agree,
        **horizon,
    )
    if args.estimate:
        print_estimate(cfg, PUBLISHED)
        return 0
    path = reproduce(cfg, args.root, args.runs or default_runs())
    print(path.read_text())
    return 0


def cmd_beyond(args: argparse.Namespace) -> int:
    """The deeper networks' table (validation/paper/beyond.py) on its own: trains nothing, so their checkpoints must
    be in <runs>/models (the main job copies the published ones there)."""
    import dataclasses

    from validation.paper.beyond import BeyondConfig, run_beyond

    cfg = BeyondConfig()
    ev = dataclasses.replace(cfg.eval, n_images=args.images, steps=args.steps, device=args.device)
    if args.thresholds:
        ev = dataclasses.replace(ev, thresholds=tuple(args.thresholds))
    cfg = dataclasses.replace(
        cfg, eval=ev, agreement_images=args.agreement_images, agreement_steps=args.agreement_steps
    )
    if args.rows:
        from validation.paper.rows import named

        named(tuple(args.rows))  # an unknown row is an error before anything runs
        cfg = dataclasses.replace(cfg, rows=tuple(args.rows))
    if args.networks:
        cfg = dataclasses.replace(cfg, networks=tuple(args.networks))
    cfg = dataclasses.replace(cfg, out=args.out)
    from validation.paper.networks import require_checkpoints

    runs = args.runs or default_runs()
    require_checkpoints(runs, cfg.networks)  # every network asked for: none is left out silently
    run_beyond(cfg, args.root, runs, build_dir=args.build_dir)
    print((runs / cfg.out / "beyond.md").read_text())
    return 0


def cmd_latency(args: argparse.Namespace) -> int:
    """The latency table (validation/paper/latency.py): the published networks (and QCFS twins) copied into the
    runs folder, the expected work printed, then every row at T = 4 … 256; resumes from its cached parts."""
    import dataclasses

    from validation.paper.latency import DEEPER_NETWORKS, PAPER_NETWORKS, LatencyConfig, run_latency
    from validation.paper.networks import PUBLISHED_MODELS, use_given_models

    networks = tuple(args.networks) if args.networks else PAPER_NETWORKS + (DEEPER_NETWORKS if args.deeper else ())
    cfg = LatencyConfig(
        networks=networks,
        images=args.images,
        deeper_images=args.deeper_images,
        agreement_images=args.agreement_images,
        out=args.out,
    )
    if args.rows:
        cfg = dataclasses.replace(cfg, rows=tuple(args.rows))
    if args.steps:
        cfg = dataclasses.replace(cfg, steps=tuple(sorted(set(args.steps))))
    runs = args.runs or default_runs()
    use_given_models(PUBLISHED_MODELS, runs, cfg.networks)
    results = run_latency(cfg, args.root, runs, progress=True, build_dir=args.build_dir)
    total = sum(results["wall_s"].values())
    print((runs / cfg.out / "latency.md").read_text())
    print(f"wrote {runs / cfg.out}/latency.{{json,md,png}} in {total / 60:.1f} min")
    return 0


def cmd_levels(args: argparse.Namespace) -> int:
    """QCFS's L chosen for a target T by the SNN on the validation split (validation/paper/levels.py)."""
    from validation.paper.levels import select_levels

    runs = args.runs or default_runs()
    result = select_levels(
        args.dataset, args.model, tuple(args.levels), args.steps, str(args.init), runs, args.root, args.epochs, args.lr
    )
    print((runs / "levels" / f"{args.dataset}-{args.model}-T{args.steps}.md").read_text())
    print(f"chosen: L = {result['chosen']}")
    return 0


def cmd_torchvision(args: argparse.Namespace) -> int:
    """torchvision's families on MNIST: converted or refused, trained briefly, ANN vs SNN, Brian2 on a few
    images (validation/paper/torchvision_table.py)."""
    from validation.paper.torchvision_table import NAMES, VisionConfig, run_table

    runs = args.runs or default_runs()
    cfg = VisionConfig(
        models=tuple(args.models or NAMES),
        train_images=args.train_images,
        epochs=args.epochs,
        test_images=args.images,
        steps=args.steps,
        checkpoints=(args.steps,),
        agreement_images=args.agreement_images,
        agreement_max_synapses=int(args.agreement_max_synapses * 1e6),
        agreement_device=args.agreement_device,
    )
    out = runs / args.out
    run_table(cfg, args.root, runs, out, args.build_dir)
    print((out / "table.md").read_text())
    return 0


def network_name(text: str) -> tuple[str, str]:
    """``dataset-model`` (e.g. ``fashion-vgg``) as a (dataset, model) pair; anything else is a clear error."""
    from convert.datasets import DATASETS
    from convert.models import MODELS

    dataset, _, model = text.partition("-")
    if dataset not in DATASETS or model not in MODELS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a network: give dataset-model with a dataset of {', '.join(DATASETS)} and a model of "
            f"{', '.join(MODELS)}, e.g. fashion-vgg"
        )
    return dataset, model


def folder_name(text: str) -> str:
    """A results folder's name under runs/: one path component."""
    if not text or "/" in text or text in (".", ".."):
        raise argparse.ArgumentTypeError(f"{text!r}: give a folder name under the runs folder, e.g. beyond-paper")
    return text


def cmd_seeds(args: argparse.Namespace) -> int:
    """Table 1 and Table 2 over several training seeds (validation/paper/seeds.py): mean and spread."""
    import dataclasses

    from validation.paper.seeds import SeedsConfig, markdown, run_seeds

    cfg = SeedsConfig(seeds=tuple(args.seeds), **({"models": None} if args.train else {}))
    scale = {k: v for k, v in (("n_images", args.images), ("slow_images", args.slow_images)) if v is not None}
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, **scale))  # plan() caps slow rows at n
    print(markdown(run_seeds(cfg, args.root, args.runs or default_runs())))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from validation.paper.publish import publish

    for path in publish(args.runs or default_runs(), args.docs, args.readme):
        print(f"wrote {path}")
    return 0


def rows_arg(p: argparse.ArgumentParser) -> None:
    from validation.paper.rows import row_names

    p.add_argument(
        "--rows",
        nargs="+",
        choices=row_names(),
        default=None,
        help="only these rows (default: every row); `--full --rows model` runs the model-based rows at the "
        "replication's scale",
    )


def register(add: Add) -> None:
    """Add this group's commands with ``add(name, func, help)`` (it adds --root and --runs)."""
    test_images = at_most(N_IMAGES["test"], "a test split")
    p = add("table2", cmd_table2, "Table 2: SNN accuracy per dataset x model x method")
    eval_args(p)
    rows_arg(p)
    p.add_argument(
        "--publish-parts",
        action="store_true",
        help="copy every finished part record to docs/results/table2-full/parts (kept in git; read back by every "
        "later run as cached), before simulating and after",
    )
    p.add_argument(
        "--dask",
        type=dask_address,
        default=None,
        help="run the simulations on a Dask cluster: a scheduler address (tcp://host:8786) or local:N (N worker "
        "processes here); with --device worker each worker uses its GPU if it has one (docs/scale-out.md)",
    )

    p = add("figures", cmd_figures, "Figures 3/4: error vs simulated time, and convergence times")
    eval_args(p)
    rows_arg(p)

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
    build_dir_arg(p)

    p = add("beyond", cmd_beyond, "the deeper Fashion-MNIST networks (vgg, resnet): fast rows, tests, Brian2 sample")
    p.add_argument("--images", type=test_images, default=2000, help="test images (default 2000)")
    p.add_argument("--steps", type=positive_int, default=300, help="the horizon T in steps (default 300)")
    p.add_argument("--agreement-images", type=nonnegative_int, default=10, help="Brian2 sample images (0: none)")
    p.add_argument("--agreement-steps", type=positive_int, default=100, help="Brian2 sample steps")
    p.add_argument("--device", default="cpu", help="cpu (the event engine) or cuda")
    p.add_argument(
        "--rows",
        nargs="+",
        default=None,
        help="rows to run (default: data, data-subtract, data-subtract-half, robust, baseline-tuned)",
    )
    p.add_argument(
        "--networks",
        type=network_name,
        nargs="+",
        default=None,
        help="networks as dataset-model (default fashion-vgg fashion-resnet; any trained one, e.g. mnist-cnn)",
    )
    p.add_argument(
        "--out",
        type=folder_name,
        default="beyond",
        help="results folder under the runs folder (default beyond, the one `publish` reads)",
    )
    p.add_argument(
        "--thresholds",
        type=positive_float,
        nargs="+",
        default=None,
        help="the baseline's threshold candidates (default 1 4 16; Table 2's grid: 1 2 4 8 16 20 32)",
    )
    build_dir_arg(p)

    p = add("levels", cmd_levels, "QCFS: choose L for a target T by the SNN's accuracy on the validation split")
    from convert import datasets as _datasets
    from convert import models as _models

    p.add_argument("--dataset", choices=_datasets.DATASETS, required=True)
    p.add_argument("--model", choices=_models.MODELS, required=True)
    p.add_argument("--levels", type=positive_int, nargs="+", default=[4, 8, 16], help="candidate L (default 4 8 16)")
    p.add_argument("--steps", type=positive_int, default=8, help="the target T (default 8)")
    p.add_argument(
        "--init",
        type=Path,
        required=True,
        help="the network's trained ReLU checkpoint, each twin's start (e.g. docs/results/models/mnist-cnn.pt)",
    )
    p.add_argument("--epochs", type=positive_int, default=3, help="fine-tuning epochs per candidate (default 3)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="fine-tuning learning rate (default 1e-3)")
    p = add("latency", cmd_latency, "accuracy at T = 4 ... 256 steps: data-based, calibrated, bias-corrected, QCFS")
    p.add_argument("--images", type=test_images, default=10_000, help="test images of the paper's networks (10000)")
    p.add_argument("--deeper-images", type=test_images, default=2000, help="test images of the deeper ones (2000)")
    p.add_argument("--deeper", action="store_true", help="also the deeper Fashion-MNIST networks (vgg, resnet)")
    p.add_argument("--networks", type=network_name, nargs="+", default=None, help="networks as dataset-model")
    p.add_argument("--rows", nargs="+", default=None, help="rows to run (default: all; see docs/calibration.md)")
    p.add_argument("--steps", type=positive_int, nargs="+", default=None, help="T's (default 4 8 16 32 64 128 256)")
    p.add_argument(
        "--agreement-images", type=nonnegative_int, default=10, help="Brian2 checks of the new rows (0: none)"
    )
    p.add_argument("--out", type=folder_name, default="latency", help="results folder under the runs folder")
    build_dir_arg(p)

    from validation.paper.torchvision_table import NAMES as _VISION

    p = add("torchvision", cmd_torchvision, "torchvision's families on MNIST: converted, trained briefly, vs Brian2")
    p.add_argument("--models", nargs="+", choices=_VISION, default=None, help="families (default: all 11)")
    p.add_argument("--train-images", type=positive_int, default=5000, help="brief training's images (5000)")
    p.add_argument("--epochs", type=positive_int, default=1, help="brief training's epochs (default 1)")
    p.add_argument("--images", type=test_images, default=1000, help="test images, ANN and SNN (default 1000)")
    p.add_argument("--steps", type=positive_int, default=32, help="T the SNN is calibrated for and run (32)")
    p.add_argument("--agreement-images", type=nonnegative_int, default=2, help="Brian2 check images (0: none)")
    p.add_argument(
        "--agreement-max-synapses", type=positive_float, default=25.0, help="largest model Brian2 checks, M (25)"
    )
    p.add_argument(
        "--agreement-device",
        choices=("cpp_standalone", "runtime"),
        default="cpp_standalone",
        help="Brian2 device of the checks: compiled C++ (default) or the runtime device (nothing to compile)",
    )
    p.add_argument("--out", type=folder_name, default="torchvision", help="results folder under the runs folder")
    build_dir_arg(p)

    p = add("seeds", cmd_seeds, "Table 1 and Table 2 over several training seeds: mean and spread (hours)")
    p.add_argument("--seeds", type=seed_int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
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
