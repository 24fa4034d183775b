"""The main job's expected wall time on the machine at hand, before it starts.

A published run (``docs/results/reproduce.json``) records every stage's wall time, its amount of work (the
stage's *units*: epochs trained, image-steps simulated, Brian2 image-steps) and the machine's speed on two
short calibration runs. Here the same calibration runs (~3 s) measure this machine, and each stage's expected
time is the published time scaled by the ratio of the work asked for to the work done, and by the ratio of
the machine speeds:

    expected_s = Σ_stage  published_s · (units_now / units_then) · (speed_then / speed_now)

Training stages scale with the training calibration (an MLP's forward and backward passes), every other stage
with the event engine's calibration; when the published run trained nothing (it started from the published
networks), training is estimated as epochs × 55 000 images at the calibration's rate (the CNN's epochs cost
about as much as the MLP's on the 2-core box). A box's speed drifts with its host's load (2× within an hour
has been seen on the 2-core box), so the estimate is a central value, not a bound. Stages whose results are
already cached in ``runs/`` take far less than estimated.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_STEPS = 150
CALIBRATION_IMAGES = 96
TRAINING_STAGES = ("training",)
TRAINING_IMAGES_PER_EPOCH = 55_000  # the training split less the 5 000 validation images


def calibrate() -> dict[str, float]:
    """This machine's speed: the event engine on a random data-normalized MLP (image-steps/s, compiled kernel
    loaded before timing) and an MLP 784-1200-1200-10's training steps (images/s, batch 128)."""
    import torch

    from convert import models
    from fastsim.simulate import simulate
    from fastsim.synthetic import mnist_like, random_spec

    spec = random_spec("mlp", seed=0)
    images = mnist_like(CALIBRATION_IMAGES, np.random.default_rng(0))
    simulate(spec, images[:2], steps=5, kernel="events")  # compile or load the kernel
    start = time.perf_counter()
    simulate(spec, images, steps=CALIBRATION_STEPS, kernel="events", seed=0)
    events = CALIBRATION_IMAGES * CALIBRATION_STEPS / (time.perf_counter() - start)

    torch.manual_seed(0)
    model = models.build("mlp").train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x, y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))
    batches = 0
    start = time.perf_counter()
    while batches < 4 or time.perf_counter() - start < 1.0:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        batches += 1
    train = 128 * batches / (time.perf_counter() - start)
    return {"events_image_steps_per_s": events, "train_images_per_s": train}


def expected_seconds(units: dict[str, float], reference: dict[str, Any], speed: dict[str, float]) -> dict[str, float]:
    """Per stage key, the expected seconds (formula of the module docstring). ``reference``: a published
    ``reproduce.json`` (its ``stages`` with ``key``, ``wall_s``, ``units``, and its ``calibration``)."""
    then = reference["calibration"]
    out = {}
    for stage in reference["stages"]:
        key = stage.get("key")
        if key not in units or not stage.get("units"):
            continue
        kind = "train_images_per_s" if key in TRAINING_STAGES else "events_image_steps_per_s"
        out[key] = stage["wall_s"] * (units[key] / stage["units"]) * (then[kind] / speed[kind])
    for key in TRAINING_STAGES:  # a published run that trained nothing: the calibration's rate alone
        if units.get(key) and key not in out:
            out[key] = units[key] * TRAINING_IMAGES_PER_EPOCH / speed["train_images_per_s"]
    return out


def load_reference(path: Path) -> dict[str, Any] | None:
    """The published run's record, or None when there is none (or it predates stage units)."""
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if "calibration" not in data or not all("units" in s for s in data.get("stages", [])):
        return None
    return data


def describe(expected: dict[str, float], reference: dict[str, Any]) -> str:
    """One paragraph: the total and every stage, against the published run's machine and total."""
    total = sum(expected.values())
    parts = ", ".join(f"{k} {v / 60:.1f}" for k, v in expected.items())
    return (
        f"expected wall time on this machine: ~{total / 60:.0f} min ({parts} min), from scratch; the published run "
        f"took {reference['total_s'] / 60:.1f} min on a {reference['machine'].get('cpu_count', '?')}-core box. "
        "Stages already finished in runs/ are reused and take less."
    )
