"""torchvision's classification families as they come, trained briefly on MNIST and converted:
``python -m validation torchvision``.

Every ReLU classification family torchvision ships is built with ``num_classes=10`` and its first convolution
for one channel (:func:`one_channel`; nothing else edited), on MNIST zero-padded to the smallest input it takes
(32×32; AlexNet 64×64). Per model:

1. ``from_torch`` either converts it or refuses it with one message that lists every problem (untrained: the
   structure decides); a refused model is a row with its reason;
2. brief training: ``train_images`` training images (the first ones, in one seeded shuffled order),
   ``epochs`` epochs of Adam at ``lr``, batches of ``batch``, BatchNorm in train mode; the weights are cached
   by the content of everything that determines them (:func:`train_key`), so a rerun reuses them;
3. the ANN's own predictions (the torch model in eval mode) on the first ``test_images`` test images;
4. :func:`convert.api.to_snn` with ``method`` for T = ``steps`` on ``calib_images`` training images (the last
   ones of the training set, which the brief training did not read; the default ``calibrated-pc``: thresholds
   per channel, bias and potential correction against the clip-floor model, no simulation): analog input, the
   cascade schedule, reset by subtraction, every membrane at θ/2, membrane readout; fastsim (``dtype``) to
   ``steps`` with the accuracy at every checkpoint, its Wilson interval and McNemar's paired test against the
   ANN on the same images;
5. where Brian2's explicit synapses fit (``agreement_max_synapses``), fastsim float64 against Brian2
   cpp_standalone on ``agreement_images`` test images × ``agreement_steps`` steps: per-neuron counts of every
   layer compared.

Writes ``<runs>/torchvision/table.{json,md}`` (provenance: config, seed, versions, commit, machine) and one
``<model>.json`` per finished model, so that an interrupted run resumes at the next model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convert.contract.provenance import provenance, write_json_atomic, write_text_atomic

#: (family, builder keyword arguments, input size)
FAMILIES: tuple[tuple[str, dict[str, Any], int], ...] = (
    ("resnet18", {}, 32),
    ("resnet34", {}, 32),
    ("resnet50", {}, 32),
    ("vgg11_bn", {}, 32),
    ("vgg16_bn", {}, 32),
    ("alexnet", {}, 64),
    ("squeezenet1_1", {}, 32),
    ("googlenet", {"aux_logits": False, "init_weights": True}, 32),
    ("densenet121", {}, 32),
    ("mobilenet_v2", {}, 32),
    ("shufflenet_v2_x1_0", {}, 32),
)
NAMES = tuple(f[0] for f in FAMILIES)
#: families whose brief training needs its own learning rate or epochs: Adam at 1e-3 for one epoch leaves them
#: near chance. The rate is the best of 1e-4, 3e-4 and 1e-3 after one epoch, by the accuracy on 1 000 training
#: images the training does not read (images 5 000–5 999; AlexNet 36 / 38 / 21 %, SqueezeNet 29 / 37 / 11 %,
#: vgg11_bn 93 / 53 / 18 %), never on the test set; three epochs where one at the best rate still leaves a family
#: below 40 %
RECIPES: dict[str, dict[str, Any]] = {
    "alexnet": {"lr": 3e-4, "epochs": 3},
    "squeezenet1_1": {"lr": 3e-4, "epochs": 3},
    "vgg11_bn": {"lr": 1e-4},
}
SNN_FIELDS = {"encoding": "current", "readout": "membrane", "schedule": "cascade", "v_init": 0.5}


@dataclass(frozen=True)
class VisionConfig:
    models: tuple[str, ...] = NAMES
    train_images: int = 5_000
    epochs: int = 1
    lr: float = 1e-3
    batch: int = 64
    test_images: int = 1_000
    calib_images: int = 2_000
    method: str = "calibrated-pc"
    steps: int = 32
    checkpoints: tuple[int, ...] = (32,)
    dtype: str = "float32"
    agreement_images: int = 2
    agreement_steps: int = 32
    agreement_max_synapses: int = 25_000_000
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [m for m in self.models if m not in NAMES]
        if unknown:
            raise ValueError(f"unknown torchvision families {unknown}; choose from {', '.join(NAMES)}")
        if sorted(self.checkpoints) != list(self.checkpoints) or self.checkpoints[-1] != self.steps:
            raise ValueError(f"checkpoints {self.checkpoints} must rise to steps={self.steps}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def one_channel(model: Any) -> Any:
    """``model`` with its first 3-channel convolution replaced by a 1-channel one of the same settings."""
    from torch import nn

    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m.in_channels == 3:
            conv = nn.Conv2d(
                1, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups, m.bias is not None
            )
            parent = model
            *path, last = name.split(".")
            for part in path:
                parent = getattr(parent, part)
            setattr(parent, last, conv)
            return model
    raise ValueError("the model has no 3-channel convolution")


def build(name: str, seed: int) -> tuple[Any, int]:
    """The family ``name`` as it comes (10 classes, one input channel, seeded initial weights) and its input
    size."""
    import torch

    from convert.vision import import_torchvision

    kwargs, size = next((k, s) for n, k, s in FAMILIES if n == name)
    tv = import_torchvision()
    torch.manual_seed(seed)
    return one_channel(getattr(tv.models, name)(num_classes=10, **kwargs)), size


def padded(images: np.ndarray, size: int) -> np.ndarray:
    """(N, 28, 28) uint8 images zero-padded to (N, 1, size, size), centred."""
    n, h, w = images.shape[0], images.shape[-2], images.shape[-1]
    if size < max(h, w):
        raise ValueError(f"cannot pad {h}x{w} images to {size}x{size}")
    top, left = (size - h) // 2, (size - w) // 2
    out = np.zeros((n, 1, size, size), dtype=images.dtype)
    out[:, 0, top : top + h, left : left + w] = images.reshape(n, h, w)
    return out


def recipe(name: str, cfg: VisionConfig) -> VisionConfig:
    """``cfg`` with the family's own learning rate and epochs (:data:`RECIPES`), if it has them."""
    return dataclasses.replace(cfg, **RECIPES.get(name, {}))


