"""The latency table: SNN accuracy against its own ANN at T = 4 … 256 steps, for every conversion meant for few
steps, on the same test images.

Rows (:data:`ROWS`), all read out by the output membrane (the anchors accumulate the last layer's output the
same way) under the ``cascade`` schedule (every layer within one step, as the anchors simulate) unless a row
says otherwise:

* ``data``: Diehl et al.'s data-based normalization as the paper runs it (reset to zero, v(0) = 0);
* ``data-subtract-half``: the same thresholds, reset by subtraction and every membrane starting at θ/2;
* ``data-subtract-half-delay``: that spec under the ``delay`` schedule (layer l gets its input l steps late):
  what the delay costs at few steps;
* ``calibrated``: the per-layer thresholds chosen for each T (:mod:`convert.calibration`; one spec per T);
* ``calibrated-channel``: then a threshold per channel of every hidden layer (:mod:`convert.channel_thresholds`);
* ``calibrated-bc``: those, then each hidden layer's bias corrected per channel for T against the SNN's activity
  measured by fastsim (:mod:`convert.bias_correction`, :func:`fastsim.calibration.simulated_activity`);
* ``calibrated-pc``: then a start potential per hidden neuron (:mod:`convert.potential_correction`);
* ``qcfs``: the network's twin trained with QCFS activations (:mod:`convert.qcfs`, L = 8), compared with its own
  (quantized) ANN.

Input is analog (``current``, the image as a constant current), and Poisson beside it for the data-based rows.
Per (network, row, input, T): the SNN's accuracy with its 95 % Wilson interval, the gap to the ANN on the same
images with the paired 95 % interval, and the exact McNemar test against the ANN. Every simulation is cached by
content (the spec's fingerprint, the test split's recorded hash, the images, the horizon, the checkpoints, the
input seed and the engine) in parts of ``part_images`` images, so an interrupted table resumes. Written to
``<runs>/latency/`` (``latency.json``, ``latency.md``, ``latency.png``); every row's spec to
``<runs>/specs/<dataset>-<model>-<row>[-T<T>].npz`` (``validation diagnose --spec`` reads them).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from convert import ann, datasets
from convert.contract.fingerprint import (
    CACHE_FORMAT_VERSION,
    KEY_FIELD,
    fingerprint,
    read_cached,
    short,
    spec_fingerprint,
)
from convert.contract.io import save_spec
from convert.contract.provenance import (
    atomic_path,
    check_outputs,
    provenance,
    write_json_atomic,
    write_text_atomic,
)
from convert.contract.records import RECORD_FORMAT_VERSION, SpikeRecord, concatenate
from convert.contract.spec import NetworkSpec
from convert.pipeline import (
    MAIN_CALIB_IMAGES,
    MAIN_HOLDOUT,
    calibration_images,
    copy_spec,
    normalized_spec,
    stats_for,
)
from convert.train import checkpoint_paths
from validation.paper.latency_rows import CASCADE_HALF, ROW_NAMES, LatencyRow, row
from validation.significance import mcnemar, wilson_interval

STEPS: tuple[int, ...] = (4, 8, 16, 32, 64, 128, 256)
PAPER_NETWORKS: tuple[tuple[str, str], ...] = (
    ("mnist", "mlp"),
    ("mnist", "cnn"),
    ("fashion", "mlp"),
    ("fashion", "cnn"),
)
DEEPER_NETWORKS: tuple[tuple[str, str], ...] = (("fashion", "vgg"), ("fashion", "resnet"))


@dataclass(frozen=True)
class LatencyConfig:
    """What the table runs: ``networks`` on their first ``images`` test images (the deeper ones on
    ``deeper_images``), the rows named in ``rows``, checkpoints ``steps``, Poisson input seed ``seed``; fastsim
    with ``dtype``/``kernel``; the calibration set of the main job (``calib_images`` less ``holdout``), the
    first ``bias_images`` of it for bias correction; QCFS twins from ``qcfs_models`` (None: no qcfs row)."""

    networks: tuple[tuple[str, str], ...] = PAPER_NETWORKS
    images: int = 10_000
    deeper_images: int = 2_000
    steps: tuple[int, ...] = STEPS
    rows: tuple[str, ...] = ROW_NAMES
    seed: int = 0
    dtype: str = "float32"
    kernel: str = "events"
    part_images: int = 2_000
    calib_images: int = MAIN_CALIB_IMAGES
    holdout: int = MAIN_HOLDOUT
    bias_images: int = 256
    qcfs_models: str | None = "docs/results/models-qcfs"
    agreement_images: int = 10  # Brian2 (cpp_standalone) against fastsim float64 on these (0: no check)
    agreement_steps: int = 64
    agreement_rows: tuple[tuple[str, int | None], ...] = (("calibrated-pc", 8), ("qcfs", None))  # (row, its T)
    out: str = "latency"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.rows) - set(ROW_NAMES))
        if unknown:
            raise ValueError(f"rows: unknown {', '.join(unknown)}; the rows are {', '.join(ROW_NAMES)}")
        if not self.steps or any(int(t) < 1 for t in self.steps) or list(self.steps) != sorted(set(self.steps)):
            raise ValueError(f"steps: give increasing step counts >= 1, got {self.steps!r}")
        for name in ("images", "deeper_images", "part_images", "bias_images", "agreement_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")

    def n_images(self, model: str) -> int:
        return self.deeper_images if (("fashion", model) in DEEPER_NETWORKS) else self.images

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _steps_of(r: LatencyRow, cfg: LatencyConfig) -> tuple[int, ...]:
    return tuple(t for t in cfg.steps if r.max_steps is None or t <= r.max_steps)


# --- one simulation, cached by content in parts -------------------------------------------------------------


def _key(spec: NetworkSpec, dataset: str, lo: int, hi: int, horizon: int, checkpoints, seed: int, cfg) -> str:
    return fingerprint(
        {
            "kind": "latency-run",
            "cache_format": CACHE_FORMAT_VERSION,
            "record_format": RECORD_FORMAT_VERSION,
            "spec": spec_fingerprint(spec),
            "data": datasets.recorded_hashes(dataset, "test"),
            "images": [lo, hi],
            "steps": horizon,
            "checkpoints": [int(c) for c in checkpoints],
            "seed": seed if spec.encoding == "poisson" else None,
            "engine": {"engine": "fastsim", "dtype": cfg.dtype, "kernel": cfg.kernel},
        }
    )


def _simulate(spec, dataset, test, n, checkpoints, cfg, cache: Path, bar) -> SpikeRecord:
    """The record of ``spec`` on the first ``n`` test images to the last checkpoint, part by part (each part
    read from ``cache`` when its key matches, else simulated and stored)."""
    horizon, parts = int(checkpoints[-1]), []
    for lo in range(0, n, cfg.part_images):
        hi = min(n, lo + cfg.part_images)
        key = _key(spec, dataset, lo, hi, horizon, checkpoints, cfg.seed, cfg)
        path = cache / f"{dataset}-{short(key)}.npz"
        part = read_cached(path, key, SpikeRecord.load, lambda r: r.meta)
        if part is None:
            start = time.monotonic()
            part = simulate_part(spec, test, lo, hi, horizon, checkpoints, cfg)
            part = part.with_meta(**{KEY_FIELD: key, "wall_s": time.monotonic() - start})
            part.save(path)
        bar.update((hi - lo) * horizon)
        parts.append(part)
    return concatenate(parts)


def simulate_part(spec, test, lo, hi, horizon, checkpoints, cfg) -> SpikeRecord:
    """One part's record. A row that decides nothing in a few steps (the delay schedule at T below the depth)
    is a result of the table, not a fault: fastsim's one-class warning is silenced here."""
    import warnings

    from convert.contract.records import OneClassWarning
    from fastsim import simulate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OneClassWarning)
        return simulate(
            spec,
            test.images[lo:hi],
            steps=horizon,
            seed=cfg.seed,
            image_indices=np.arange(lo, hi),
            labels=test.labels[lo:hi],
            checkpoints=list(checkpoints),
            dtype=cfg.dtype,
            kernel=cfg.kernel,
        )


