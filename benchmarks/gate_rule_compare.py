"""The two max-pool gate rules on one converted torchvision row, paired on the same images.

    python benchmarks/gate_rule_compare.py --model densenet121 [--images 300] [--steps 64]

Reads the spec that ``python -m validation torchvision`` converted for the model (run the stage first) and
simulates it twice on the first ``--images`` MNIST test images (fastsim, float32, seed 0, padded as the stage
pads them): with its max-pool gates on the leader rule (the default) and on the max-count rule
(docs/semantics.md); the ANN is the same. Per checkpoint: both accuracies with their Wilson intervals, and the
exact McNemar test of max-count against leader on the same images with the interval of the difference. Writes
``<model>.json`` (config, package versions, git commit) and ``<model>.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

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
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--runs", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "gate-rules")
    args = parser.parse_args()
    path, spec = converted_spec(args.model, args.runs or default_runs())
    images, labels = row_test_images(spec, args.images)
    n = len(labels)
    checkpoints = [t for t in (8, 16, 32, 64, 128, 256) if t < args.steps] + [args.steps]
    correct = {}
    for rule in RULES:
        ruled = dataclasses.replace(spec, layers=with_rule(spec.layers, rule))
        record = simulate(ruled, images, steps=args.steps, labels=labels, checkpoints=checkpoints, dtype="float32")
        correct[rule] = [record.predictions(i) == labels for i in range(len(checkpoints))]
    rows = []
    for i, t in enumerate(checkpoints):
        row: dict = {"steps": t}
        for rule in RULES:
            c = correct[rule][i]
            row[rule] = {"accuracy": float(c.mean()), "ci95": list(wilson_interval(int(c.sum()), n))}
        row["max_count_vs_leader"] = mcnemar(correct["max-count"][i], correct["leader"][i]).to_dict()
        rows.append(row)
    config = {"model": args.model, "spec": path.name, "images": n, "steps": args.steps, "dtype": "float32"}
    lines = [
        f"# {args.model}: the gate's two rules (`python benchmarks/gate_rule_compare.py --model {args.model} "
        f"--images {n} --steps {args.steps}`)",
        "",
        f"Spec `{path.name}`, the first {n} MNIST test images, the same images and input for both rules.",
        "",
        "| steps | leader | max-count | max-count − leader (95 %) | McNemar p |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lead, count, paired = r["leader"], r["max-count"], r["max_count_vs_leader"]
        lo, hi = paired["difference_ci95"]
        lines.append(
            f"| {r['steps']} | {100 * lead['accuracy']:.1f} % ({100 * lead['ci95'][0]:.1f}–{100 * lead['ci95'][1]:.1f})"
            f" | {100 * count['accuracy']:.1f} % ({100 * count['ci95'][0]:.1f}–{100 * count['ci95'][1]:.1f})"
            f" | {100 * lo:+.1f} to {100 * hi:+.1f} pp | {paired['p_value']:.1e} |"
        )
    write_report(args.out, args.model, {"rows": rows}, "\n".join(lines) + "\n", config, 0)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
