"""A torchvision family's training rate, chosen without the test set: the choice behind ``RECIPES``.

    python benchmarks/torchvision_recipe.py vgg16_bn [--rates 1e-4 3e-4 1e-3] [--out benchmarks/torchvision-recipe]

For each rate: the family as ``python -m validation torchvision`` builds it (seed 0), one epoch of Adam over the
first 5 000 MNIST training images (the stage's brief training), then its accuracy on training images
5 000–5 999, which that training does not read (nor does the stage's calibration, which takes the last 2 000).
The best rate goes into ``validation.paper.torchvision_models.RECIPES``. Writes ``<out>/<family>.{json,md}`` with
the package versions and git commit; a rate already measured under the same settings is read back.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np

from convert.contract.provenance import provenance, write_json_atomic, write_text_atomic
from validation.paper.torchvision_models import NAMES, build, padded, train
from validation.paper.torchvision_table import VisionConfig

HELD_OUT = (5_000, 6_000)


def held_out_accuracy(name: str, lr: float, root: Path | None) -> dict:
    import torch

    from convert import datasets
    from convert.train import predictions

    cfg = dataclasses.replace(VisionConfig(models=(name,)), lr=lr, epochs=1)
    model, size = build(name, cfg.seed)
    data = datasets.load("mnist", "train", root)
    wall = train(model, padded(data.images[: cfg.train_images], size), data.labels[: cfg.train_images], cfg)
    lo, hi = HELD_OUT
    x = torch.as_tensor(padded(data.images[lo:hi], size), dtype=torch.float32) / 255.0
    with torch.no_grad():
        correct = predictions(model, x) == np.asarray(data.labels[lo:hi])
    return {"lr": lr, "held_out_accuracy": float(correct.mean()), "train_s": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family", choices=NAMES)
    parser.add_argument("--rates", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3])
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "torchvision-recipe")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    path = args.out / f"{args.family}.json"
    config = {"family": args.family, "train_images": VisionConfig().train_images, "held_out": list(HELD_OUT)}
    done = {}
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("config") == config:
            done = {r["lr"]: r for r in saved["rows"]}
    rows = []
    for lr in args.rates:
        rows.append(done.get(lr) or held_out_accuracy(args.family, lr, args.data_root))
        print(f"{args.family} lr {lr:g}: {100 * rows[-1]['held_out_accuracy']:.1f} %", flush=True)
        rows_so_far = sorted({r["lr"]: r for r in [*done.values(), *rows]}.values(), key=lambda r: r["lr"])
        write_json_atomic(path, {"rows": rows_so_far, **provenance(config, 0)})
    best = max(rows, key=lambda r: r["held_out_accuracy"])
    lines = [
        f"# {args.family}: Adam's rate for one epoch over 5 000 MNIST training images "
        f"(`python benchmarks/torchvision_recipe.py {args.family}`)",
        "",
        "Accuracy on training images 5 000–5 999 (not read by the training).",
        "",
        "| lr | held-out accuracy | training wall time |",
        "|---|---|---|",
        *(f"| {r['lr']:g} | {100 * r['held_out_accuracy']:.1f} % | {r['train_s']:.0f} s |" for r in rows),
        "",
        f"Best: {best['lr']:g}.",
    ]
    write_text_atomic(args.out / f"{args.family}.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