# --- the specs of one network ---------------------------------------------------------------------------------


def _qcfs_folder(cfg: LatencyConfig, runs: Path) -> Path | None:
    if cfg.qcfs_models is None:
        return None
    from validation.paper.networks import REPOSITORY

    folder = Path(cfg.qcfs_models)
    return folder if folder.is_absolute() else REPOSITORY / folder


def _qcfs_ann(dataset: str, model: str, runs: Path, images: np.ndarray, shape) -> np.ndarray:
    """The QCFS twin's own predictions (its quantized activations; the spec's ANN forward would not quantize)."""
    import torch

    from convert.train import load_model, predictions

    net = load_model(checkpoint_paths(runs, dataset, model)[0])
    return predictions(net, torch.as_tensor(images, dtype=torch.float32).reshape(len(images), *shape) / 255.0)


def network_specs(ds: str, model: str, cfg: LatencyConfig, root, runs: Path) -> dict[str, Any]:
    """{row name: {T or None: spec}} for the rows of ``cfg`` this network has, and the ANN each is compared
    with ({"relu" | "qcfs": predictions on the test images})."""
    from fastsim.calibration import simulated_activity

    test = datasets.load(ds, "test", root)
    n = cfg.n_images(model)
    images = test.images[:n]
    fields = {"encoding": "current", "readout": "membrane"}
    base = copy_spec(ds, model, runs, **fields, **CASCADE_HALF)
    stats = stats_for(base, ds, root, runs, cfg.calib_images, holdout=cfg.holdout, progress=False)
    calib = calibration_images(ds, root, cfg.calib_images, cfg.holdout)[: cfg.bias_images]
    specs: dict[str, dict] = {}
    anns = {"relu": ann.predict(base, images)}
    for name in cfg.rows:
        r = row(name)
        if r.method == "qcfs":
            folder = _qcfs_folder(cfg, runs)
            if folder is None or not (folder / f"{ds}-{model}.pt").exists():
                continue
            from validation.paper.networks import use_given_models

            qruns = runs / "qcfs"
            use_given_models(folder, qruns, ((ds, model),))
            specs[name] = {None: copy_spec(ds, model, qruns, **fields, **r.fields)}
            anns["qcfs"] = _qcfs_ann(ds, model, qruns, images, base.input_shape)
        elif r.per_steps:
            specs[name] = {}
            for t in _steps_of(r, cfg):
                spec, _ = normalized_spec(base, r.method, stats, calib, steps=t, activity=simulated_activity)
                specs[name][t] = dataclasses.replace(spec, **r.fields)
        else:
            spec, _ = normalized_spec(base, r.method, stats)
            specs[name] = {None: dataclasses.replace(spec, **r.fields)}
    return {"specs": specs, "ann": anns, "test": test, "n": n}


