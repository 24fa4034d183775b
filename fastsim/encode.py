"""Input encoders: the torch twin of :mod:`convert.encoding`, analog ``current`` input and given spike trains.

Every encoder is an *input source* for one batch of B images (:class:`InputSource`): ``source.chunk(start, n)``
returns the layer-0 input s_0(t) for steps ``start .. start+n-1`` as a tensor (n, B, n_inputs), time first, in
the simulation dtype; ``source.input_counts(steps)`` gives Σ_t s_0,i(t) per image and input (for
synaptic-event counts). The Poisson source can also hand out its spikes as :class:`~fastsim.sparse.SpikeRows`
(``chunk_rows``), never building the dense tensor, or the inputs of a kernel that draws them itself
(``kernel_inputs``). Which of these the engine uses is decided by the source's class
(:mod:`fastsim.input_paths`).

``poisson`` (docs/semantics.md): input neuron i of image n spikes in step t iff

    h(seed, n, t, i) < p_i · 2^32,      p_i = x_i · max_rate_hz · dt_ms / 1000      (float64),

    h = mix(mix(mix(mix(seed) + n) + t) + i)      (additions mod 2^32, mix = lowbias32, C. Wellons)

Each product inside ``mix`` is computed on 16-bit halves in int64, exactly as the numpy reference does, so
numpy, CPU and CUDA agree bit for bit. Since h is an integer, ``h < p·2^32`` ⇔ ``h < ceil(p·2^32)``: the
comparison runs in int64 against thresholds computed once in float64. A pixel with p = 0 never spikes, so
only the (image, pixel) pairs with p > 0 are hashed (about a fifth of an MNIST image).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch

# mul32 and mix32 use only integer operators that numpy arrays and torch tensors share: one definition
# serves both, so the two generators cannot drift apart.
from convert.encoding import MASK32, TWO32, mix32, mul32
from fastsim.sparse import SpikeRows

__all__ = [
    "mul32",
    "mix32",
    "image_keys",
    "poisson_spikes",
    "InputSource",
    "PoissonSource",
    "CurrentSource",
    "SpikeTrainSource",
]


def image_keys(seed: int, image_indices: torch.Tensor) -> torch.Tensor:
    """Per-image key mix(mix(seed) + n), int64 in [0, 2^32), on the device of ``image_indices``."""
    if not 0 <= int(seed) <= MASK32:
        raise ValueError(f"seed must be in [0, 2^32), got {seed}")
    idx = image_indices.to(torch.int64)
    s = mix32(torch.tensor([int(seed)], dtype=torch.int64, device=idx.device))
    return mix32((s + idx) & MASK32)


def _candidate_spikes(step_keys: torch.Tensor, images: torch.Tensor, pixels: torch.Tensor, thr: torch.Tensor):
    """Spikes (T, K) of K (image, pixel) candidates: mix(step_keys[t, image_k] + pixel_k) < thr_k."""
    return mix32((step_keys[:, images] + pixels) & MASK32) < thr


def integer_thresholds(x: np.ndarray, max_rate_hz: float, dt_ms: float) -> np.ndarray:
    """ceil(p · 2^32) as int64, clipped to 2^32 (every h < 2^32 then spikes), from float64 intensities x."""
    thr = np.asarray(x, dtype=np.float64) * (float(max_rate_hz) * float(dt_ms) / 1000.0) * TWO32
    return np.minimum(np.ceil(thr), TWO32).astype(np.int64)


class InputSource(Protocol):
    """What every input source offers (module doc)."""

    def chunk(self, start: int, n: int) -> torch.Tensor: ...

    def input_counts(self, steps: int) -> torch.Tensor: ...


class PoissonSource:
    """Counter-based Poisson input of one batch: intensities x (B, n_inputs) in [0, 1] as float64.

    ``hash_fn`` computes the spikes of the candidate pairs; a :class:`fastsim.jit.Compiled` version of the
    default may be handed in (the maths is the same, only fused). The source counts the spikes it serves.
    """

    def __init__(
        self,
        x: np.ndarray,
        image_indices: np.ndarray,
        seed: int,
        max_rate_hz: float,
        dt_ms: float,
        device: torch.device,
        dtype: torch.dtype,
        hash_fn: Callable | None = None,
    ) -> None:
        x = np.asarray(x, dtype=np.float64)
        self.n_images, self.n_inputs = x.shape
        self.device, self.dtype = torch.device(device), dtype
        thr = integer_thresholds(x, max_rate_hz, dt_ms).reshape(-1)
        cand = np.flatnonzero(thr > 0)  # image-major, then pixel: the order SpikeRows needs
        self._flat = torch.as_tensor(cand, device=self.device)
        self._images = torch.as_tensor(cand // self.n_inputs, device=self.device)
        self._pixels = torch.as_tensor(cand % self.n_inputs, device=self.device)
        self._thr = torch.as_tensor(thr[cand], device=self.device)
        self._keys = image_keys(seed, torch.as_tensor(np.asarray(image_indices, dtype=np.int64), device=self.device))
        self._hash = hash_fn or _candidate_spikes
        self._counts = torch.zeros(len(cand), dtype=torch.int64, device=self.device)
        self._kernel_inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._served = 0  # steps 0.._served-1 have been served (and counted)

    def kernel_inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For a kernel that draws this source's spikes itself (:mod:`fastsim.fused`): the image keys (B,), the
        integer thresholds (B, n_inputs) int64 and a float32 (B, n_inputs) tensor the kernel adds its input
        spike counts to (included in :meth:`input_counts`)."""
        if self._kernel_inputs is None:
            thr = torch.zeros(self.n_images * self.n_inputs, dtype=torch.int64, device=self.device)
            thr[self._flat] = self._thr  # dark pixels (p = 0) keep threshold 0: never a spike
            counts = torch.zeros(self.n_images, self.n_inputs, dtype=torch.float32, device=self.device)
            self._kernel_inputs = self._keys, thr.view(self.n_images, self.n_inputs), counts
        return self._kernel_inputs

    def _draw(self, start: int, n: int) -> torch.Tensor:
        """Spikes (n, K) of the K candidate (image, pixel) pairs in steps start..start+n-1 (not counted)."""
        steps = torch.arange(start, start + n, dtype=torch.int64, device=self.device)
        step_keys = mix32((self._keys[None, :] + steps[:, None]) & MASK32)  # (n, B)
        return self._hash(step_keys, self._images, self._pixels, self._thr)

    def _mask(self, start: int, n: int) -> torch.Tensor:
        """:meth:`_draw`, counted as served."""
        mask = self._draw(start, n)
        self._counts += mask.sum(0)
        self.mark_served(start + n)
        return mask

    def mark_served(self, end: int) -> None:
        """The steps before ``end`` have been served (in order, from step 0): what :meth:`input_counts`
        counts back from. The fused kernel calls it after drawing a chunk itself."""
        self._served = max(self._served, int(end))

    def spikes(self, start: int, n: int) -> torch.Tensor:
        """Input spikes of steps start..start+n-1 as bool (n, B, n_inputs)."""
        out = torch.zeros(n, self.n_images * self.n_inputs, dtype=torch.bool, device=self.device)
        if len(self._flat):
            out[:, self._flat] = self._mask(start, n)
        self.mark_served(start + n)  # also when no pixel can spike
        return out.view(n, self.n_images, self.n_inputs)

    def chunk(self, start: int, n: int) -> torch.Tensor:
        return self.spikes(start, n).to(self.dtype)

    def chunk_rows(self, start: int, n: int) -> SpikeRows:
        """The same spikes as :meth:`chunk`, as :class:`SpikeRows` of shape (n · B, n_inputs)."""
        nz = self._mask(start, n).nonzero() if len(self._flat) else self._flat.new_zeros(0, 2)
        self.mark_served(start + n)
        k = nz[:, 1]
        rows = nz[:, 0] * self.n_images + self._images[k]
        return SpikeRows.from_coo(rows, self._pixels[k], n * self.n_images, self.n_inputs)

    def input_counts(self, steps: int) -> torch.Tensor:
        """Σ_{t < steps} s_0,i(t) per image and input (B, n_inputs), float64. ``steps`` may not exceed the steps
        served so far; below them, the spikes of steps ``steps .. served-1`` are drawn again and taken off the
        counts (a checkpoint inside a chunk)."""
        if steps > self._served:
            raise ValueError(f"input_counts({steps}): only {self._served} steps have been served")
        out = torch.zeros(self.n_images * self.n_inputs, dtype=torch.float64, device=self.device)
        out[self._flat] = self._counts.to(torch.float64)
        out = out.view(self.n_images, self.n_inputs)
        if self._kernel_inputs is not None:
            out = out + self._kernel_inputs[2].to(torch.float64)
        if steps < self._served:
            out = out - self._uncounted(steps, self._served - steps)
        return out

    def _uncounted(self, start: int, n: int) -> torch.Tensor:
        """(B, n_inputs) float64 spike counts of steps start..start+n-1 (drawn again, for :meth:`input_counts`)."""
        out = torch.zeros(self.n_images * self.n_inputs, dtype=torch.float64, device=self.device)
        if len(self._flat):
            out[self._flat] = self._draw(start, n).sum(0).to(torch.float64)
        return out.view(self.n_images, self.n_inputs)


