"""Choosing QCFS's L for a target T on the validation split: ``python -m validation levels``.

A QCFS ANN scores better on validation images the more levels L it has (a finer quantization is closer to the
ReLU), so its own accuracy cannot choose L; what matters is its SNN at the T it will run. For each candidate L a
QCFS twin is fine-tuned from the network's trained ReLU checkpoint (:mod:`convert.finetune`, the ReLU network's
dropout and augmentation, ``epochs`` epochs at learning rate ``lr``; each candidate cached by content like every
trained candidate, :func:`convert.select.fit_candidate`), converted by the ``qcfs`` method with analog input,
the cascade schedule, every membrane at θ/2, reset by subtraction and the membrane readout, and simulated
(fastsim, float64) on the validation split: the training set's last 5 000 images, which neither the ReLU
network nor the twin trained on. The L with the most correct SNN classifications at T wins (ties to the smaller
L: fewer levels, fewer spikes). The test set is not read. Writes ``<runs>/levels/<dataset>-<model>-T<T>.{json,md}``
with every candidate's ANN and SNN validation accuracy, its Wilson interval and its training time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from convert.contract.fingerprint import KEY_FIELD
from convert.contract.provenance import provenance, write_json_atomic, write_text_atomic
from convert.select import fit_candidate, selected, split_train
from convert.train import TrainConfig, init_fingerprint, load_model, predictions
from validation.markdown import table
from validation.significance import wilson_interval

SNN_FIELDS = {"encoding": "current", "readout": "membrane", "schedule": "cascade"}


def _config(
    dataset: str, model: str, levels: int, init: str, epochs: int, lr: float, train_images: int | None = None
) -> TrainConfig:
    relu = selected(dataset, model)[0]  # the ReLU network's dropout and augmentation
    return TrainConfig(
        dataset=dataset,
        model=model,
        epochs=epochs,
        lr=lr,
        dropout=relu.get("dropout"),
        shift=relu.get("shift", 0),
        activation="qcfs",
        levels=levels,
        init=init,
        train_images=train_images,
    )


def snn_validation(model_path: Path, dataset: str, steps: int, root: Any, config: TrainConfig) -> dict[str, Any]:
    """The twin's ANN and SNN (T = ``steps``) accuracy on the validation split."""
    from convert.from_torch import from_torch
    from fastsim import simulate

    net = load_model(model_path).eval()
    _, _, vx, vy = split_train(dataset, root, config)
    ann = predictions(net, vx)
    spec = from_torch(net, dataset=dataset, **SNN_FIELDS)
    images = np.round(vx.numpy() * 255.0).astype(np.uint8)
    labels = vy.numpy()
    record = simulate(spec, images, steps=steps, dtype="float64", labels=labels, progress=False)
    snn = record.predictions()
    n, k = len(labels), int((snn == labels).sum())
    return {
        "ann_validation": float((ann == labels).mean()),
        "snn_validation": k / n,
        "snn_ci95": list(wilson_interval(k, n)),
        "agrees_with_ann": float((snn == ann).mean()),
        "images": n,
    }


def select_levels(
    dataset: str,
    model: str,
    candidates: tuple[int, ...],
    steps: int,
    init: str,
    runs: Path,
    root: Any = None,
    epochs: int = 3,
    lr: float = 1e-3,
    train_images: int | None = None,
) -> dict[str, Any]:
    """Every candidate L fine-tuned and scored by its SNN at T = ``steps`` on the validation split (module
    docstring); returns the results (also written under ``runs/levels/``)."""
    if not candidates or any(int(v) < 1 for v in candidates):
        raise ValueError(f"levels: give candidate L values >= 1, got {candidates!r}")
    start = time.perf_counter()
    rows = []
    for levels in sorted(set(int(v) for v in candidates)):
        config = _config(dataset, model, levels, init, epochs, lr, train_images)
        fit = fit_candidate(config, root, runs, progress=True)
        path = runs / "models" / "candidates" / fit["path"]
        scores = snn_validation(path, dataset, steps, root, config)
        rows.append({"levels": levels, "train_wall_s": fit["train_wall_s"], "key": fit.get(KEY_FIELD), **scores})
    best = max(range(len(rows)), key=lambda i: (rows[i]["snn_validation"], -rows[i]["levels"]))
    result = {
        "dataset": dataset,
        "model": model,
        "steps": steps,
        "candidates": rows,
        "chosen": rows[best]["levels"],
        "criterion": f"SNN accuracy at T = {steps} on the last 5000 training images (analog input, cascade, θ/2 "
        "start, reset by subtraction, membrane readout); ties to the smaller L; the test set was not read",
        "wall_s": time.perf_counter() - start,
        **provenance(
            {
                "dataset": dataset,
                "model": model,
                "levels": sorted(set(candidates)),
                "steps": steps,
                "epochs": epochs,
                "lr": lr,
                "init_weights_sha256": init_fingerprint(init, model),
            },
            seed=0,
        ),
    }
    out = runs / "levels"
    name = f"{dataset}-{model}-T{steps}"
    write_json_atomic(out / f"{name}.json", result)
    write_text_atomic(out / f"{name}.md", markdown(result))
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# QCFS levels for {result['dataset']}-{result['model']} at T = {result['steps']}", ""]
    lines += table(
        ("L", "ANN validation", "SNN validation (95 % CI)", "SNN = ANN class", "fine-tuning", "chosen"),
        (
            (
                r["levels"],
                f"{100 * r['ann_validation']:.2f} %",
                f"{100 * r['snn_validation']:.2f} % ({100 * r['snn_ci95'][0]:.2f}–{100 * r['snn_ci95'][1]:.2f})",
                f"{100 * r['agrees_with_ann']:.2f} %",
                f"{r['train_wall_s']:.0f} s",
                "yes" if r["levels"] == result["chosen"] else "",
            )
            for r in result["candidates"]
        ),
    )
    lines += ["", f"Criterion: {result['criterion']}. Wall time {result['wall_s'] / 60:.1f} min."]
    return "\n".join(lines) + "\n"


__all__ = ["select_levels", "snn_validation", "markdown"]
