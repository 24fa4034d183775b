"""Command line: ``python -m refsim run --spec SPEC --dataset mnist --images N --steps T --device D --out F``.

Runs a spec on the first ``--images`` images (from ``--start``) of a dataset split with Brian2, shows progress
per batch, prints accuracy and image-steps/s and writes the SpikeRecord (``.npz``, atomically) with the
provenance block (config, seed, versions, git commit, machine) in its meta.

``--input``: ``poisson`` (Brian2's PoissonGroup and random generator), ``spikes`` (the counter-based spikes of
``convert.encoding.poisson_spikes`` with ``--seed``, identical to fastsim's) or ``current`` (for specs with
the current encoding); the default follows the spec.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from convert.cli import check_count, count_or_all, nonnegative_int, output_file, positive_int, run_command, seed_int
from convert.contract.io import load_spec
from convert.contract.provenance import provenance
from convert.contract.records import SpikeRecord, concatenate, record_summary
from convert.datasets import check_spec_dataset, load
from convert.encoding import poisson_spikes
from refsim.devices import DEVICES, DeviceUnavailable
from refsim.simulate import DEFAULT_BATCH_SIZE, simulate

SPIKE_CHUNK = 1000  # images whose input spikes are generated at once in --input spikes


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m refsim", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="simulate a spec on dataset images with Brian2")
    run.add_argument("--spec", required=True, help="NetworkSpec file (.npz)")
    run.add_argument("--dataset", default="mnist", choices=("mnist", "fashion"))
    run.add_argument("--split", default="test", choices=("train", "test"))
    run.add_argument("--root", default=None, help="dataset root (default $SNN_DATA or data/)")
    run.add_argument("--images", type=count_or_all, default=100, help="number of images, or all (from --start)")
    run.add_argument("--start", type=nonnegative_int, default=0, help="index of the first image in the split")
    run.add_argument("--steps", type=positive_int, required=True, help="time steps per image")
    run.add_argument("--device", default="cpp_standalone", choices=DEVICES)
    run.add_argument("--input", default=None, choices=("poisson", "spikes", "current"))
    run.add_argument("--seed", type=seed_int, default=0)
    run.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE)
    run.add_argument("--threads", type=nonnegative_int, default=0, help="OpenMP threads of cpp_standalone (0: none)")
    run.add_argument("--target", default="numpy", choices=("numpy", "cython"), help="runtime code generation")
    run.add_argument(
        "--build-dir",
        default=None,
        help="standalone build cache (default: $SNN_BUILD, else build/refsim/ under $SNN_RUNS or runs/)",
    )
    run.add_argument("--record-neurons", action="store_true", help="also store per-neuron spike counts")
    run.add_argument("--out", type=output_file, required=True, help="output SpikeRecord (.npz)")
    return p


def check_input(mode: str, encoding: str) -> None:
    if (mode == "current") != (encoding == "current"):
        raise ValueError(f"--input {mode} does not fit a spec with encoding {encoding!r}; leave --input out")


def run(args: argparse.Namespace) -> SpikeRecord:
    spec = load_spec(args.spec)
    check_spec_dataset(spec, args.dataset, args.spec)
    mode = args.input or spec.encoding
    check_input(mode, spec.encoding)
    data = load(args.dataset, args.split, args.root)
    where = f"the {args.dataset} {args.split} split"
    n = check_count("--images", args.images, len(data.images), where, start=args.start)
    indices = np.arange(args.start, args.start + n)
    common = dict(
        steps=args.steps,
        device=args.device,
        batch_size=args.batch_size,
        seed=args.seed,
        record_neurons=args.record_neurons,
        build_dir=args.build_dir,
        progress=True,
        target=args.target,
        threads=args.threads,
    )
    t0 = time.perf_counter()
    parts = []
    chunk = max(SPIKE_CHUNK, args.batch_size) if mode == "spikes" else len(indices)
    for lo in range(0, len(indices), chunk):
        idx = indices[lo : lo + chunk]
        images, labels = data.images[idx], data.labels[idx]
        if mode == "spikes":
            spikes = poisson_spikes(images, idx, args.steps, args.seed, spec.max_rate_hz, spec.dt_ms)
            parts.append(simulate(spec, spikes=spikes, labels=labels, image_indices=idx, **common))
        else:
            parts.append(simulate(spec, images, labels=labels, image_indices=idx, **common))
    wall = time.perf_counter() - t0
    run_s = sum(p.meta["run_s"] for p in parts)
    config = {**vars(args), "input": mode, "command": "refsim run"}
    meta = {
        **parts[0].meta,
        "input_generator": "convert.encoding.poisson_spikes" if mode == "spikes" else None,
        "run_s": run_s,
        "wall_s": wall,
        "image_steps_per_s": len(indices) * args.steps / run_s if run_s > 0 else None,
        "provenance": provenance(config, args.seed),
    }
    return concatenate(parts).with_meta(**meta)


def _run_command(args: argparse.Namespace) -> int:
    record = run(args)
    record.save(args.out)
    meta = record.meta
    compile_s = meta.get("compile_s")
    print(record_summary(record))
    print(
        f"device {meta['device']}: {meta['image_steps_per_s']:.0f} image-steps/s simulated "
        f"({meta['wall_s']:.1f} s in all"
        + (f", compile {compile_s:.1f} s" if compile_s is not None else "")
        + f"); record written to {args.out}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = parser()
    p.set_defaults(func=_run_command)
    return run_command(p, argv, extra_errors=(DeviceUnavailable,))


if __name__ == "__main__":
    sys.exit(main())