class CurrentSource:
    """Analog input: s_0(t) = x every step (the ``current`` encoding); chunks are broadcast views."""

    def __init__(self, x: np.ndarray, device: torch.device, dtype: torch.dtype) -> None:
        self.x = torch.as_tensor(np.asarray(x, dtype=np.float64), device=device)
        self._xd = self.x.to(dtype)

    def chunk(self, start: int, n: int) -> torch.Tensor:
        return self._xd.expand(n, *self._xd.shape)

    def input_counts(self, steps: int) -> torch.Tensor:
        """Σ_t x_i = steps · x_i: the analog input takes the place of the spike count in the synop sum."""
        return self.x * float(steps)


class SpikeTrainSource:
    """User-supplied input spikes: a bool tensor (B, steps, n_inputs), e.g. the very trains fed to Brian2."""

    def __init__(self, spikes: torch.Tensor, device: torch.device, dtype: torch.dtype) -> None:
        self.spikes = torch.as_tensor(spikes, device=device).to(torch.bool)
        self.dtype = dtype

    def chunk(self, start: int, n: int) -> torch.Tensor:
        return self.spikes[:, start : start + n].transpose(0, 1).to(self.dtype)

    def input_counts(self, steps: int) -> torch.Tensor:
        return self.spikes[:, :steps].sum(1, dtype=torch.float64)


def poisson_spikes(
    images: np.ndarray,
    image_indices: np.ndarray,
    steps: int,
    seed: int,
    max_rate_hz: float = 1000.0,
    dt_ms: float = 1.0,
    start_step: int = 0,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Input spikes bool (N, steps, n_inputs): the torch twin of :func:`convert.encoding.poisson_spikes`."""
    from convert.encoding import intensity

    x = intensity(images).reshape(len(images), -1)
    src = PoissonSource(x, image_indices, seed, max_rate_hz, dt_ms, torch.device(device), torch.float32)
    return src.spikes(start_step, steps).transpose(0, 1).contiguous()
