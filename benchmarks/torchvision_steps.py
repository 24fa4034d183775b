"""A torchvision row's SNN accuracy against the number of steps: is its loss at T = 32 latency or a floor?

    python benchmarks/torchvision_steps.py --model densenet121 [--images 300] [--steps 256] [--gate-rule max-count]

Reads the spec that ``python -m validation torchvision`` converted for the model (``<runs>/torchvision/specs/``,
the row's method and training; run the stage first) and simulates it (fastsim, float32, seed 0) on the first
``--images`` MNIST test images, padded as the stage pads them, keeping the output counts at 8, 16, 32, … steps.
Per checkpoint: the accuracy with its Wilson interval and the exact McNemar test against the spec's ANN on the
same images. ``--gate-rule max-count`` runs the spec with every max-pool gate on the max-count rule (the same
ANN; docs/semantics.md). Writes ``<model>[-<rule>].json`` (with the config, package versions and git commit)
and ``.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from convert.ann import predict
from convert.contract.provenance import write_report
from convert.layers.maxpool2d import RULES, with_rule
from convert.pipeline import default_runs
from fastsim import simulate
from validation.paper.torchvision_table import converted_spec, row_test_images
from validation.significance import mcnemar, wilson_interval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--gate-rule", choices=RULES, default="leader")
    parser.add_argument("--runs", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "torchvision-steps")
    args = parser.parse_args()
    path, spec = converted_spec(args.model, args.runs or default_runs())
    spec = dataclasses.replace(spec, layers=with_rule(spec.layers, args.gate_rule))
    name = args.model if args.gate_rule == "leader" else f"{args.model}-{args.gate_rule}"
    images, labels = row_test_images(spec, args.images)
    n = len(labels)
    ann = predict(spec, images, batch_size=50) == labels
    checkpoints = [t for t in (8, 16, 32, 64, 128, 256, 512, 1024) if t < args.steps] + [args.steps]
    start = time.monotonic()
    record = simulate(spec, images, steps=args.steps, labels=labels, checkpoints=checkpoints, dtype="float32", seed=0)
    wall = time.monotonic() - start
    rows = []
    for i, t in enumerate(checkpoints):
        correct = record.predictions(i) == labels
        lo, hi = wilson_interval(int(correct.sum()), n)
        rows.append(
            {"steps": t, "accuracy": float(correct.mean()), "ci95": [lo, hi], "vs_ann": mcnemar(correct, ann).to_dict()}
        )
    lo, hi = wilson_interval(int(ann.sum()), n)
    config = {
        "model": args.model,
        "spec": path.name,
        "images": n,
        "steps": args.steps,
        "dtype": "float32",
        "gate_rule": args.gate_rule,
    }
    result = {"ann": float(ann.mean()), "ann_ci95": [lo, hi], "rows": rows, "simulate_s": round(wall, 1)}
    lines = [
        f"# {args.model}: SNN accuracy against steps (`python benchmarks/torchvision_steps.py --model {args.model}"
        f" --images {n} --steps {args.steps} --gate-rule {args.gate_rule}`)",
        "",
        f"Spec `{path.name}` ({spec.provenance.get('method', '?')}; gates: the {args.gate_rule} rule), the first "
        f"{n} MNIST test images; its ANN "
        f"on them: {100 * ann.mean():.1f} % ({100 * lo:.1f}–{100 * hi:.1f}). Simulated in {wall:.0f} s.",
        "",
        "| steps | SNN | 95 % Wilson | ANN − SNN (95 %) | McNemar p |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        d = r["vs_ann"]["difference_ci95"]
        lines.append(
            f"| {r['steps']} | {100 * r['accuracy']:.1f} % | {100 * r['ci95'][0]:.1f}–{100 * r['ci95'][1]:.1f} | "
            f"{-100 * d[1]:.1f}–{-100 * d[0]:.1f} pp | {r['vs_ann']['p_value']:.1e} |"
        )
    write_report(args.out, name, result, "\n".join(lines) + "\n", config, 0)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
