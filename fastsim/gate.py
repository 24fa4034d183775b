"""The max-pool gate and the skip edge on a device: what a stage adds to the chain of docs/semantics.md.

:class:`MaxGate` runs the gate of :class:`convert.contract.spec.MaxPool2d` over a chunk of steps, time first: for
spikes s (n, B, C, H, W) of the population below and the spike counts c (B, C, H', W', k²) of its units so far,
the count of every unit after step t is c + Σ_{t' ≤ t} s(t') (the spikes of step t included), each window's
winner is the unit with the highest count, ties to the lowest position in the window (the lowest C-order
index), and the gate's output in step t is the winner's spike of step t. Counts are int64, so the winner is
exact on every device; the output spikes are the input's own 0/1 values, in their dtype.

:class:`SkipEdge` is a skip edge's synapse map (identity times a gain, or a Dense/Conv2d operator of
:mod:`fastsim.layers`) and the fan-out of its source units; it reads the activity of the tap it names
(:meth:`convert.contract.spec.NetworkSpec.tap`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class MaxGate:
    """The gate of the spec layer ``layer`` (:class:`convert.contract.spec.MaxPool2d`: kernel, stride, zero
    padding, ceil_mode) on a population of shape ``in_shape`` (C, H, W); output ``shape`` (C, H', W')."""

    layer: Any
    in_shape: tuple[int, int, int]
    shape: tuple[int, int, int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "in_shape", tuple(self.in_shape))
        object.__setattr__(self, "shape", self.layer.output_shape(self.in_shape))

    @property
    def kernel(self) -> int:
        return self.layer.kernel_size

    def initial(self, batch: int, device: torch.device) -> torch.Tensor:
        """No spike counted yet: zeros (B, C, H', W', k²)."""
        return torch.zeros(batch, *self.shape, self.kernel**2, dtype=torch.int64, device=device)

    def windows(self, x: torch.Tensor) -> torch.Tensor:
        """(n, B, C, H, W) → (n, B, C, H', W', k²): each window's positions in row-major order (their C order),
        zero where the window holds padding or lies past the input. A padded position's count stays 0, so it
        can only win a window whose real units have not fired yet, whose output is then 0 as the real
        winner's would be: the same spikes as a winner among the real units."""
        k, s, p = self.kernel, self.layer.step, self.layer.padding
        _, oh, ow = self.shape
        h, w = self.in_shape[1:]
        bottom, right = max(0, (oh - 1) * s + k - h - p), max(0, (ow - 1) * s + k - w - p)
        if p or bottom or right:
            x = torch.nn.functional.pad(x, (p, right, p, bottom))
        win = x.unfold(3, k, s).unfold(4, k, s)  # (n, B, C, H', W', k, k) (the last two: row, column)
        return win[:, :, :, :oh, :ow].reshape(*win.shape[:3], oh, ow, k * k)

    def __call__(self, spikes: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gate the spikes (n, B, C, H, W) of n steps given the counts before them; returns the passed spikes
        (n, B, C, H', W') and the counts after the n steps."""
        win = self.windows(spikes)
        kk = win.shape[-1]
        cum = counts.unsqueeze(0) + win.to(torch.int64).cumsum(0)  # counts after each step, this step's included
        # a unique key per unit: the count first, then the earlier position (ties to the lowest index)
        rank = torch.arange(kk - 1, -1, -1, device=spikes.device, dtype=torch.int64)
        winner = (cum * kk + rank).argmax(-1, keepdim=True)
        return win.gather(-1, winner).squeeze(-1), cum[-1]


@dataclass(frozen=True)
class SkipEdge:
    """A skip edge into a stage: ``op`` maps the tap's activity (R, *in_shape) to currents (R, *stage shape)."""

    tap: tuple[str, int]
    op: Callable[[torch.Tensor], torch.Tensor]
    in_shape: tuple[int, ...]
    fanout: torch.Tensor  # float64 (n_source,): the skip synapses leaving each source unit

    def current(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x.reshape(len(x), *self.in_shape))


@dataclass(frozen=True)
class Gain:
    """The identity skip map times a gain g (rounded to the simulation dtype once)."""

    gain: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain
