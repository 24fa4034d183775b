"""What the command groups share: the options and loading of a command that runs one spec on a split's first
images, and the Dask options with the runner that shards images over a cluster."""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    p.add_argument(
        "--pad-to-spec",
        action="store_true",
        help="zero-pad the 28x28 images, centred, to the spec's larger input (as `validation torchvision` does)",
    )


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
    return spec, fitted(spec, split.images[:n], args.pad_to_spec, args.spec), split.labels[:n]


def fitted(spec: Any, images: Any, pad: bool, source: Any) -> Any:
    """``images`` as the spec takes them: as they are, or zero-padded to its larger square input with ``pad``;
    a one-line error naming the option where the shapes differ and it was not given."""
    from convert import datasets

    want = tuple(spec.input_shape)
    have = tuple(images.shape[1:])
    if math.prod(want) == math.prod(have) or len(want) != 3 or want[0] != 1:
        return images
    bigger = want[1] == want[2] >= max(have[-2:])
    if pad and bigger:
        return datasets.padded(images, want[1])
    fix = "pass --pad-to-spec to zero-pad them, centred" if bigger else "use a spec converted for these images"
    raise ValueError(f"{source} takes {want} images, the dataset's are {have[-2:]}: {fix}")


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
