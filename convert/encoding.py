"""The counter-based Poisson input generator: numpy reference shared by both simulators.

A uniform 32-bit number is a pure function of (seed, image index, step, pixel)::

    h = mix(mix(mix(mix(seed) + image) + step) + pixel)          (additions mod 2^32)

with ``mix`` the "lowbias32" integer finalizer (C. Wellons). Input neuron i of image n spikes in step t iff

    h(seed, n, t, i) < p_i · 2^32,     p_i = x_i · max_rate_hz · dt_ms / 1000   (float64)

so with 1000 Hz and 1 ms the spike probability equals the pixel intensity x_i ∈ [0, 1]. The same seed gives
the same spikes on any device, any batch size and in Brian2 (fed as a SpikeGeneratorGroup). Every product
is computed on 16-bit halves so that it fits int64 without overflow: numpy and torch agree bit for bit.
fastsim/encode.py holds the torch twin of this module and is tested against it.
"""

from __future__ import annotations

import numpy as np

MASK32 = 0xFFFFFFFF
TWO32 = 4294967296.0
_C1 = 0x7FEB352D
_C2 = 0x846CA68B


def mul32(x: np.ndarray, c: int) -> np.ndarray:
    """(x · c) mod 2^32 for int64 x in [0, 2^32) without int64 overflow (numpy arrays or torch tensors)."""
    lo = x & 0xFFFF
    hi = x >> 16
    return (lo * c + ((hi * (c & 0xFFFF)) << 16)) & MASK32


def mix32(x: np.ndarray) -> np.ndarray:
    """lowbias32: a bijective avalanche mix of 32-bit values held in int64 (numpy arrays or torch tensors)."""
    x = x ^ (x >> 16)
    x = mul32(x, _C1)
    x = x ^ (x >> 15)
    x = mul32(x, _C2)
    return x ^ (x >> 16)


def image_keys(seed: int, image_indices: np.ndarray) -> np.ndarray:
    """Per-image key mix(mix(seed) + image) (int64 in [0, 2^32))."""
    if not 0 <= int(seed) <= MASK32:
        raise ValueError(f"seed must be in [0, 2^32), got {seed}")
    s = mix32(np.asarray([int(seed)], dtype=np.int64))
    return mix32((s + np.asarray(image_indices, dtype=np.int64)) & MASK32)


def step_hash(keys: np.ndarray, step: int, n_inputs: int) -> np.ndarray:
    """h for every (image, pixel) of one step: shape (len(keys), n_inputs), int64 in [0, 2^32)."""
    k = mix32((keys + int(step)) & MASK32)
    return mix32((k[:, None] + np.arange(n_inputs, dtype=np.int64)[None, :]) & MASK32)


def uniform(seed: int, image: int, step: int, pixel: int) -> float:
    """u(seed, image, step, pixel) ∈ [0, 1): the scalar form of the generator, for documentation and tests."""
    keys = image_keys(seed, np.asarray([image]))
    return float(step_hash(keys, step, pixel + 1)[0, pixel]) / TWO32


def intensity(images: np.ndarray) -> np.ndarray:
    """Canonical float64 pixel intensities in [0, 1]: uint8 images are divided by 255."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float64) / 255.0
    x = images.astype(np.float64)
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"pixel intensities must lie in [0, 1], got [{x.min()}, {x.max()}]")
    return x


def spike_thresholds(x: np.ndarray, max_rate_hz: float, dt_ms: float) -> np.ndarray:
    """The integer-domain thresholds p · 2^32 (float64), shape (N, n_inputs)."""
    p = intensity(x).reshape(len(x), -1) * (float(max_rate_hz) * float(dt_ms) / 1000.0)
    return p * TWO32


def poisson_spikes(
    images: np.ndarray,
    image_indices: np.ndarray,
    steps: int,
    seed: int,
    max_rate_hz: float = 1000.0,
    dt_ms: float = 1.0,
    start_step: int = 0,
) -> np.ndarray:
    """Input spikes, bool array (N, steps, n_inputs), of images (N, ...) with dataset indices ``image_indices``."""
    thr = spike_thresholds(images, max_rate_hz, dt_ms)
    keys = image_keys(seed, image_indices)
    out = np.empty((len(thr), steps, thr.shape[1]), dtype=bool)
    for t in range(steps):
        out[:, t] = step_hash(keys, start_step + t, thr.shape[1]) < thr
    return out