def train_key(name: str, cfg: VisionConfig) -> str:
    """The content of everything that determines the trained weights."""
    import torch

    from convert.datasets import recorded_hashes

    what = {
        "model": name,
        "builder": next((k, s) for n, k, s in FAMILIES if n == name),
        "train": [cfg.train_images, cfg.epochs, cfg.lr, cfg.batch, cfg.seed],  # cfg: recipe() applied
        "data": recorded_hashes("mnist", "train"),
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def train(model: Any, images: np.ndarray, labels: np.ndarray, cfg: VisionConfig) -> float:
    """Brief training in place (module docstring); returns the wall time in seconds."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.as_tensor(images, dtype=torch.float32) / 255.0
    y = torch.as_tensor(labels, dtype=torch.int64)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start = time.monotonic()
    model.train()
    steps = cfg.epochs * ((len(x) + cfg.batch - 1) // cfg.batch)
    with tqdm(total=steps, desc="train", unit="batch", leave=False) as bar:
        for _ in range(cfg.epochs):
            order = torch.randperm(len(x), generator=gen)
            for lo in range(0, len(x), cfg.batch):
                idx = order[lo : lo + cfg.batch]
                opt.zero_grad()
                loss = F.cross_entropy(model(x[idx]), y[idx])
                loss.backward()
                opt.step()
                bar.update(1)
    model.eval()
    return time.monotonic() - start


def trained(name: str, cfg: VisionConfig, root: Any, cache: Path) -> tuple[Any, int, dict[str, Any]]:
    """The briefly trained model (read from ``cache`` when its key matches), its input size, and how it was
    trained."""
    import torch

    from convert import datasets

    cfg = recipe(name, cfg)
    model, size = build(name, cfg.seed)
    key = train_key(name, cfg)
    path = cache / f"{name}-{key[:16]}.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
        if saved.get("key") == key:
            model.load_state_dict(saved["state"])
            return model.eval(), size, saved["info"]
    data = datasets.load("mnist", "train", root)
    n = min(cfg.train_images, len(data.images) - cfg.calib_images)
    wall = train(model, padded(data.images[:n], size), data.labels[:n], cfg)
    info = {"train_images": int(n), "epochs": cfg.epochs, "lr": cfg.lr, "train_s": round(wall, 1), "key": key}
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"key": key, "state": model.state_dict(), "info": info}, tmp)
    tmp.replace(path)
    return model.eval(), size, info


def _refusal(name: str, cfg: VisionConfig) -> dict[str, Any] | None:
    """None if the untrained model converts; else its row with the one-line reason."""
    from convert.contract.spec import SpecError
    from convert.from_torch import from_torch

    model, size = build(name, cfg.seed)
    try:
        spec = from_torch(model.eval(), (1, size, size))
    except SpecError as err:
        return {"model": name, "input": size, "converts": False, "reason": str(err)}
    del spec
    return None


def _graph(spec: Any) -> dict[str, Any]:
    from convert.ann import macs_per_image
    from convert.layers import skip as skip_edge

    edges = sum(1 for layer in spec.layers if skip_edge.has_skip(layer))
    return {
        "layers": len(spec.layers),
        "populations": len(spec.spiking_indices),
        "skip_edges": edges,
        "synapses": int(sum(macs_per_image(spec))),
    }


def evaluate(name: str, cfg: VisionConfig, root: Any, runs: Path, build_dir: Path | None = None) -> dict[str, Any]:
    """One model's row (module docstring)."""
    import torch

    from convert import datasets
    from convert.api import to_snn
    from convert.train import predictions
    from fastsim import simulate
    from validation.significance import mcnemar, wilson_interval

    refused = _refusal(name, cfg)
    if refused is not None:
        return refused
    model, size, info = trained(name, cfg, root, runs / "torchvision" / "models")
    test = datasets.load("mnist", "test", root)
    n = min(cfg.test_images, len(test.images))
    images, labels = padded(test.images[:n], size), np.asarray(test.labels[:n])
    ann_pred = predictions(model, torch.as_tensor(images, dtype=torch.float32) / 255.0)
    ann_correct = ann_pred == labels
    train_data = datasets.load("mnist", "train", root)
    calib = padded(train_data.images[-cfg.calib_images :], size)
    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec, _ = to_snn(model, (1, size, size), calib, method=cfg.method, steps=cfg.steps, **SNN_FIELDS)
    convert_s = time.monotonic() - start
    start = time.monotonic()
    record = simulate(spec, images, steps=cfg.steps, labels=labels, checkpoints=list(cfg.checkpoints), dtype=cfg.dtype)
    simulate_s = time.monotonic() - start
    by_t = []
    for i, t in enumerate(cfg.checkpoints):
        correct = record.predictions(i) == labels
        lo, hi = wilson_interval(int(correct.sum()), n)
        by_t.append(
            {
                "steps": int(t),
                "snn_accuracy": float(correct.mean()),
                "ci95": [lo, hi],
                "vs_ann": mcnemar(correct, ann_correct).to_dict(),
            }
        )
    lo, hi = wilson_interval(int(ann_correct.sum()), n)
    row = {
        "model": name,
        "input": size,
        "converts": True,
        **_graph(spec),
        "training": info,
        "images": n,
        "ann_accuracy": float(ann_correct.mean()),
        "ann_ci95": [lo, hi],
        "snn": by_t,
        "convert_s": round(convert_s, 1),
        "simulate_s": round(simulate_s, 1),
        "provenance": {k: v for k, v in spec.provenance.items() if k in ("merged_branches", "dropped_head")},
    }
    row["agreement"] = _agreement(name, spec, row["synapses"], images, labels, cfg, runs, build_dir)
    return row


def _agreement(name, spec, synapses: int, images, labels, cfg: VisionConfig, runs: Path, build_dir) -> dict[str, Any]:
    """fastsim float64 against Brian2 cpp_standalone on the first images, or why not."""
    from validation.harness.agreement import agreement, write_report

    if not cfg.agreement_images:
        return {"run": False, "why": "not asked (agreement_images 0)"}
    if synapses > cfg.agreement_max_synapses:
        return {
            "run": False,
            "why": f"{synapses / 1e6:.0f} M synapses, over this run's {cfg.agreement_max_synapses / 1e6:.0f} M for "
            "Brian2 (--agreement-max-synapses)",
        }
    from refsim.devices import default_build_root

    start = time.monotonic()
    n = cfg.agreement_images
    report, recs = agreement(
        spec,
        images[:n],
        labels[:n],
        cfg.agreement_steps,
        ("fastsim:float64", "refsim:cpp_standalone"),
        build_dir=build_dir or default_build_root(runs),
    )
    ident = report["identical"]
    config = {"spec": f"torchvision-{name}", "images": n, "steps": cfg.agreement_steps}
    write_report(report, recs, runs / "agreement", f"torchvision-{name}", config)
    return {
        "run": True,
        "images": n,
        "steps": cfg.agreement_steps,
        "exact_fraction": ident["exact_fraction"],
        "mismatches": ident["mismatches"],
        "wall_s": round(time.monotonic() - start, 1),
    }


def run_table(
    cfg: VisionConfig, root: Any, runs: Path, out: Path | None = None, build_dir: Path | None = None
) -> dict[str, Any]:
    """Every model of ``cfg`` (one ``<model>.json`` each, reused when its config matches), then the table."""
    out = out or runs / "torchvision"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in cfg.models:
        path = out / f"{name}.json"
        want = {**recipe(name, cfg).to_dict(), "models": [name]}
        if path.exists():
            saved = json.loads(path.read_text())
            if saved.get("config") == json.loads(json.dumps(want)):
                rows.append(saved["row"])
                continue
        print(f"torchvision: {name}", flush=True)
        row = evaluate(name, cfg, root, runs, build_dir)
        write_json_atomic(path, {"row": row, **provenance(want, cfg.seed)})
        rows.append(row)
    result = {"rows": rows, **provenance(cfg.to_dict(), cfg.seed)}
    write_json_atomic(out / "table.json", result)
    write_text_atomic(out / "table.md", markdown(rows, cfg))
    return result


def markdown(rows: list[dict[str, Any]], cfg: VisionConfig) -> str:
    from validation.markdown import table

    def pct(x: float) -> str:
        return f"{100 * x:.2f}"

    converted = [r for r in rows if r["converts"]]
    lines = [
        f"# torchvision families on MNIST (`python -m validation torchvision`; {cfg.method} for T = {cfg.steps}, "
        f"analog input, cascade, reset by subtraction, θ/2 start, membrane readout, fastsim {cfg.dtype})",
        "",
        f"Brief training (the training column: epochs × the first training images, Adam's learning rate, wall "
        f"time): {cfg.epochs} epoch(s) over {cfg.train_images} images at lr {cfg.lr:g}, batch {cfg.batch}, seed "
        f"{cfg.seed}, unless a family's own recipe says otherwise (chosen on 1 000 training images the training "
        f"does not read). ANN and SNN on the first {cfg.test_images} test images (95 % Wilson interval); `*` "
        "McNemar p < 0.05 against the ANN.",
        "",
    ]
    head = ("model", "input", "populations", "skip edges", "synapses", "training", "ANN %")
    snn_cols = tuple(f"SNN T={t}" for t in cfg.checkpoints)
    body = []
    for r in converted:
        cells = [
            r["model"],
            f"{r['input']}²",
            str(r["populations"]),
            str(r["skip_edges"]),
            f"{r['synapses'] / 1e6:.1f} M",
            f"{r['training']['epochs']} × {r['training']['train_images']}, lr {r['training'].get('lr', cfg.lr):g}, "
            f"{r['training']['train_s']:.0f} s",
            f"{pct(r['ann_accuracy'])} ({pct(r['ann_ci95'][0])}–{pct(r['ann_ci95'][1])})",
        ]
        for s in r["snn"]:
            star = "*" if s["vs_ann"]["p_value"] < 0.05 else ""
            cells.append(f"{pct(s['snn_accuracy'])}{star} ({pct(s['ci95'][0])}–{pct(s['ci95'][1])})")
        a = r["agreement"]
        if a["run"]:
            cells.append(f"{100 * a['exact_fraction']:.2f} % ({a['images']} × {a['steps']}, {a['wall_s']:.0f} s)")
        elif r["synapses"] > cfg.agreement_max_synapses:
            cells.append(f"not run: {r['synapses'] / 1e6:.0f} M synapses > {cfg.agreement_max_synapses / 1e6:.0f} M")
        else:
            cells.append(f"not run: {a['why']}")
        body.append(cells)
    lines += table((*head, *snn_cols, "Brian2 equal counts"), body)
    refused = [r for r in rows if not r["converts"]]
    if refused:
        lines += ["", "Refused (the whole message lists every problem; shown to 300 characters):", ""]
        lines += [f"- **{r['model']}**: {r['reason'][:300]}" for r in refused]
    lines += ["", f"{len(converted)} of {len(rows)} families convert."]
    return "\n".join(lines) + "\n"
