"""``simulate``: a spec, images (or input spike trains) and a number of steps in; a SpikeRecord out.

The thin shell around :class:`fastsim.network.Network`: it checks the arguments (errors name the field),
encodes the input (:mod:`fastsim.encode`), splits the images into batches sized to a memory budget, runs
the engine on each batch (the default ``kernel="auto"``: the event-driven engine, :mod:`fastsim.events`, on a
CPU; the time-batched engine on a GPU) and joins the per-batch counts into one
:class:`convert.contract.records.SpikeRecord`. Poisson input spikes depend only on (seed, image index, step, pixel),
so the record does not depend on the batch size or the device (up to float rounding of the synaptic sums).
How the engine computes (device, dtype, kernel, batching, ...) is a :class:`fastsim.options.SimOptions`,
given whole (``options=``) or field by field as keywords.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from typing import Any

import numpy as np
import torch

from convert.contract.records import OneClassWarning, SpikeRecord, checked_checkpoints, one_class_warning
from convert.contract.spec import Conv2d, NetworkSpec
from convert.encoding import MASK32, intensity
from fastsim.encode import CurrentSource, InputSource, PoissonSource, SpikeTrainSource, _candidate_spikes
from fastsim.jit import Compiled
from fastsim.limbs import tf32_mode
from fastsim.margins import threshold_margins
from fastsim.network import Network
from fastsim.options import DTYPES, SimOptions, resolve_device, resolve_dtype
from fastsim.recorder import BatchCounts
from fastsim.scan import UNROLL

# resolve_device and resolve_dtype live in fastsim.options; importable from here as before
__all__ = ["DTYPES", "SimOptions", "exact_float32", "plan_batches", "resolve_device", "resolve_dtype", "simulate"]

DEFAULT_CHUNK_STEPS = {"cpu": 10, "cuda": 50}  # CPU: one fused scan group; small chunks stay in cache
MAX_BATCH = {"cpu": 128, "cuda": 65536}
# compile=None compiles runs of at least this many image-steps, where compiling pays for itself (2-core box,
# trained MNIST specs, 1000 images x 300 steps: the CNN runs 14.5 k image-steps/s eager and 31 k compiled, the
# MLP 60 k and 76 k; compiling costs ~3 s with inductor's on-disk cache warm and ~30 s cold)
COMPILE_MIN_IMAGE_STEPS = {"conv": 1_000_000, "dense": 5_000_000}


def exact_float32() -> contextlib.AbstractContextManager[None]:
    """No TF32 in float32 GEMMs and cuDNN convolutions (cuDNN allows it by default): float32 means float32."""
    return tf32_mode(False)


def _check_steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps <= 0:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    return int(steps)


def _input_rows(spec: NetworkSpec, shape: tuple[int, ...], what: str) -> None:
    """Accept (..., *input_shape), (..., n_inputs) or the input shape without its unit dimensions; a flat
    spec (input_shape (784,): an MLP that takes flattened images) takes any sample of n_inputs values, flattened
    row by row as ``x.view(len(x), -1)`` flattens it."""
    allowed = {spec.input_shape, (spec.n_inputs,), tuple(d for d in spec.input_shape if d != 1)}
    flat = len(tuple(d for d in spec.input_shape if d != 1)) <= 1
    if flat and int(np.prod(shape)) == spec.n_inputs:
        return
    if shape not in allowed:
        raise ValueError(
            f"{what}: one sample has shape {shape}, but the spec's input_shape is {spec.input_shape} "
            f"({spec.n_inputs} inputs); expected one of {sorted(allowed)}"
        )


def _intensities(spec: NetworkSpec, images: Any) -> np.ndarray:
    images = np.asarray(images.cpu() if isinstance(images, torch.Tensor) else images)
    if images.ndim < 2:
        raise ValueError(f"images: expected (N, *{spec.input_shape}), got shape {images.shape}")
    _input_rows(spec, tuple(images.shape[1:]), "images")
    try:
        x = intensity(images)
    except ValueError as err:
        raise ValueError(f"images: {err}") from None
    return x.reshape(len(x), spec.n_inputs)


def _spike_trains(spec: NetworkSpec, spikes: Any, steps: int) -> torch.Tensor:
    spikes = torch.as_tensor(spikes)
    if spikes.dtype != torch.bool:
        raise ValueError(f"spikes: expected a bool tensor (N, steps, n_inputs), got dtype {spikes.dtype}")
    if spikes.ndim < 3 or spikes.shape[1] != steps:
        raise ValueError(f"spikes: expected shape (N, {steps}, {spec.n_inputs}), got {tuple(spikes.shape)}")
    _input_rows(spec, tuple(spikes.shape[2:]), "spikes")
    return spikes.reshape(spikes.shape[0], steps, spec.n_inputs)


def _vector(values: Any, n: int, name: str, default: np.ndarray) -> np.ndarray:
    if values is None:
        return default
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    if len(v) != n:
        raise ValueError(f"{name}: {len(v)} entries for {n} images")
    return v


def row_bytes(spec: NetworkSpec, dtype: torch.dtype) -> int:
    """Bytes of working memory per (image, step) row of a chunk: the input and the largest layer pass."""
    item = torch.empty((), dtype=dtype).element_size()
    sizes = [spec.n_inputs] + [int(np.prod(spec.shapes[i + 1])) for i in spec.spiking_indices]
    layer = max(item * (pre + 2 * post) + post for pre, post in zip(sizes[:-1], sizes[1:], strict=True))
    return layer + spec.n_inputs * (item + 1 + 48)  # input: float, bool, int64 hash temporaries


def default_memory_budget(device: torch.device) -> int:
    """CPU: 64 MiB (2-core Zen 4 box, 32 MiB of L3, 512 MNIST images x 100 steps, float32: the CNN ran
    33-36 k image-steps/s with 48-96 MiB, 26.7 k with 12 MiB and 25 k with batches of 128; the MLP 88.6 k
    with 64 MiB, 83.7 k with 32 MiB); CUDA: a quarter of the free memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 4
    return 64 * 2**20


