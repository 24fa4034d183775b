"""What the command groups share: the options and loading of a command that runs one spec on a split's first
images, and the Dask options with the runner that shards images over a cluster."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable
from pathlib import Path

from convert.cli import check_count, positive_int, seed_int

#: ``add(name, func, help)``: a sub-command with --root and --runs, as ``validation.__main__`` builds it
Add = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def spec_args(p: argparse.ArgumentParser, images: int, steps: int) -> None:
    """The options of a command that runs one spec on the first images of a split."""
    p.add_argument("--spec", type=Path, required=True)
    p.add_argument("--dataset", default=None, choices=("mnist", "fashion"), help="default: the spec's own (else mnist)")
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--images", type=positive_int, default=images)
    p.add_argument("--steps", type=positive_int, default=steps)
    p.add_argument("--seed", type=seed_int, default=0)


def spec_and_images(args: argparse.Namespace):
    """The spec of ``--spec`` (checked against ``--dataset``) and the first ``--images`` images and labels of
    the split, or the one-line error that says why not."""
    from convert import datasets
    from convert.contract.io import load_spec

    spec = load_spec(args.spec)
    if args.dataset is None:  # the dataset the spec was converted for
        recorded = datasets.spec_dataset(spec)
        args.dataset = recorded if recorded in datasets.DATASETS else "mnist"
    datasets.check_spec_dataset(spec, args.dataset, args.spec)
    split = datasets.load(args.dataset, args.split, args.root)
    n = check_count("--images", args.images, len(split.images), f"the {args.dataset} {args.split} split")
    return spec, split.images[:n], split.labels[:n]


@contextlib.contextmanager
def cluster_runner(args: argparse.Namespace, desc: str, run_fn):
    """None (run here), or with --dask a runner of ``run_fn`` that shards the images over the cluster."""
    if not args.dask:
        yield None
        return
    from validation import cluster

    with cluster.connect(args.dask) as client:
        yield cluster.sharded(client, run_fn, block=args.block_images, desc=desc)


def build_dir_arg(p: argparse.ArgumentParser) -> None:
    """``--build-dir`` of a command that runs Brian2 standalone projects (its default is resolved per run)."""
    p.add_argument(
        "--build-dir",
        type=Path,
        default=None,
        help="where Brian2 standalone projects are compiled (default: $SNN_BUILD, else <runs>/build/refsim)",
    )


def dask_address(text: str) -> str:
    """A ``--dask`` address, ``local:N`` checked at parse time (N from 1 to the cores; a scheduler address is
    checked when the command connects, by :func:`validation.cluster.connect`)."""
    from validation.cluster import ClusterError, local_workers

    try:
        local_workers(text)
    except ClusterError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--dask ")) from None
    return text


def dask_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dask",
        type=dask_address,
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
