"""A fused Dense layer over a chunk of steps: spike GEMM, integrate, fire and reset in one Triton kernel.

The time-batched engine computes a Dense layer's currents for all T steps of a chunk with one GEMM, writes them
to memory, and scans them in time (:mod:`fastsim.scan`). This kernel keeps the membrane tile in registers
instead: each program owns a tile of (images × neurons), and for t = 0..T-1 it accumulates the tile's current
I(t) = s(t) · Wᵀ over the input dimension on tensor cores (``tl.dot``), then applies the layer step of the
schedule and the reset, and writes the tile's spikes. Only the input and output spikes and the final v and
counts touch memory; the currents never do.

The layer step is :func:`fastsim.step.if_update`, the one definition every fastsim path computes. Triton
cannot call torch code, so :func:`_if_update` restates it line for line; tests/fastsim/test_step_paths.py
drives the same cases through both and requires identical spikes and membranes.

Weights come as ``P`` limbs (``P`` = 1: float32 weights, IEEE products; ``P`` = 2 or 3: TF32 limbs from
:func:`fastsim.limbs.split_limbs`, TF32 products), summed into one float32 accumulator. The sums are the
engine's sums in another order, so results equal the engine's exactly when every sum is exact (dyadic
weights, as in the tests) and otherwise agree as float32 results do (docs/fastsim.md).

Triton is optional (the ``gpu`` extra; the GPU machines have it). On a CPU the kernel runs only under
``TRITON_INTERPRET=1`` (slowly; for the tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from fastsim.scan import LayerChunk
from fastsim.step import IFState

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the environment
    triton = None


def unavailable_reason(device: torch.device) -> str | None:
    """Why the fused kernel cannot run on ``device``; None when it can."""
    if triton is None:
        return "Triton is not installed (pip install triton; the GPU machines have it)"
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        return "Triton kernels need a CUDA device (or TRITON_INTERPRET=1 on a CPU, for tests)"
    return None


if triton is not None:

    @triton.jit
    def _mix32(x):
        """lowbias32 on int64 values in [0, 2^32) (:func:`convert.encoding.mix32`): products wrap in 64 bits and
        are masked to their exact low 32 bits."""
        x = x ^ (x >> 16)
        x = (x * 0x7FEB352D) & 0xFFFFFFFF
        x = x ^ (x >> 15)
        x = (x * 0x846CA68B) & 0xFFFFFFFF
        return x ^ (x >> 16)

    @triton.jit
    def _if_update(v, current, threshold, RESET_ZERO: tl.constexpr, DELAY: tl.constexpr):
        """:func:`fastsim.step.if_update` in Triton, line for line (the definition is there; keep the two
        identical): u = v + I;  c = v (delay) or u (cascade);  s = [c ≥ θ];  v' = reset(u, s)."""
        integrated = v + current
        if DELAY:
            checked = v
        else:
            checked = integrated
        fired = checked >= threshold
        if RESET_ZERO:
            new_v = tl.where(fired, integrated - integrated, integrated)
        else:
            new_v = tl.where(fired, integrated - threshold, integrated)
        return fired, new_v

    @triton.jit
    def _dense_if_kernel(
        s_ptr,  # (T, B, K) float32 0/1 input spikes, contiguous (unused with POISSON)
        keys_ptr,  # (B,) int64 image keys mix(mix(seed) + image) (POISSON)
        thr_ptr,  # (B, K) int64 thresholds ceil(p · 2^32) (POISSON)
        incnt_ptr,  # (B, K) float32 input spike counts, accumulated (POISSON)
        w_ptr,  # (P, K, N) float32 weight limbs (Wᵀ), contiguous
        v_ptr,  # (B, N) float32 membrane, read and written
        out_ptr,  # (T, B, N) float32 0/1 output spikes
        cnt_ptr,  # (B, N) float32 spike counts over the T steps
        T,
        B,
        K,
        N,
        start,
        threshold,
        P: tl.constexpr,
        RESET_ZERO: tl.constexpr,
        DELAY: tl.constexpr,
        TF32: tl.constexpr,
        POISSON: tl.constexpr,
        BM: tl.constexpr,
        BN: tl.constexpr,
        BK: tl.constexpr,
    ):
        rm = tl.program_id(0) * BM + tl.arange(0, BM)
        rn = tl.program_id(1) * BN + tl.arange(0, BN)
        rk = tl.arange(0, BK)
        in_m, in_n = rm < B, rn < N
        tile = in_m[:, None] & in_n[None, :]
        vn = rm[:, None] * N + rn[None, :]
        v = tl.load(v_ptr + vn, mask=tile, other=0.0)
        count = tl.zeros((BM, BN), dtype=tl.float32)
        if POISSON:
            keys = tl.load(keys_ptr + rm, mask=in_m, other=0)
        for t in range(T):
            acc = tl.zeros((BM, BN), dtype=tl.float32)
            if POISSON:
                step_keys = _mix32((keys + start + t) & 0xFFFFFFFF)
            for k0 in range(0, K, BK):
                kk = k0 + rk
                in_k = kk < K
                in_mk = in_m[:, None] & in_k[None, :]
                if POISSON:  # input spikes from the counter hash: h(seed, image, step, pixel) < ceil(p · 2^32)
                    h = _mix32((step_keys[:, None] + kk[None, :].to(tl.int64)) & 0xFFFFFFFF)
                    thr = tl.load(thr_ptr + rm[:, None] * K + kk[None, :], mask=in_mk, other=0)
                    a = (h < thr).to(tl.float32)
                    if tl.program_id(1) == 0:  # one column of programs counts the input spikes
                        cnt_in = tl.load(incnt_ptr + rm[:, None] * K + kk[None, :], mask=in_mk, other=0.0)
                        tl.store(incnt_ptr + rm[:, None] * K + kk[None, :], cnt_in + a, mask=in_mk)
                else:
                    a = tl.load(s_ptr + t * B * K + rm[:, None] * K + kk[None, :], mask=in_mk, other=0.0)
                for p in tl.static_range(P):
                    w = tl.load(
                        w_ptr + p * K * N + kk[:, None] * N + rn[None, :], mask=in_k[:, None] & in_n[None, :], other=0.0
                    )
                    if TF32:
                        acc += tl.dot(a, w, input_precision="tf32")
                    else:
                        acc += tl.dot(a, w, input_precision="ieee")
            fired, v = _if_update(v, acc, threshold, RESET_ZERO, DELAY)
            spikes = fired.to(tl.float32)
            tl.store(out_ptr + t * B * N + vn, spikes, mask=tile)
            count += spikes
        tl.store(v_ptr + vn, v, mask=tile)
        tl.store(cnt_ptr + vn, count, mask=tile)


