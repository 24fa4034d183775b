"""A convolution of sparse binary spikes as a sum of table rows, one *band* of output rows per bag.

For a chunk of spikes S (R, C, H, W) of one population and a convolution W (O, C, kh, kw) with stride s and
padding p, output row y' (all its Wo·O currents, channels last) receives input rows y = s·y' − p + dy,
dy ∈ [0, kh). The contribution of an input spike at (c, y, x) to its output row depends only on
(dy, x, c), so a table

    T[dy, x, c] = (W[o, c, dy, x − (s·x' − p)])_{x', o}        (zero where the kernel misses x),

of kh·W·C rows of Wo·O entries, gives every output row as a sum of table rows:

    I[r, :, y', :] = Σ_{spikes (c, y, x) of row r with 0 ≤ y − (s·y' − p) < kh} T[y − (s·y' − p), x, c].

That is one ``torch.nn.functional.embedding_bag`` with one bag per (row, output row). The spikes of a bag
are a contiguous run of the spikes of row r sorted by (y, x, c), so the bags are built with a few vector ops
from the nonzero entries of S in channels-last order, without sorting. Each spike costs about
(kh/s) · Wo · O additions, against O·C·kh·kw·Ho·Wo multiply-adds per row for the dense convolution, and the
table is small (1.5 MB in float32 for the CNN's second convolution, against 28 MB for the fully unrolled
convolution matrix). Every table entry is one weight, so the sums are exact sums of weights (in the order of
the spikes, which may differ from a dense convolution's order in the last bit of a float32 sum).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from convert.contract.spec import Conv2d

# Use the banded sum while spikes per row ≤ BAND_RATIO · (s · Ho · C · kw), the point where its additions
# cost as much as the dense convolution. Measured on a 2-core Zen 4 box, float32, the CNN's second
# convolution (64c5 on 12x12x12): equal at ~80 spikes per row (density 0.05), the formula gives 72.
BAND_RATIO = 0.15


@dataclass(frozen=True)
class BandConv:
    """The convolution of ``layer`` on inputs of shape (C, H, W) as a banded table sum (see module doc)."""

    table: torch.Tensor  # (kh·W·C, Wo·O)
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    kh: int
    kw: int
    stride: int
    padding: int

    @classmethod
    def build(cls, layer: Conv2d, input_shape: tuple[int, ...], dtype: torch.dtype, device) -> BandConv:
        c_in, h, w = (int(d) for d in input_shape)
        o, _, kh, kw = layer.weight.shape
        (sh, sw), (ph, pw) = layer.stride, layer.padding
        _, ho, wo = layer.output_shape((c_in, h, w))
        weight = np.asarray(layer.dense_weight(), dtype=np.float64)  # a grouped one with its zeros
        table = np.zeros((kh, w, c_in, wo, o), dtype=np.float64)
        for xo in range(wo):
            for dx in range(kw):
                x = sw * xo - pw + dx
                if 0 <= x < w:
                    table[:, x, :, xo, :] = weight[:, :, :, dx].transpose(2, 1, 0)  # (kh, C, O)
        flat = torch.tensor(table.reshape(kh * w * c_in, wo * o), dtype=dtype, device=device)
        return cls(flat.contiguous(), (c_in, h, w), (o, ho, wo), kh, kw, sh, ph)

    def max_spikes_per_row(self) -> float:
        """Spikes per row below which the banded sum beats the dense convolution (:data:`BAND_RATIO`)."""
        c_in, _, _ = self.in_shape
        return BAND_RATIO * self.stride * self.out_shape[1] * c_in * self.kw

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Spikes x (R, C, H, W), 0/1 in any memory format → currents (R, O, Ho, Wo), channels-last in memory."""
        c_in, h, w = self.in_shape
        o, ho, wo = self.out_shape
        n_rows, device = x.shape[0], x.device
        nz = x.permute(0, 2, 3, 1).reshape(n_rows, h * w * c_in).nonzero()
        row, col = nz[:, 0], nz[:, 1]
        y, xc = col // (w * c_in), col % (w * c_in)  # input row; (x, c) within it
        # start[r, k]: rank within row r of its first spike at an input row ≥ k
        per_row_y = torch.bincount(row * h + y, minlength=n_rows * h).view(n_rows, h)
        start = torch.zeros(n_rows, h + 1, dtype=torch.int64, device=device)
        torch.cumsum(per_row_y, 1, out=start[:, 1:])
        row_base = torch.zeros(n_rows, dtype=torch.int64, device=device)
        row_base[1:] = start[:-1, -1].cumsum(0)
        top = torch.arange(ho, device=device) * self.stride - self.padding  # first input row of each band
        bag_lo = start[:, top.clamp(0, h)]
        bag_size = (start[:, (top + self.kh).clamp(0, h)] - bag_lo).reshape(-1)
        offsets = torch.zeros(n_rows * ho, dtype=torch.int64, device=device)
        torch.cumsum(bag_size[:-1], 0, out=offsets[1:])
        total = int(offsets[-1] + bag_size[-1]) if n_rows * ho else 0
        if total == 0:
            return self.table.new_zeros(n_rows, ho, wo, o).permute(0, 3, 1, 2)
        # every (dy, spike) pair whose input row lies in a band goes to its place in that band's bag
        dy = torch.arange(self.kh, device=device).view(-1, 1)
        num = y.view(1, -1) + self.padding - dy
        band = torch.div(num, self.stride, rounding_mode="floor") if self.stride > 1 else num
        inside = (band >= 0) & (band < ho)
        if self.stride > 1:
            inside &= num % self.stride == 0
        bag = row.view(1, -1) * ho + band.clamp(0, ho - 1)
        rank = torch.arange(len(row), device=device) - row_base[row]
        where = torch.where(inside, offsets[bag] + rank.view(1, -1) - bag_lo.view(-1)[bag], total)
        index = torch.empty(total + 1, dtype=torch.int64, device=device)  # the last slot takes the misses
        index[where.view(-1)] = (dy * (w * c_in) + xc.view(1, -1)).view(-1)
        out = F.embedding_bag(index[:total], self.table, offsets, mode="sum")
        return out.view(n_rows, ho, wo, o).permute(0, 3, 1, 2)
