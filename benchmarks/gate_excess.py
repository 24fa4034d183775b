"""How many more spikes a max-pool gate passes than the largest spike count in its window, at T steps.

    python benchmarks/gate_excess.py --model densenet121 [--images 100] [--steps 32 256]

Takes a torchvision row's converted spec (``<runs>/torchvision/specs/``; run ``validation torchvision`` first)
whose second layer is a max-pool gate on its stem, and builds a probe spec of three layers: the stem, the gate,
and a counter population (``Neurons``, threshold 1, reset by subtraction, fed by the gate's output through an
identity skip edge of gain 1, so it fires exactly when the gate passes a spike, in the same step). Simulated
(fastsim, float64, the spec's input and schedule) on the first ``--images`` MNIST test images, padded as the
stage pads them: per window, the gate's passed spikes against the largest count among its units. Writes
``<model>.json`` and ``<model>.md`` under ``--out`` with the config, package versions and git commit.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from convert.contract.provenance import write_report
from convert.contract.spec import MaxPool2d, NetworkSpec, Neurons, Skip
from convert.pipeline import default_runs
from fastsim import simulate
from validation.paper.torchvision_table import converted_spec, row_test_images


def probe_spec(spec: NetworkSpec) -> NetworkSpec:
    """The stem, its gate and a population that fires whenever the gate passes a spike."""
    stem, gate = spec.layers[:2]
    if not isinstance(gate, MaxPool2d):
        raise SystemExit(f"the spec's second layer is {type(gate).__name__}, not a max-pool gate")
    pooled = spec.shapes[2]
    starts = None if spec.v_init_neurons is None else (spec.v_init_neurons[0], np.zeros(int(np.prod(pooled))))
    return dataclasses.replace(
        spec,
        layers=(stem, gate, Neurons(pooled, threshold=1.0)),
        skips=(Skip(1, 2, 1.0),),
        reset="subtract",
        readout="spikes",
        labels=(),
        v_init_neurons=starts,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--steps", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--runs", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "gate-excess")
    args = parser.parse_args()
    path, spec = converted_spec(args.model, args.runs or default_runs())
    probe = probe_spec(spec)
    images, _ = row_test_images(spec, args.images)
    members = spec.layers[1].members(spec.shapes[1])
    rows = []
    for steps in args.steps:
        record = simulate(probe, images, steps=steps, record_neurons=True, dtype="float64", kernel="torch", seed=0)
        counts, passed = record.neuron_counts[0], record.neuron_counts[1]
        largest = np.where(members[None] >= 0, counts[:, np.maximum(members, 0)], -1).max(-1)
        rows.append(
            {
                "steps": steps,
                "passed_over_largest": float(passed.sum() / largest.sum()),
                "windows_passing_more": float((passed > largest).mean()),
                "windows_passing_less": float((passed < largest).mean()),
                "mean_largest_count": float(largest.mean()),
            }
        )
    config = {"model": args.model, "spec": path.name, "images": len(images), "steps": args.steps}
    lines = [
        f"# {args.model}: the stem's max-pool gate against the largest count in its windows "
        f"(`python benchmarks/gate_excess.py --model {args.model} --images {len(images)} --steps "
        f"{' '.join(map(str, args.steps))}`)",
        "",
        f"Gate {spec.layers[1]!r} on the stem of `{path.name}`, {len(images)} MNIST test images, "
        f"{members.shape[0]} windows each.",
        "",
        "| steps | passed / largest count | windows passing more | windows passing less | mean largest count |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['steps']} | {r['passed_over_largest']:.3f} | {100 * r['windows_passing_more']:.1f} % | "
            f"{100 * r['windows_passing_less']:.1f} % | {r['mean_largest_count']:.2f} |"
        )
    write_report(args.out, args.model, {"rows": rows}, "\n".join(lines) + "\n", config, 0)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