def _launch(
    inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    start: int,
    n_steps: int,
    limbs: torch.Tensor,
    v: torch.Tensor,
    threshold: float,
    reset: str,
    schedule: str,
    tf32: bool,
    block: tuple[int, int, int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run :func:`_dense_if_kernel` on ``inputs`` = (spikes, keys, thresholds, input counts), of which a Poisson
    launch (``start`` not None) uses the last three and a spike launch the first; returns (spikes, v, counts)."""
    reason = unavailable_reason(v.device)
    if reason:
        raise RuntimeError(reason)
    if limbs.dtype != torch.float32 or v.dtype != torch.float32:
        raise TypeError("the fused kernel computes in float32")
    (batch, n), k = v.shape, limbs.shape[1]
    bm, bn, bk = block
    out = torch.empty(n_steps, batch, n, dtype=torch.float32, device=v.device)
    counts = torch.empty(batch, n, dtype=torch.float32, device=v.device)
    v_new = v.clone().contiguous()
    grid = (triton.cdiv(batch, bm), triton.cdiv(n, bn))
    _dense_if_kernel[grid](
        *inputs,
        limbs.contiguous(),
        v_new,
        out,
        counts,
        n_steps,
        batch,
        k,
        n,
        0 if start is None else int(start),
        float(threshold),
        P=limbs.shape[0],
        RESET_ZERO=reset == "zero",
        DELAY=schedule == "delay",
        TF32=tf32,
        POISSON=start is not None,
        BM=bm,
        BN=bn,
        BK=bk,
    )
    return out, v_new, counts


def dense_if_chunk(
    spikes: torch.Tensor,
    limbs: torch.Tensor,
    v: torch.Tensor,
    threshold: float,
    reset: str,
    schedule: str,
    tf32: bool,
    block: tuple[int, int, int] = (64, 64, 32),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One Dense layer over T steps: input ``spikes`` (T, B, K) 0/1 float32, weight ``limbs`` (P, K, N) (Wᵀ;
    P = 1 with ``tf32`` False: float32 weights), membrane ``v`` (B, N) float32 → output spikes (T, B, N) 0/1
    float32, the final v (a new tensor) and the spike counts (B, N)."""
    if spikes.dtype != torch.float32:
        raise TypeError("the fused kernel computes in float32")
    n_steps, batch, k = spikes.shape
    if limbs.shape[1] != k or v.shape != (batch, limbs.shape[2]):
        raise ValueError(
            f"shapes do not match: spikes {tuple(spikes.shape)}, limbs {tuple(limbs.shape)}, v {tuple(v.shape)}"
        )
    spikes = spikes.contiguous()
    unused = (spikes, spikes, spikes)  # keys, thresholds, input counts: read only by Poisson launches
    return _launch((spikes, *unused), None, n_steps, limbs, v, threshold, reset, schedule, tf32, block)


def poisson_dense_if_chunk(
    keys: torch.Tensor,
    thresholds: torch.Tensor,
    input_counts: torch.Tensor,
    start: int,
    n_steps: int,
    limbs: torch.Tensor,
    v: torch.Tensor,
    threshold: float,
    reset: str,
    schedule: str,
    tf32: bool,
    block: tuple[int, int, int] = (64, 64, 32),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`dense_if_chunk` for a first layer fed by Poisson input, the spikes drawn inside the kernel from the
    counter hash (:mod:`fastsim.encode`): image ``keys`` (B,) int64, integer ``thresholds`` (B, K) int64, steps
    ``start .. start + n_steps - 1``. The input spikes never reach memory; their counts are added to
    ``input_counts`` (B, K) float32 in place."""
    batch, k = thresholds.shape
    _, k_w, n = limbs.shape
    if k_w != k or v.shape != (batch, n) or keys.shape != (batch,) or input_counts.shape != (batch, k):
        shapes = f"keys {tuple(keys.shape)}, thresholds {tuple(thresholds.shape)}, limbs {tuple(limbs.shape)}"
        raise ValueError(f"shapes do not match: {shapes}, v {tuple(v.shape)}")
    poisson = (keys.to(torch.int64).contiguous(), thresholds.to(torch.int64).contiguous(), input_counts)
    return _launch((v, *poisson), start, n_steps, limbs, v, threshold, reset, schedule, tf32, block)


@dataclass(frozen=True)
class FusedDense:
    """A Dense layer's fused step: weight ``limbs`` (P, K, N), its float32 ``threshold``, the spec's reset and
    schedule. Call it with input spikes, or with a Poisson source (:meth:`poisson`) for a first layer; the
    layer's state v is (B, N)."""

    limbs: torch.Tensor
    threshold: float
    reset: str
    schedule: str

    @property
    def tf32(self) -> bool:
        return self.limbs.shape[0] > 1

    def __call__(self, spikes: torch.Tensor, state: IFState) -> LayerChunk:
        """Input ``spikes`` (T, B, K) 0/1 float32 → the layer over those T steps."""
        out, v, counts = dense_if_chunk(
            spikes, self.limbs, state.v, self.threshold, self.reset, self.schedule, self.tf32
        )
        return LayerChunk(out, IFState(v), counts)

    def poisson(self, source, start: int, n_steps: int, state: IFState) -> LayerChunk:
        """Steps ``start .. start + n_steps - 1`` of a :class:`fastsim.encode.PoissonSource`, drawn in the kernel."""
        keys, thresholds, counts = source.kernel_inputs()
        out, v, out_counts = poisson_dense_if_chunk(
            keys,
            thresholds,
            counts,
            start,
            n_steps,
            self.limbs,
            state.v,
            self.threshold,
            self.reset,
            self.schedule,
            self.tf32,
        )
        source.mark_served(start + n_steps)
        return LayerChunk(out, IFState(v), out_counts)
