"""Commands of the agreement harness: ``agree``, ``interop``, ``diagnose``."""

from __future__ import annotations

import argparse
from pathlib import Path

from convert.cli import at_most, nonnegative_int, positive_int, seed_int
from convert.contract.provenance import check_outputs
from convert.datasets import N_IMAGES
from convert.pipeline import default_runs
from validation.commands.common import Add, build_dir_arg, cluster_runner, dask_args, spec_and_images, spec_args


def cmd_agree(args: argparse.Namespace) -> int:
    from validation.harness.agreement import agreement, parse_engine, write_report

    engines = tuple(args.engines.split(","))
    if len(engines) != 2:
        raise ValueError(f"--engines takes two engines separated by a comma, got {args.engines!r}")
    for engine in engines:  # a misspelt engine is refused before anything runs
        parse_engine(engine)
    spec, images, labels = spec_and_images(args)
    n = len(images)
    if args.poisson_images > n:
        raise ValueError(f"--poisson-images {args.poisson_images} exceeds --images {n}; ask for at most {n}")
    name = args.name or f"{Path(args.spec).stem}-{'-vs-'.join(e.replace(':', '_') for e in engines)}"
    out = args.out or (args.runs or default_runs()) / "agreement"
    check_outputs(*(out / f"{name}.{ext}" for ext in ("json", "md", "png")))  # refused before the simulations
    from refsim.devices import default_build_root
    from validation.harness.agreement import _run

    # Brian2's projects: --build-dir, else $SNN_BUILD or <runs>/build/refsim; on a Dask cluster each worker's own
    build_dir = args.build_dir or (None if args.dask else default_build_root(args.runs))
    with cluster_runner(args, "agree", _run) as runner:
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
            build_dir=build_dir,
        )
    config = {k: str(v) for k, v in vars(args).items() if k != "func"}
    paths = write_report(report, recs, out, name, config)
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


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Per spiking layer, the SNN's rates against the ANN's (validation/harness/diagnose.py): a Markdown table, a PNG
    grid of hexbin plots and the numbers (JSON), written atomically to --out."""
    from validation.harness.diagnose import run_diagnosis

    spec, images, labels = spec_and_images(args)
    out = args.out or (args.runs or default_runs()) / "diagnose" / args.spec.stem
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "func"}
    from validation.harness.engines import run

    with cluster_runner(args, "diagnose", run) as runner:
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


def register(add: Add) -> None:
    """Add this group's commands with ``add(name, func, help)`` (it adds --root and --runs)."""
    p = add("agree", cmd_agree, "compare two engines on one spec, identical and independent inputs")
    spec_args(p, images=20, steps=100)
    p.add_argument(
        "--engines",
        default="fastsim:float64,refsim:cpp_standalone",
        help="two of fastsim[:opts], refsim[:device], {norse,snntorch,sinabs,spikingjelly}[:adapter]",
    )
    p.add_argument(
        "--poisson-images", type=nonnegative_int, default=0, help="also compare independent Poisson runs (<= --images)"
    )
    p.add_argument("--name", default=None)
    p.add_argument("--out", type=Path, default=None, help="report folder (default: <runs>/agreement)")
    build_dir_arg(p)
    dask_args(p)

    p = add("interop", cmd_interop, "NIR conformance table: Norse, snnTorch, sinabs, SpikingJelly x network vs fastsim")
    p.add_argument("--specs", nargs="+", default=["mnist-mlp-data", "mnist-cnn-data"], help="spec names")
    p.add_argument("--specs-dir", type=Path, default=None, help="folder of the specs (default: <runs>/specs)")
    p.add_argument("--libraries", nargs="+", default=["norse", "snntorch", "sinabs", "spikingjelly"])
    p.add_argument("--images", type=at_most(N_IMAGES["test"], "a test split"), default=1000)
    p.add_argument("--steps", type=positive_int, default=100)
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--docs", type=Path, default=Path("docs"), help="where interop.md and results/ go")

    p = add("diagnose", cmd_diagnose, "per layer, the SNN's firing rates against the ANN's: where a conversion loses")
    spec_args(p, images=200, steps=300)
    p.add_argument("--device", default="cpu", help="cpu (the event engine) or cuda")
    p.add_argument("--out", type=Path, default=None, help="folder (default: <runs>/diagnose/<spec name>)")
    dask_args(p)
