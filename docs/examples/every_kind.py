"""A model with every kind the converter takes: bias, BatchNorm, max-pooling and two residual blocks (one with an
identity shortcut, one with a strided 1×1 convolution shortcut), trained briefly on MNIST, converted with
``from_torch``, normalized (data-based) and run in fastsim; the README's "Your own network" section.

    .venv/bin/python docs/examples/every_kind.py --out runs/every-kind   # then:
    .venv/bin/python -m validation agree --spec runs/every-kind/spec.npz --dataset mnist --images 100 \\
        --steps 200 --engines fastsim:float64,refsim:cpp_standalone
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from convert import ann, datasets
from convert.contract.io import save_spec
from convert.contract.provenance import provenance, write_json_atomic
from convert.from_torch import from_torch
from convert.models import Block
from convert.pipeline import normalized_spec
from convert.stats import collect_stats
from fastsim.simulate import simulate
from validation.significance import mcnemar, wilson_interval


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)  # a conv with a bias, then BN
        self.pool = nn.MaxPool2d(2)  # 28 → 14
        self.block1, self.block2 = Block(8, 8, 1), Block(8, 16, 2)  # 14 → 7
        self.head = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.bn(self.stem(x))))
        x = self.block2(self.block1(x))
        return self.head(torch.flatten(x, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="data root (default: $SNN_DATA or data/)")
    parser.add_argument("--out", type=Path, default=Path("runs/every-kind"))
    parser.add_argument("--images", type=int, default=1000, help="test images simulated")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0, help="training, and the Poisson input of the SNN")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    train = datasets.load("mnist", "train", root=args.root)
    test = datasets.load("mnist", "test", root=args.root)
    model = Net()
    x = torch.from_numpy(train.images[:20000]).float().div(255).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(train.labels[:20000]).long()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for i in range(0, len(x), 100):  # one quick epoch on 20 000 training images
        opt.zero_grad()
        F.cross_entropy(model(x[i : i + 100]), y[i : i + 100]).backward()
        opt.step()

    base = from_torch(model.eval(), (1, 28, 28), dataset="mnist")  # BN folded, gate and skip edges kept
    stats = collect_stats(base, train.images[20000:25000])  # calibration: training images not trained on
    spec, report = normalized_spec(base, "data", stats)
    print(report.table())
    args.out.mkdir(parents=True, exist_ok=True)
    save_spec(spec, args.out / "spec.npz")
    images, labels = test.images[: args.images], test.labels[: args.images]
    ann_correct = ann.predict(spec, images) == labels
    rec = simulate(spec, images, steps=args.steps, seed=args.seed, labels=labels, dtype="float64", progress=True)
    snn_correct = rec.predictions() == labels
    n = len(labels)
    result = {
        "layers": [
            type(layer).__name__ + ("+skip" if getattr(layer, "skip_source", None) is not None else "")
            for layer in spec.layers
        ],
        "images": args.images,
        "steps": args.steps,
        "ann_accuracy": float(ann_correct.mean()),
        "ann_interval_95": wilson_interval(int(ann_correct.sum()), n),
        "snn_accuracy": float(snn_correct.mean()),
        "snn_interval_95": wilson_interval(int(snn_correct.sum()), n),
        "snn_vs_ann_mcnemar": mcnemar(snn_correct, ann_correct).to_dict(),
        "snn_accuracy_by_checkpoint": dict(
            zip(map(int, rec.checkpoints), map(float, rec.accuracy_curve()), strict=True)
        ),
    }
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "root"}
    result |= provenance(config, seed=args.seed)
    write_json_atomic(args.out / "result.json", result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("versions", "machine")}, indent=1))


if __name__ == "__main__":
    main()
