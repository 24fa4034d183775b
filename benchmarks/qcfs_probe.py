"""A first look at few-step accuracy: a QCFS-trained network's SNN against its own ANN at T = 4 ... 64.

    python benchmarks/qcfs_probe.py --runs R --dataset mnist --model cnn [--images 10000] [--method data]

R holds the QCFS checkpoint (``python -m convert train --activation qcfs ... --runs R``). The spec is the
``qcfs`` method's (θ/2 start, reset by subtraction); ``--method data`` instead converts a ReLU checkpoint with
data-based normalization (the main job's calibration set) and the same θ/2 start and reset by subtraction, for
comparison. Analog (``current``) input and the ``cascade`` schedule, read out by spikes and by the output
membrane; every row on the same test images: the SNN's accuracy with its Wilson interval, and the exact
McNemar test against the ANN on the same images. Writes ``benchmarks/qcfs-probe/<dataset>-<model>-<method>``
``.{md,json}`` (superseded by the latency table, `python -m validation latency`, docs/results/latency/).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from convert import ann, datasets
from convert.contract.provenance import provenance, write_json_atomic, write_text_atomic
from convert.pipeline import copy_spec, normalized_spec
from fastsim import simulate
from validation.markdown import table
from validation.significance import mcnemar, wilson_interval

STEPS = (4, 8, 16, 32, 64)


def _ann_predictions(args: argparse.Namespace, spec, images: np.ndarray) -> np.ndarray:
    """The ANN the SNN is compared with: for QCFS the trained model itself (its quantized activations; the spec's
    own ANN forward, :mod:`convert.ann`, rectifies without quantizing), else the spec's ANN."""
    if args.method != "qcfs":
        return ann.predict(spec, images)
    import torch

    from convert.train import checkpoint_paths, load_model, predictions

    model = load_model(checkpoint_paths(args.runs, args.dataset, args.model)[0])
    return predictions(
        model, torch.as_tensor(images, dtype=torch.float32).reshape(len(images), *spec.input_shape) / 255.0
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--model", default="cnn")
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--method", choices=("qcfs", "data"), default="qcfs")
    args = p.parse_args()
    test = datasets.load(args.dataset, "test")
    images, labels = test.images[: args.images], test.labels[: args.images]
    base = copy_spec(args.dataset, args.model, args.runs, reset="subtract", v_init=0.5)
    stats = None
    if args.method == "data":
        from convert.pipeline import MAIN_CALIB_IMAGES, MAIN_HOLDOUT, stats_for

        stats = stats_for(base, args.dataset, None, args.runs, MAIN_CALIB_IMAGES, holdout=MAIN_HOLDOUT)
    spec, _ = normalized_spec(base, args.method, stats)
    ann_correct = _ann_predictions(args, spec, images) == labels
    rows, record = [], []
    for readout in ("membrane", "spikes"):
        s = dataclasses.replace(spec, encoding="current", schedule="cascade", readout=readout)
        start = time.monotonic()
        rec = simulate(s, images, steps=max(STEPS), checkpoints=list(STEPS), labels=labels, dtype="float32")
        wall = time.monotonic() - start
        for k, t in enumerate(STEPS):
            correct = rec.predictions(k) == labels
            lo, hi = wilson_interval(int(correct.sum()), len(labels))
            test_ = mcnemar(correct, ann_correct)
            gap = 100 * (correct.mean() - ann_correct.mean())
            rows.append(
                (
                    readout,
                    t,
                    f"{100 * ann_correct.mean():.2f}",
                    f"{100 * correct.mean():.2f} ({100 * lo:.2f}–{100 * hi:.2f})",
                    f"{gap:+.2f}",
                    f"{test_.a_only}/{test_.b_only}",
                    f"{test_.p_value:.2g}",
                )
            )
            record.append(
                {
                    "readout": readout,
                    "steps": t,
                    "snn": float(correct.mean()),
                    "ann": float(ann_correct.mean()),
                    "mcnemar": test_.to_dict(),
                    "wall_s_all_steps": wall,
                }
            )
    name = f"{args.dataset}-{args.model}-{args.method}"
    head = ("readout", "T", "ANN %", "SNN % (95 % CI)", "SNN − ANN (pp)", "SNN only / ANN only", "McNemar p")
    text = (
        f"# Few-step probe: {name}, {len(labels)} test images, analog input, cascade, θ/2 start, "
        "reset by subtraction\n\n"
        + "\n".join(table(head, rows))
        + "\n\n"
        + f"QCFS levels/λ per layer: {spec.provenance.get('qcfs')}\n"
    )
    out = Path(__file__).parent / "qcfs-probe"
    write_text_atomic(out / f"{name}.md", text)
    write_json_atomic(out / f"{name}.json", {"rows": record, **provenance(vars(args) | {"runs": args.runs.name}, 0)})
    print(text)


if __name__ == "__main__":
    main()
