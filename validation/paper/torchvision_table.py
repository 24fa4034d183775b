"""torchvision's classification families as they come, trained briefly on MNIST and converted:
``python -m validation torchvision``.

Each family is built and briefly trained as :mod:`validation.paper.torchvision_models` says (10 classes, the
first convolution for one channel, MNIST zero-padded to the smallest input it takes). Per model:

1. ``from_torch`` either converts it or refuses it with one message that lists every problem (untrained: the
   structure decides); a refused model is a row with its reason;
2. brief training, the weights cached by content;
3. the ANN's own predictions (the torch model in eval mode) on the first ``test_images`` test images;
4. :func:`convert.api.to_snn` with ``method`` for T = ``steps`` on ``calib_images`` training images (the last
   ones of the training set, which the brief training did not read; the default ``calibrated-pc``: thresholds
   per channel, bias and potential correction against the clip-floor model, no simulation): analog input, the
   cascade schedule, reset by subtraction, every membrane at θ/2, membrane readout; the spec is cached by the
   content of everything that determines it (:func:`spec_key`); fastsim (``dtype``) to ``steps`` with the
   accuracy at every checkpoint, its Wilson interval and McNemar's paired test against the ANN on the same
   images;
5. where Brian2's explicit synapses fit (``agreement_max_synapses``), fastsim float64 against Brian2
   (``agreement_device``: cpp_standalone, or the runtime device for a spec of thousands of Brian2 objects) on
   ``agreement_images`` test images × ``agreement_steps`` steps: per-neuron counts of every layer compared.

Writes ``<runs>/torchvision/table.{json,md}`` (provenance: config, seed, versions, commit, machine) and one
``<model>.json`` per finished model, so that an interrupted run resumes at the next model; a rerun that changes
only the agreement settings keeps each finished row (while the converter makes the same of its family:
:func:`structure`) and runs only its Brian2 check (on the cached spec); a check
that ran under a higher ``agreement_max_synapses`` stands (the limit guards the box's time and memory; it does
not change a result).
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
from validation.paper.torchvision_models import NAMES, build, family, padded, recipe, trained

#: the settings of step 5 only: a change of these alone reruns no row, only its agreement check
AGREEMENT_FIELDS = ("agreement_images", "agreement_steps", "agreement_max_synapses", "agreement_device")
#: the Brian2 devices a check may run on: C++ standalone (compiled, the default), or the runtime device (Python
#: and numpy code objects: nothing to compile, for a spec of thousands of Brian2 objects)
AGREEMENT_DEVICES = ("cpp_standalone", "runtime")

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
    agreement_device: str = "cpp_standalone"
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.agreement_device not in AGREEMENT_DEVICES:
            raise ValueError(f"agreement_device must be one of {AGREEMENT_DEVICES}, got {self.agreement_device!r}")
        unknown = [m for m in self.models if m not in NAMES]
        if unknown:
            raise ValueError(f"unknown torchvision families {unknown}; choose from {', '.join(NAMES)}")
        if sorted(self.checkpoints) != list(self.checkpoints) or self.checkpoints[-1] != self.steps:
            raise ValueError(f"checkpoints {self.checkpoints} must rise to steps={self.steps}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def structure(name: str, cfg: VisionConfig) -> dict[str, Any]:
    """What the converter makes of the untrained family (seeded): ``{"converts": False, "reason": ...}``, or
    ``{"converts": True, "direct_copy": <the spec fingerprint of its direct copy>}``. A row is reused only while
    this is unchanged, so a change of the converter that changes a family's conversion reruns its row."""
    from convert.contract.fingerprint import spec_fingerprint
    from convert.contract.spec import SpecError
    from convert.from_torch import from_torch

    model, size = build(name, cfg.seed)
    try:
        spec = from_torch(model.eval(), (1, size, size))
    except SpecError as err:
        return {"converts": False, "reason": str(err)}
    return {"converts": True, "direct_copy": spec_fingerprint(spec)}


def _same_structure(row: dict[str, Any], now: dict[str, Any]) -> bool:
    if not now["converts"]:
        return not row["converts"] and row.get("reason") == now["reason"]
    return bool(row["converts"]) and row.get("direct_copy") == now["direct_copy"]