def plan_batches(spec: NetworkSpec, n_images: int, steps: int, options: SimOptions) -> tuple[int, int]:
    """(batch size, chunk steps) such that batch · chunk · row_bytes ≤ the memory budget. Without a given batch
    size the images are split into batches of (nearly) equal size, so that no small last batch runs slowly."""
    device = options.device
    per_row = row_bytes(spec, options.dtype)
    budget = options.memory_budget or default_memory_budget(device)
    if options.batch_size is None:
        chunk = min(steps, DEFAULT_CHUNK_STEPS[device.type])
        batch = max(1, min(n_images, MAX_BATCH[device.type], budget // (chunk * per_row)))
        batch = -(-n_images // -(-n_images // batch)) if n_images else batch
    else:
        batch = min(options.batch_size, max(n_images, 1))
    chunk = max(1, min(steps, DEFAULT_CHUNK_STEPS[device.type], budget // (batch * per_row)))
    if chunk > UNROLL:
        chunk -= chunk % UNROLL  # whole groups of the compiled group scan
    return batch, chunk


def _batch_source(
    spec: NetworkSpec, data: Any, indices: np.ndarray, seed: int, spikes_given: bool, opts: SimOptions, hash_fn
) -> InputSource:
    """The input source of one batch: given spike trains, analog ``current`` input or Poisson spikes."""
    if spikes_given:
        return SpikeTrainSource(data, opts.device, opts.dtype)
    if spec.encoding == "current":
        return CurrentSource(data, opts.device, opts.dtype)
    rate, dt_ms = spec.max_rate_hz, spec.dt_ms
    return PoissonSource(data, indices, seed, rate, dt_ms, opts.device, opts.dtype, hash_fn=hash_fn)


def simulate(
    spec: NetworkSpec,
    images: Any = None,
    *,
    spikes: Any = None,
    steps: int,
    seed: int = 0,
    image_indices: Any = None,
    labels: Any = None,
    checkpoints: Any = None,
    record_neurons: bool = False,
    record_margins: bool = False,
    options: SimOptions | None = None,
    **engine: Any,
) -> SpikeRecord:
    """Simulate ``spec`` on ``images`` (uint8, or float in [0, 1]) or on given input ``spikes``.

    images: (N, *spec.input_shape) or (N, n_inputs), encoded as the spec says (``poisson``: seeded by
    ``seed`` and ``image_indices``, the images' indices in their dataset split, default 0..N-1; ``current``).
    spikes: bool (N, steps, n_inputs) input spike trains instead of images. ``labels``: the images' classes
    (default -1). ``checkpoints``: step counts at which cumulative output counts are kept (default 1, 2, 5,
    10, ... and ``steps``). ``record_neurons``: keep per-neuron counts; ``record_margins``: each neuron's
    closest approach to its threshold (:mod:`fastsim.margins`).

    ``options``: how the engine computes, a :class:`fastsim.options.SimOptions` (device, dtype, matmul,
    kernel, batch_size, memory_budget, compile, progress); the default ``kernel="auto"`` runs the event engine
    on a CPU and the torch engine on a GPU (``meta["kernel"]`` names the one that ran). Each of its fields may
    also be given as a keyword, ``simulate(spec, images, steps=300, device="cuda", dtype="float64")``, which
    overrides that field of ``options``; any other keyword is a TypeError.
    """
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"spec must be a convert.contract.spec.NetworkSpec, got {type(spec).__name__}")
    steps = _check_steps(steps)
    opts = SimOptions.merge(options, engine).for_run(margins=record_margins, spec=spec)  # "auto": what runs
    if (images is None) == (spikes is None):
        raise ValueError("give exactly one of images or spikes")
    if not 0 <= int(seed) <= MASK32:
        raise ValueError(f"seed must be in [0, 2^32), got {seed!r}")
    data = _intensities(spec, images) if spikes is None else _spike_trains(spec, spikes, steps)
    n = len(data)
    indices = _vector(image_indices, n, "image_indices", np.arange(n, dtype=np.int64))
    if np.any(indices < 0) or np.any(indices > MASK32):
        raise ValueError("image_indices must lie in [0, 2^32)")
    true = _vector(labels, n, "labels", np.full(n, -1, dtype=np.int64))
    ckpt = checked_checkpoints(checkpoints, steps)
    if opts.kernel == "events":
        if record_margins:
            raise ValueError("record_margins: the threshold margins are measured by kernel='torch'; use it")
        run_batches, batch, chunk, compiled = _events_batches(spec, n, steps, opts, record_neurons)
    else:
        run_batches, batch, chunk, compiled = _torch_batches(spec, n, steps, opts, record_neurons, record_margins)

    parts: list[BatchCounts] = []
    margin_parts: list[list[np.ndarray]] = []
    start_time = time.perf_counter()
    bar = _progress(n, opts.progress)
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        counts, margins = run_batches(data[lo:hi], indices[lo:hi], int(seed), spikes is not None, ckpt)
        parts.append(counts)
        if margins is not None:
            margin_parts.append(margins)
        if bar is not None:
            bar.update(hi - lo)
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - start_time
    meta = {
        "simulator": "fastsim",
        "steps": steps,
        "device": str(opts.device),
        "dtype": str(opts.dtype).removeprefix("torch."),
        "matmul": opts.matmul,
        "kernel": opts.kernel,
        "seed": int(seed),
        "input": "spikes" if spikes is not None else spec.encoding,
        "schedule": spec.schedule,
        "reset": spec.reset,
        "readout": spec.readout,
        "batch_size": batch,
        "chunk_steps": chunk,
        "compiled": compiled,
        "wall_s": wall,
        "image_steps_per_s": n * steps / wall if wall > 0 else None,
    }
    record = _record(parts, ckpt, true, indices, record_neurons, meta, spec.readout)
    if record_margins:
        record = dataclasses.replace(record, margins=tuple(np.concatenate(m) for m in zip(*margin_parts, strict=True)))
    _warn_if_one_class(record, labels)
    return record


ONE_CLASS_MIN_IMAGES = 10  # a record of fewer images is not evidence of a broken conversion


def _warn_if_one_class(record: SpikeRecord, labels: Any) -> None:
    """A :class:`~convert.contract.records.OneClassWarning` when every one of at least
    :data:`ONE_CLASS_MIN_IMAGES` images got one class (or none) although ``labels`` hold several."""
    if labels is None or record.n_images < ONE_CLASS_MIN_IMAGES or len(np.unique(np.asarray(labels))) < 2:
        return
    message = one_class_warning(record)
    if message:
        warnings.warn(message, OneClassWarning, stacklevel=3)


def _torch_batches(spec: NetworkSpec, n: int, steps: int, opts: SimOptions, record_neurons: bool, margins: bool):
    """The time-batched torch engine: (run one batch, batch size, chunk steps, compiled)."""
    batch, chunk = plan_batches(spec, n, steps, opts)
    kind = "conv" if any(isinstance(layer, Conv2d) for layer in spec.layers) else "dense"
    use_compile = opts.compile if opts.compile is not None else n * steps >= COMPILE_MIN_IMAGE_STEPS[kind]
    net = Network(spec, opts.device, opts.dtype, compile=use_compile, matmul=opts.matmul, kernel=opts.kernel)
    hash_fn = Compiled(_candidate_spikes, dynamic=True) if use_compile else None

    def run(data, indices, seed, spikes_given, ckpt):
        size = len(data)
        source = _batch_source(spec, data, indices, seed, spikes_given, opts, hash_fn)
        with torch.inference_mode(), exact_float32():
            rec = net.run(source, size, steps, ckpt, chunk)
            counts = net.finish(rec, record_neurons)
            found = [m.cpu().numpy() for m in threshold_margins(net, source, size, steps)] if margins else None
        return counts, found

    return run, batch, chunk, net.compiled


def _events_batches(spec: NetworkSpec, n: int, steps: int, opts: SimOptions, record_neurons: bool):
    """The event-driven CPU engine (:mod:`fastsim.events`): (run one batch, batch size, None, False)."""
    from fastsim import events

    tables = events.tables_for(spec, opts.dtype)
    batch = min(opts.batch_size or events.BATCH, max(n, 1))

    def run(data, indices, seed, spikes_given, ckpt):
        data = data.numpy() if isinstance(data, torch.Tensor) else data
        counts = events.run_batch(tables, spec, data, spikes_given, indices, seed, steps, ckpt, record_neurons)
        return counts, None

    return run, batch, None, False


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc="fastsim")


def _record(parts, ckpt, labels, indices, record_neurons, meta, readout: str) -> SpikeRecord:
    def cat(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        arrays = [getattr(p, name) for p in parts]
        return np.concatenate(arrays) if arrays else np.zeros(shape, dtype=dtype)

    neuron = None
    if record_neurons and parts:
        neuron = tuple(np.concatenate(layer) for layer in zip(*(p.neuron_counts for p in parts), strict=True))
    return SpikeRecord(
        checkpoints=ckpt,
        output_counts=cat("output_counts", (0, len(ckpt), 0), np.int64),
        layer_counts=cat("layer_counts", (0, 0), np.int64),
        first_spike_step=cat("first_spike_step", (0,), np.int64),
        synops=cat("synops", (0, 0), np.float64),
        labels=labels,
        image_indices=indices,
        neuron_counts=neuron,
        meta=meta,
        readout=readout,
        synops_curve=cat("synops_curve", (0, len(ckpt), 0), np.float64),
        output_potential=cat("output_potential", (0, len(ckpt), 0), np.float64) if readout == "membrane" else None,
    )
