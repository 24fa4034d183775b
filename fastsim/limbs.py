"""Weights split into TF32 limbs: float32-accurate synaptic sums on tensor cores.

Spikes are 0/1, exact in any float format, so the error of a spike-weight product lies only in the weights and
in the accumulation. TF32 tensor-core GEMMs and convolutions read float32 operands rounded to TF32 (1 sign, 8
exponent and 10 stored mantissa bits) and accumulate and return float32. Writing each weight as a sum of
``parts`` TF32 numbers (*limbs*),

    w = l_0 + l_1 + ... + l_{p-1} + r,     l_k = tf32(w − l_0 − ... − l_{k-1}),   |r| ≤ 2^(−11·p) |w|,

and running the product once over the limbs concatenated along the output dimension (one GEMM or convolution
with p times the output neurons, then a sum over the p partial currents) gives sums that are as accurate as
float32 arithmetic for p = 2 (22 of float32's 24 significant bits) and better for p = 3, at the speed of the
tensor cores (measured on one H100, a spike GEMM of 1 M rows, 784 → 1200: TF32 6.9 ms, float32 40 ms). Every
limb is exactly representable in TF32, so it is the same whatever rounding the hardware applies to its inputs,
and on a CPU (no TF32) the same products are computed in float32: the CPU run is the reference the GPU run is
checked against.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

TF32_DROPPED_BITS = 13  # float32 has 23 stored mantissa bits, TF32 keeps 10
MATMUL_MODES = {"fp32": 1, "tf32x2": 2, "tf32x3": 3}  # mode → number of limbs (fp32: the weights themselves)


def tf32_round(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest TF32 value (ties to even), as float32 with 13 zero low bits.
    Infinities stay; NaN is not expected (specs reject it)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    half = np.uint64((1 << (TF32_DROPPED_BITS - 1)) - 1)
    lsb = (bits >> np.uint64(TF32_DROPPED_BITS)) & np.uint64(1)
    rounded = (bits + half + lsb) & np.uint64(~((1 << TF32_DROPPED_BITS) - 1) & 0xFFFFFFFF)
    finite = np.isfinite(np.asarray(x, dtype=np.float32))
    out = np.where(finite, rounded, bits).astype(np.uint32).view(np.float32)
    return out.reshape(np.shape(x))


def split_limbs(weight: np.ndarray, parts: int) -> np.ndarray:
    """``parts`` TF32 limbs of ``weight`` (any float array), shape (parts, *weight.shape), float32; their sum
    (in float64) is within 2^(−11·parts) relative of the float64 weight (each limb rounds what the previous
    ones left, computed exactly in float64)."""
    if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
        raise ValueError(f"parts must be a positive int, got {parts!r}")
    rest = np.asarray(weight, dtype=np.float64)
    limbs = []
    for _ in range(parts):
        limb = tf32_round(rest.astype(np.float32))
        limbs.append(limb)
        rest = rest - limb.astype(np.float64)
    return np.stack(limbs)


def check_mode(mode: str, dtype: torch.dtype) -> int:
    """The number of limbs of a matmul mode; split modes need float32 state."""
    if mode not in MATMUL_MODES:
        raise ValueError(f"matmul must be one of {', '.join(MATMUL_MODES)}, got {mode!r}")
    if mode != "fp32" and dtype != torch.float32:
        raise ValueError(f"matmul={mode!r} splits weights for float32 simulations; got dtype {dtype}")
    return MATMUL_MODES[mode]


@contextlib.contextmanager
def tf32_mode(enabled: bool) -> Iterator[None]:
    """TF32 on or off for float32 GEMMs and cuDNN convolutions, restored on exit. No effect on a CPU."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def tf32_enabled() -> contextlib.AbstractContextManager[None]:
    """TF32 on, for the limbs' products (inside :func:`fastsim.simulate.exact_float32`, which turns it off for
    every other float32 product)."""
    return tf32_mode(True)


def sum_limbs(out: torch.Tensor, parts: int) -> torch.Tensor:
    """(R, parts·n, ...) partial currents of the limbs concatenated along dim 1 → (R, n, ...), summed in limb
    order (largest first)."""
    split = out.unflatten(1, (parts, out.shape[1] // parts))
    total = split[:, 0]
    for k in range(1, parts):
        total = total + split[:, k]
    return total
