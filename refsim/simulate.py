"""``simulate``: a spec and images (or supplied input spikes) in, a :class:`SpikeRecord` out, through Brian2.

It mirrors ``fastsim.simulate`` (same arguments and record; devices here are Brian2's). The input is:

* ``spikes`` given: exactly these input spikes (bool, images × steps × inputs), e.g.
  ``convert.encoding.poisson_spikes(images, indices, steps, seed, spec.max_rate_hz, spec.dt_ms)``: the
  comparison mode, in which refsim and fastsim see identical input;
* ``images`` given and ``spec.encoding == "poisson"``: a Brian2 ``PoissonGroup`` drawing with Brian2's own
  random generator, seeded with ``seed`` before every batch (see :mod:`refsim.runners`; on the runtime device
  ``brian2.seed`` reseeds numpy's global generator);
* ``images`` given and ``spec.encoding == "current"``: the analog intensities x injected every step.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from convert.contract.records import SpikeRecord, checked_checkpoints, concatenate
from convert.contract.spec import NetworkSpec
from convert.encoding import intensity
from refsim.connectivity import spec_edges
from refsim.devices import STANDALONE, check_device_name
from refsim.inputs import InputBatch
from refsim.readout import to_record
from refsim.runners import RuntimeRunner, StandaloneRunner

DEFAULT_BATCH_SIZE = 100


def input_batch(spec: NetworkSpec, images: np.ndarray | None, spikes: np.ndarray | None, steps: int) -> InputBatch:
    """Validate the input arguments and bring them into one :class:`InputBatch` of all images."""
    if (images is None) == (spikes is None):
        raise ValueError("simulate: give exactly one of `images` and `spikes`")
    if spikes is not None:
        if spec.encoding != "poisson":
            raise ValueError(f"spikes: supplied input spikes need spec.encoding 'poisson', not {spec.encoding!r}")
        data = np.asarray(spikes)
        if data.ndim < 3 or data.shape[1] != steps:
            raise ValueError(f"spikes: expected shape (images, steps={steps}, inputs...), got {data.shape}")
        batch = InputBatch("spikes", data.reshape(len(data), steps, -1).astype(bool))
        if batch.n_inputs != spec.n_inputs:
            raise ValueError(f"spikes: {batch.n_inputs} inputs per step, but the spec takes {spec.n_inputs}")
        return batch
    x = intensity(np.asarray(images))
    batch = InputBatch(spec.encoding, x.reshape(len(x), -1))
    if batch.n_inputs != spec.n_inputs:
        raise ValueError(f"images: {batch.n_inputs} inputs per image, but the spec takes {spec.n_inputs}")
    return batch


def simulate(
    spec: NetworkSpec,
    images: np.ndarray | None = None,
    *,
    spikes: np.ndarray | None = None,
    steps: int,
    device: str = "runtime",
    batch_size: int | None = None,
    seed: int = 0,
    checkpoints: np.ndarray | list[int] | None = None,
    record_neurons: bool = False,
    image_indices: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    build_dir: str | Path | None = None,
    progress: bool = False,
    target: str = "numpy",
    threads: int = 0,
) -> SpikeRecord:
    """Simulate ``spec`` on every image for ``steps`` steps each with Brian2 ``device``.

    ``device``: ``runtime`` (``target`` numpy or cython), ``cpp_standalone`` or ``cuda_standalone`` (compiled
    once into ``build_dir``, default :func:`refsim.devices.default_build_root` (``$SNN_BUILD``, else
    ``build/refsim/`` under ``$SNN_RUNS`` or ``runs/``), and rerun per batch of ``batch_size`` images, default
    100; ``threads`` > 0 turns on OpenMP in cpp_standalone). ``checkpoints`` default to
    ``convert.contract.records.default_checkpoints(steps)``; ``labels`` default to -1, ``image_indices`` to 0..N-1.
    Settings and timings go into ``record.meta`` (``image_steps_per_s`` counts simulation time only, without
    building or compiling; ``wall_s`` counts everything).
    """
    check_device_name(device)
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    steps = int(steps)
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be in [0, 2^32), got {seed!r}")
    batch = input_batch(spec, images, spikes, steps)
    n = batch.n_images
    labels = _per_image("labels", labels, n, -1)
    indices = _per_image("image_indices", image_indices, n, None)
    checkpoints = checked_checkpoints(checkpoints, steps)
    size = max(1, min(n, int(batch_size or DEFAULT_BATCH_SIZE)))
    if device in STANDALONE:
        runner: Any = StandaloneRunner(
            spec, steps, size, batch.mode, device=device, seed=seed, build_root=build_dir, threads=threads
        )
    else:
        runner = RuntimeRunner(spec, steps, seed=seed, target=target)
    edges, sizes = spec_edges(spec), spec.population_sizes
    records, build_s, run_s = [], 0.0, 0.0
    t0 = time.perf_counter()
    with runner if device in STANDALONE else contextlib.nullcontext():
        bar = _progress(n, progress, f"refsim {device}")
        for start in range(0, n, size):
            part = InputBatch(batch.mode, batch.data[start : start + size])
            result = runner.run(part)
            build_s, run_s = build_s + result.build_s, run_s + result.run_s
            sl = slice(start, start + part.n_images)
            records.append(
                to_record(
                    result.inputs,
                    result.tables,
                    sizes,
                    edges,
                    steps,
                    checkpoints,
                    labels[sl],
                    indices[sl],
                    record_neurons,
                    readout=spec.readout,
                    potential=result.potential,
                    tap_tables=result.tap_tables,
                )
            )
            if bar is not None:
                bar.update(part.n_images)
        if bar is not None:
            bar.close()
    meta: dict[str, Any] = {
        "simulator": "refsim",
        "device": device,
        "target": target if device == "runtime" else None,
        "threads": threads if device in STANDALONE else None,
        "input": batch.mode,
        "seed": int(seed),
        "rng": "brian2, seeded with `seed` before every batch" if batch.mode == "poisson" else None,
        "batch_size": size,
        "steps": steps,
        "dt_ms": spec.dt_ms,
        "schedule": spec.schedule,
        "reset": spec.reset,
        "readout": spec.readout,
        "build_s": build_s,
        "run_s": run_s,
        "wall_s": time.perf_counter() - t0,
        "image_steps_per_s": n * steps / run_s if run_s > 0 else None,
    }
    if device in STANDALONE:
        meta.update(compile_s=runner.compile_s, compiled=runner.compiled, build_dir=str(runner.directory))
    return concatenate(records).with_meta(**meta)


def _per_image(name: str, values: np.ndarray | None, n: int, fill: int | None) -> np.ndarray:
    if values is None:
        return np.full(n, fill, dtype=np.int64) if fill is not None else np.arange(n, dtype=np.int64)
    arr = np.asarray(values, dtype=np.int64)
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {arr.shape}")
    return arr


def _progress(total: int, enabled: bool, desc: str) -> Any:
    """A tqdm bar counting images (updated once per batch), or None."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc=desc)
