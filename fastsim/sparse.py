"""Binary spike matrices by their nonzero columns, and the sparse product with a dense weight matrix.

A chunk of spikes of one population is a 0/1 matrix S of shape (R, n), R = steps × images. Activity in
converted networks is sparse (a few percent of the neurons spike per step), so I = S · Wᵀ is cheaper as a
sum of the rows of Wᵀ picked by the spikes than as a dense GEMM:

    I_r = Σ_{i : S_ri = 1} Wᵀ_i,

which is exactly ``torch.nn.functional.embedding_bag(cols, Wᵀ, offsets, mode="sum")`` (FBGEMM kernels on
CPU). The sum runs over the spiking inputs in increasing index order; a dense GEMM sums in its own blocked
order, so the two may differ in the last bit of a float32 sum (never for exactly representable sums).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SpikeRows:
    """A 0/1 matrix (n_rows, n_cols): ``cols`` holds the column of every 1, row by row in increasing order;
    row r's entries are ``cols[offsets[r] : offsets[r + 1]]`` (the last row runs to the end)."""

    cols: torch.Tensor
    offsets: torch.Tensor
    n_rows: int
    n_cols: int

    @property
    def nnz(self) -> int:
        return int(self.cols.numel())

    @property
    def density(self) -> float:
        return self.nnz / max(1, self.n_rows * self.n_cols)

    @classmethod
    def from_coo(cls, rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int) -> SpikeRows:
        """From the (row, column) of every 1, sorted by row (columns ascending within a row)."""
        counts = torch.bincount(rows, minlength=n_rows)
        offsets = torch.zeros(n_rows, dtype=torch.int64, device=rows.device)
        offsets[1:] = counts.cumsum(0)[:-1]
        return cls(cols, offsets, n_rows, n_cols)

    @classmethod
    def from_dense(cls, x: torch.Tensor) -> SpikeRows:
        """From a 0/1 tensor (R, ...), flattened to (R, n) in C order."""
        flat = x.reshape(x.shape[0], -1)
        nz = flat.nonzero()
        return cls.from_coo(nz[:, 0], nz[:, 1], flat.shape[0], flat.shape[1])

    def to_dense(self, dtype: torch.dtype) -> torch.Tensor:
        out = torch.zeros(self.n_rows, self.n_cols, dtype=dtype, device=self.cols.device)
        if self.nnz:
            counts = torch.diff(self.offsets, append=self.offsets.new_tensor([self.nnz]))
            rows = torch.repeat_interleave(torch.arange(self.n_rows, device=self.cols.device), counts)
            out[rows, self.cols] = 1
        return out


def spike_matmul(spikes: SpikeRows, weight_t: torch.Tensor) -> torch.Tensor:
    """S · Wᵀ for S given as :class:`SpikeRows` and ``weight_t`` = Wᵀ of shape (n_cols, out)."""
    if spikes.nnz == 0:
        return weight_t.new_zeros(spikes.n_rows, weight_t.shape[1])
    return F.embedding_bag(spikes.cols, weight_t, spikes.offsets, mode="sum")