# --- the table ------------------------------------------------------------------------------------------------


def _entry(ds, model, r: LatencyRow, encoding, t, correct, ann_correct, ann_kind) -> dict[str, Any]:
    n = len(correct)
    lo, hi = wilson_interval(int(correct.sum()), n)
    test = mcnemar(correct, ann_correct)
    return {
        "dataset": ds,
        "model": model,
        "row": r.name,
        "encoding": encoding,
        "steps": int(t),
        "n": n,
        "ann": ann_kind,
        "ann_accuracy": float(ann_correct.mean()),
        "snn_accuracy": float(correct.mean()),
        "ci95": [lo, hi],
        "vs_ann": test.to_dict(),
    }


def image_steps(built: dict[str, Any], cfg: LatencyConfig) -> int:
    """The image-steps a network's table simulates (cached parts included)."""
    total = 0
    for name, by_t in built["specs"].items():
        r = row(name)
        for t in by_t:
            horizon = t if t is not None else max(_steps_of(r, cfg))
            total += built["n"] * horizon * len(r.encodings)
    return total


def _agreement(ds, model, built, cfg: LatencyConfig, root, runs, build_dir) -> list[dict[str, Any]]:
    """fastsim float64 against Brian2 cpp_standalone, per-neuron counts of every layer, on the specs of
    ``cfg.agreement_rows`` this network has (analog input, as the table runs them)."""
    from validation.harness.agreement import agreement_summary

    out = []
    for name, t in cfg.agreement_rows if cfg.agreement_images else ():
        spec = built["specs"].get(name, {}).get(t)
        if spec is None:
            continue
        label = f"{ds}-{model}-{name}" + (f"-T{t}" if t is not None else "")
        engines = ("fastsim:float64", "refsim:cpp_standalone")
        n, steps = cfg.agreement_images, cfg.agreement_steps
        out.append(agreement_summary(spec, label, engines, n, steps, 0, 0, root, runs, build_dir))
    return out