def _graph(spec: Any) -> dict[str, Any]:
    from convert.ann import macs_per_image

    edges = len(spec.skips)
    return {
        "layers": len(spec.layers),
        "populations": len(spec.spiking_indices),
        "skip_edges": edges,
        "synapses": int(sum(macs_per_image(spec))),
    }


def spec_key(name: str, cfg: VisionConfig, train: str, direct_copy: str) -> str:
    """The content of everything that determines a model's spec: its trained weights' key, what the converter
    makes of the family (the untrained direct copy's fingerprint), the conversion's settings and the
    calibration images."""
    from convert.datasets import recorded_hashes

    what = {
        "train": train,
        "direct_copy": direct_copy,
        "method": cfg.method,
        "steps": cfg.steps,
        "calib_images": cfg.calib_images,
        "fields": SNN_FIELDS,
        "data": recorded_hashes("mnist", "train"),
        "code": 1,  # bump when the conversion's code changes what it writes for the same inputs
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def converted(name: str, cfg: VisionConfig, model: Any, size: int, info: dict, root: Any, cache: Path, now: dict):
    """The model's spec (read from ``cache`` when its key matches) and the conversion's wall time (0 when
    read); ``now``: the family's :func:`structure`."""
    from convert import datasets
    from convert.api import to_snn
    from convert.contract.io import load_spec, save_spec

    key = spec_key(name, cfg, info["key"], now["direct_copy"])
    path = cache / f"{name}-{key[:16]}.npz"
    if path.exists():
        spec = load_spec(path)
        if spec.provenance.get("torchvision_spec_key") == key:
            return spec, 0.0
    calib = padded(datasets.load("mnist", "train", root).images[-cfg.calib_images :], size)
    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec, _ = to_snn(model, (1, size, size), calib, method=cfg.method, steps=cfg.steps, **SNN_FIELDS)
    wall = time.monotonic() - start
    spec = dataclasses.replace(spec, provenance={**spec.provenance, "torchvision_spec_key": key})
    cache.mkdir(parents=True, exist_ok=True)
    save_spec(spec, path)
    return spec, wall


def converted_spec(name: str, runs: Path) -> tuple[Path, Any]:
    """The one spec of ``name`` that the stage converted under ``runs`` and the spec (for the benchmarks that
    look into a row); a FileNotFoundError that says to run the stage where there is none or several."""
    from convert.contract.io import load_spec

    paths = sorted((runs / "torchvision" / "specs").glob(f"{name}-*.npz"))
    if len(paths) != 1:
        raise FileNotFoundError(
            f"want one converted spec of {name} under {runs / 'torchvision' / 'specs'}, found {len(paths)}: run "
            f"`python -m validation torchvision --models {name}` first (or remove the stale ones)"
        )
    return paths[0], load_spec(paths[0])


def row_test_images(spec: Any, n: int, root: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` MNIST test images, padded to ``spec``'s input as the stage pads them, and their labels:
    what the benchmarks that look into a row (:func:`converted_spec`) simulate."""
    from convert.datasets import default_root

    return _test_images(VisionConfig(test_images=n), root or default_root(), spec.input_shape[-1])


def _test_images(cfg: VisionConfig, root: Any, size: int) -> tuple[np.ndarray, np.ndarray]:
    from convert import datasets

    test = datasets.load("mnist", "test", root)
    n = min(cfg.test_images, len(test.images))
    return padded(test.images[:n], size), np.asarray(test.labels[:n])


def evaluate(
    name: str, cfg: VisionConfig, root: Any, runs: Path, build_dir: Path | None = None, now: dict | None = None
) -> dict[str, Any]:
    """One model's row (module docstring); ``now``: its :func:`structure`, if known."""
    import torch

    from convert.train import predictions
    from fastsim import simulate
    from validation.significance import mcnemar, wilson_interval

    now = now or structure(name, cfg)
    size = family(name)[1]
    if not now["converts"]:
        return {"model": name, "input": size, "converts": False, "reason": now["reason"]}
    model, size, info = trained(name, cfg, root, runs / "torchvision" / "models")
    images, labels = _test_images(cfg, root, size)
    n = len(labels)
    with torch.no_grad():
        ann_pred = predictions(model, torch.as_tensor(images, dtype=torch.float32) / 255.0)
    ann_correct = ann_pred == labels
    spec, convert_s = converted(name, cfg, model, size, info, root, runs / "torchvision" / "specs", now)
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
        "direct_copy": now["direct_copy"],
        **_graph(spec),
        "training": info,
        "images": n,
        "ann_accuracy": float(ann_correct.mean()),
        "ann_ci95": [lo, hi],
        "snn": by_t,
        "convert_s": round(convert_s, 1),
        "simulate_s": round(simulate_s, 1),
        "provenance": {k: v for k, v in spec.provenance.items() if k in ("merged_branches", "relays", "dropped_head")},
    }
    row["agreement"] = _agreement(name, spec, row["synapses"], images, labels, cfg, runs, build_dir)
    return row


def agreement_only(name: str, cfg: VisionConfig, root: Any, runs: Path, build_dir: Path | None, now: dict) -> dict:
    """A finished row's agreement check alone, on its cached weights and spec (step 5)."""
    model, size, info = trained(name, cfg, root, runs / "torchvision" / "models")
    spec, _ = converted(name, cfg, model, size, info, root, runs / "torchvision" / "specs", now)
    images, labels = _test_images(cfg, root, size)
    return _agreement(name, spec, _graph(spec)["synapses"], images, labels, cfg, runs, build_dir)


def _agreement(name, spec, synapses: int, images, labels, cfg: VisionConfig, runs: Path, build_dir) -> dict[str, Any]:
    """fastsim float64 against Brian2 (``cfg.agreement_device``) on the first images, or why not."""
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
        ("fastsim:float64", f"refsim:{cfg.agreement_device}"),
        build_dir=build_dir or default_build_root(runs),
    )
    ident = report["identical"]
    config = {"spec": f"torchvision-{name}", "images": n, "steps": cfg.agreement_steps}
    write_report(report, recs, runs / "agreement", f"torchvision-{name}", config)
    return {
        "run": True,
        "device": cfg.agreement_device,
        "images": n,
        "steps": cfg.agreement_steps,
        "exact_fraction": ident["exact_fraction"],
        "mismatches": ident["mismatches"],
        "wall_s": round(time.monotonic() - start, 1),
    }


def _but_agreement(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in AGREEMENT_FIELDS}


def _checked(saved: dict[str, Any], want: dict[str, Any]) -> bool:
    """The saved row answers ``want``: the same row settings, and its agreement check ran on the images and
    steps asked. The synapse limit decides only whether a check runs (a resource guard), so a check run under a
    higher limit stands."""
    a, config = saved["row"].get("agreement", {}), saved.get("config", {})
    same = _but_agreement(config) == _but_agreement(want)
    asked = (want["agreement_images"], want["agreement_steps"])
    return same and bool(a.get("run")) and (a.get("images"), a.get("steps")) == asked


def run_table(
    cfg: VisionConfig, root: Any, runs: Path, out: Path | None = None, build_dir: Path | None = None
) -> dict[str, Any]:
    """Every model of ``cfg`` (one ``<model>.json`` each, reused when its config matches; only its agreement
    check rerun when nothing else differs), then the table."""
    out = out or runs / "torchvision"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in cfg.models:
        path = out / f"{name}.json"
        want = json.loads(json.dumps({**recipe(name, cfg).to_dict(), "models": [name]}))
        saved = json.loads(path.read_text()) if path.exists() else {}
        now = structure(name, cfg)
        if saved and not _same_structure(saved["row"], now):
            saved = {}  # the converter makes something else of this family now: the row is stale
        if saved.get("config") == want or (saved and _checked(saved, want)):
            rows.append(saved["row"])
            continue
        if saved and _but_agreement(saved.get("config", {})) == _but_agreement(want):
            print(f"torchvision: {name} (its agreement check only)", flush=True)
            row = {**saved["row"]}
            if row["converts"]:
                row["agreement"] = agreement_only(name, cfg, root, runs, build_dir, now)
        else:
            print(f"torchvision: {name}", flush=True)
            row = evaluate(name, cfg, root, runs, build_dir, now)
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
            device = "" if a.get("device", "cpp_standalone") == "cpp_standalone" else f", {a['device']}"
            cells.append(
                f"{100 * a['exact_fraction']:.2f} % ({a['images']} × {a['steps']}, {a['wall_s']:.0f} s{device})"
            )
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
