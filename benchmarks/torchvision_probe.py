"""Which torchvision classification families convert as they come: a probe, no training.

    python benchmarks/torchvision_probe.py [--out benchmarks/torchvision-probe]

Every ReLU classification family torchvision ships, built with ``num_classes=10`` and its first convolution
for one channel (untrained weights, BatchNorm with its initial statistics), traced by ``convert.from_torch`` on
the smallest input it takes (32×32, AlexNet 64×64). Per model: converts (spec layers, synapses) or the one error
that lists all its problems. Writes ``probe.md`` and ``probe.json`` (with the package versions and git commit).
Models that convert here are trained briefly and held to Brian2 by ``python -m validation torchvision``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from convert.contract.provenance import write_report
from convert.contract.spec import SpecError
from convert.from_torch import from_torch
from validation.paper.torchvision_models import NAMES, build


def probe(name: str) -> dict:
    model, size = build(name, seed=0)
    model.eval()
    start = time.perf_counter()
    try:
        spec = from_torch(model, (1, size, size))
    except SpecError as err:
        return {"model": name, "input": size, "converts": False, "reason": str(err)}
    from convert.ann import macs_per_image

    synapses = sum(macs_per_image(spec))  # the synapses every spiking layer's family connects
    return {
        "model": name,
        "input": size,
        "converts": True,
        "layers": len(spec.layers),
        "populations": len(spec.spiking_indices),
        "synapses": int(synapses),
        "convert_s": round(time.perf_counter() - start, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "torchvision-probe")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows = [probe(name) for name in NAMES]
    lines = [
        "# torchvision families as they come (untrained; `python benchmarks/torchvision_probe.py`)",
        "",
        "| model | input | converts | spec layers | populations | synapses | or why not |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["converts"]:
            lines.append(
                f"| {r['model']} | {r['input']}² | yes | {r['layers']} | {r['populations']} | {r['synapses']:,} | |"
            )
        else:
            lines.append(f"| {r['model']} | {r['input']}² | no | | | | {r['reason'][:400]} |")
    converted = sum(r["converts"] for r in rows)
    lines += ["", f"{converted} of {len(rows)} families convert."]
    write_report(args.out, "probe", {"rows": rows}, "\n".join(lines) + "\n", {"out": args.out.name}, 0)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
