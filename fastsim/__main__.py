"""Command line: ``python -m fastsim run ...`` (simulate a spec on a dataset) and ``python -m fastsim bench``.

Wiring only: argument parsing, loading, printing; the work is in :mod:`fastsim.simulate` and
:mod:`fastsim.bench`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convert.cli import check_count, count_or_all, output_file, positive_int, run_command, seed_int
from convert.contract.records import one_class_warning, record_summary


def _run(args: argparse.Namespace) -> int:
    from convert import datasets
    from convert.contract.io import load_spec
    from convert.contract.provenance import provenance
    from fastsim.options import SimOptions
    from fastsim.simulate import simulate

    spec = load_spec(args.spec)
    datasets.check_spec_dataset(spec, args.dataset, args.spec)
    split = datasets.load(args.dataset, args.split, args.root)
    n = check_count("--images", args.images, len(split.images), f"the {args.dataset} {args.split} split")
    options = SimOptions(
        device=args.device,
        dtype=args.dtype,
        matmul=args.matmul,
        kernel=args.kernel,
        batch_size=args.batch_size,
        compile={"auto": None, "on": True, "off": False}[args.compile],
        progress=not args.no_progress,
    )
    record = simulate(
        spec,
        split.images[:n],
        steps=args.steps,
        seed=args.seed,
        labels=split.labels[:n],
        record_neurons=args.record_neurons,
        options=options,
    )
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}
    record = record.with_meta(
        dataset=args.dataset, split=args.split, spec_file=str(args.spec), provenance=provenance(config, args.seed)
    )
    record.save(args.out)
    print(record_summary(record))
    warning = one_class_warning(record)
    if warning:
        print(f"warning: {warning}")
    meta = record.meta
    print(
        f"{meta['image_steps_per_s']:,.0f} image-steps/s on {meta['device']} "
        f"({meta['dtype']}, {meta['matmul']}, kernel {meta['kernel']})"
    )
    print(f"record written to {args.out}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from fastsim.bench import markdown, run_benchmark, save

    result = run_benchmark(
        args.device,
        quick=args.quick,
        spec_paths=args.spec,
        compile=args.compile == "on",
        repeats=args.repeats,
        matmuls=tuple(args.matmul) if args.matmul else None,
        kernels=tuple(args.kernel) if args.kernel else None,
        n_images=args.images,
        steps=args.steps,
    )
    json_path, md_path = save(result, args.out_dir)
    print(markdown(result))
    print(f"written {json_path} and {md_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fastsim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="simulate a spec on a dataset split and write a SpikeRecord (.npz)")
    run.add_argument("--spec", type=Path, required=True, help="spec file (.npz) from `python -m convert`")
    run.add_argument("--dataset", default="mnist", choices=("mnist", "fashion"))
    run.add_argument("--split", default="test", choices=("train", "test"))
    run.add_argument("--root", type=Path, default=None, help="dataset root (default: $SNN_DATA or data/)")
    run.add_argument("--images", type=count_or_all, default="all", help="first N images of the split, or all (default)")
    run.add_argument("--steps", type=positive_int, required=True, help="time steps per image")
    run.add_argument("--device", default="cpu", help="cpu or cuda")
    run.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    run.add_argument("--seed", type=seed_int, default=0, help="seed of the Poisson input")
    run.add_argument(
        "--matmul",
        default="fp32",
        choices=("fp32", "tf32x2", "tf32x3"),
        help="float32 synaptic products: fp32, or weights split into 2/3 TF32 limbs for GPU tensor cores",
    )
    run.add_argument("--batch-size", type=positive_int, default=None, help="images per batch (default: memory budget)")
    run.add_argument(
        "--kernel",
        default="auto",
        choices=("auto", "torch", "events", "triton"),
        help="auto (default): events on a CPU, torch on a GPU; torch: time-batched; events: event-driven (CPU, "
        "the fastest there for sparse networks); triton: Dense layers as one fused Triton kernel per chunk "
        "(float32, CUDA). The record names the kernel that ran",
    )
    run.add_argument(
        "--compile",
        default="auto",
        choices=("auto", "on", "off"),
        help="torch.compile the kernels (auto: for runs long enough to pay for compiling)",
    )
    run.add_argument("--record-neurons", action="store_true", help="also keep per-neuron spike counts")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--out", type=output_file, required=True, help="record file (.npz), written atomically")
    run.set_defaults(func=_run)

    bench = sub.add_parser("bench", help="image-steps/s of the MLP and CNN vs a plain loop (and SpikingJelly)")
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--quick", action="store_true", help="fewer images and steps")
    bench.add_argument("--spec", action="append", default=None, help="benchmark these spec files instead")
    bench.add_argument("--compile", default="on", choices=("on", "off"), help="torch.compile the kernels")
    bench.add_argument(
        "--matmul",
        action="append",
        choices=("fp32", "tf32x2", "tf32x3"),
        default=None,
        help="float32 product modes to time (repeatable; default fp32 on cpu, all three on cuda)",
    )
    bench.add_argument(
        "--kernel",
        action="append",
        choices=("torch", "events", "triton"),
        default=None,
        help="kernels to time (repeatable; default torch and events on a CPU, torch and triton on a GPU with Triton)",
    )
    bench.add_argument("--images", type=int, default=None, help="images per row (default: by device and --quick)")
    bench.add_argument("--steps", type=int, default=None, help="steps per image (default: 100 quick, else 300)")
    bench.add_argument("--repeats", type=int, default=3, help="timed runs per engine and row (median kept)")
    bench.add_argument("--out-dir", type=Path, default=Path("benchmarks"))
    bench.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