def run_latency(
    cfg: LatencyConfig, root: Path | None, runs: Path, progress: bool = True, build_dir: Path | None = None
) -> dict[str, Any]:
    """Every entry of the table and the Brian2 checks of :attr:`LatencyConfig.agreement_rows` (their projects
    built in ``build_dir``, default $SNN_BUILD or <runs>/build/refsim); also written, with the plot."""
    cache = runs / cfg.out / "records"
    out = runs / cfg.out
    check_outputs(out / "latency.json", out / "latency.md", out / "latency.png")
    todo = [(ds, m) for ds, m in cfg.networks if checkpoint_paths(runs, ds, m)[0].exists()]
    missing = [f"{ds}-{m}" for ds, m in cfg.networks if (ds, m) not in todo]
    if missing:
        raise ValueError(
            f"no checkpoint of {', '.join(missing)} in {runs / 'models'}: copy the published ones "
            "(python -m validation latency does unless --no-copy) or train them (python -m convert train)"
        )
    entries, walls, agreement = [], {}, []
    for ds, model in todo:
        start = time.monotonic()
        built = network_specs(ds, model, cfg, root, runs)
        for name, by_t in built["specs"].items():  # for the diagnosis and other tools
            for t, spec in by_t.items():
                save_spec(spec, runs / "specs" / f"{ds}-{model}-{name}{'' if t is None else f'-T{t}'}.npz")
        bar = tqdm(
            total=image_steps(built, cfg), unit="img-step", unit_scale=True, desc=f"{ds}-{model}", disable=not progress
        )
        labels = built["test"].labels[: built["n"]]
        for name, by_t in built["specs"].items():
            r = row(name)
            ann_kind = "qcfs" if r.method == "qcfs" else "relu"
            ann_correct = built["ann"][ann_kind] == labels
            for encoding in r.encodings:
                for t, spec in by_t.items():
                    spec = dataclasses.replace(spec, encoding=encoding)
                    checkpoints = [t] if t is not None else list(_steps_of(r, cfg))
                    record = _simulate(spec, ds, built["test"], built["n"], checkpoints, cfg, cache, bar)
                    for k, c in enumerate(checkpoints):
                        correct = record.predictions(k) == labels
                        entries.append(_entry(ds, model, r, encoding, c, correct, ann_correct, ann_kind))
        bar.close()
        walls[f"{ds}-{model}"] = time.monotonic() - start
        agreement += _agreement(ds, model, built, cfg, root, runs, build_dir)
    results = {
        "config": cfg.to_dict(),
        "entries": entries,
        "wall_s": walls,
        "agreement": agreement,
        **provenance(cfg.to_dict(), cfg.seed),
    }
    from validation.paper.latency_report import markdown, plot

    png = plot(results)
    write_json_atomic(out / "latency.json", results)
    write_text_atomic(out / "latency.md", markdown(results))
    with atomic_path(out / "latency.png") as tmp:
        Path(tmp).write_bytes(png)
    return results
