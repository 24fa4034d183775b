"""The numba kernel of the event-driven engine (:mod:`fastsim.events` documents the method and the tables).

Compiled on first import (cached on disk by numba). IEEE arithmetic throughout (no fastmath): each
current is summed in the order of the spikes, then added to v once, as the layer step of
:func:`fastsim.step.if_update` says.
"""

from __future__ import annotations

import numba as nb
import numpy as np

POISSON, CURRENT, GIVEN = 0, 1, 2  # the input modes

_M = np.uint64(0xFFFFFFFF)
_C1 = np.uint64(0x7FEB352D)
_C2 = np.uint64(0x846CA68B)


@nb.njit(inline="always")
def _mix32(x):
    """lowbias32 of :func:`convert.encoding.mix32`, on uint64 values below 2^32."""
    x = x ^ (x >> np.uint64(16))
    x = (x * _C1) & _M
    x = x ^ (x >> np.uint64(15))
    x = (x * _C2) & _M
    return x ^ (x >> np.uint64(16))


@nb.njit(inline="always")
def _scatter(pre, n_pre, ptr, p_off, run_post, run_w, run_len, weights, cur, base):
    """cur[base + ...] += the fan-out weights of presynaptic neurons pre[:n_pre]."""
    for s in range(n_pre):
        i = pre[s]
        for r in range(ptr[p_off + i], ptr[p_off + i + 1]):
            dst = base + run_post[r]
            w0 = run_w[r]
            ln = run_len[r]
            out = cur[dst : dst + ln]
            w = weights[w0 : w0 + ln]
            for q in range(ln):
                out[q] += w[q]


@nb.njit(inline="always")
def _update(v, cur, fired, th, delay, zero):
    """The layer step of every neuron, branch-free so that it vectorizes: u = v + I; c = v (delay) or u;
    s = [c ≥ θ]; v' = reset(u, s); I ← 0; fired ← s. Returns the number of spikes."""
    m = 0
    n = v.shape[0]
    if delay:
        if zero:
            for j in range(n):
                vj = v[j]
                u = vj + cur[j]
                s = vj >= th
                v[j] = (u - u) if s else u
                cur[j] = 0
                fired[j] = s
                m += s
        else:
            for j in range(n):
                vj = v[j]
                u = vj + cur[j]
                s = vj >= th
                v[j] = (u - th) if s else u
                cur[j] = 0
                fired[j] = s
                m += s
    else:
        if zero:
            for j in range(n):
                u = v[j] + cur[j]
                s = u >= th
                v[j] = (u - u) if s else u
                cur[j] = 0
                fired[j] = s
                m += s
        else:
            for j in range(n):
                u = v[j] + cur[j]
                s = u >= th
                v[j] = (u - th) if s else u
                cur[j] = 0
                fired[j] = s
                m += s
    return m


@nb.njit(inline="always")
def _collect(fired, n, out):
    """The indices j < n with fired[j] (fired zero-padded to a multiple of 8 bytes) into out, in order."""
    words = fired.view(np.uint64)
    m = 0
    for w in range((n + 7) // 8):
        if words[w] != 0:
            for j in range(8 * w, min(8 * w + 8, n)):
                if fired[j]:
                    out[m] = j
                    m += 1


@nb.njit(parallel=True, cache=True, nogil=True)
def run_images(
    mode,
    keys,
    thr,
    xw,
    given,
    pixel_ids,
    steps,
    checkpoints,
    sizes,
    v_off,
    pre_sizes,
    pre_off,
    ptr_off,
    ptr,
    run_post,
    run_w,
    run_len,
    weights,
    thresholds,
    fanout,
    delay,
    zero,
    output_counts,
    layer_counts,
    first,
    synops_curve,
    potential,
    neurons,
):
    n = keys.shape[0]
    current = mode == CURRENT
    L = sizes.shape[0]
    total = v_off[L]
    n_in = pre_sizes[0]
    K = checkpoints.shape[0]
    record = neurons.shape[1] > 0
    membrane = potential.shape[1] > 0
    out_off = v_off[L - 1]
    C = sizes[L - 1]
    max_size = sizes.max()
    for b in nb.prange(n):
        v = np.zeros(total, weights.dtype)
        cur = np.zeros(total, weights.dtype)
        spk = np.zeros(total, np.int32)
        nsp = np.zeros(L, np.int64)
        inp = np.zeros(n_in, np.int32)
        syn = np.zeros(L, np.float64)
        running = np.zeros(C, np.int64)
        n_cand = 0
        cand = np.zeros(n_in, np.int32)
        fired = np.zeros(max_size + 8, np.uint8)
        for i in range(n_in):
            if thr[b, i] > 0:
                cand[n_cand] = i
                n_cand += 1
        ic = np.zeros(sizes[0], weights.dtype)
        if current:  # the constant first-layer current W·x
            for i in range(n_in):
                xi = xw[b, i]
                if xi != 0:
                    for r in range(ptr[ptr_off[0] + i], ptr[ptr_off[0] + i + 1]):
                        dst = run_post[r]
                        w0 = run_w[r]
                        for q in range(run_len[r]):
                            ic[dst + q] += xi * weights[w0 + q]
        key = np.uint64(keys[b])
        k = 0
        for t in range(steps):
            n0 = 0
            if mode == GIVEN:
                for i in range(n_in):
                    if given[b, t, i]:
                        inp[n0] = i
                        n0 += 1
                        syn[0] += fanout[i]
            elif mode == POISSON:
                sk = _mix32((key + np.uint64(t)) & _M)
                for c in range(n_cand):
                    i = cand[c]
                    h = _mix32((sk + pixel_ids[i]) & _M)
                    if h < thr[b, i]:
                        inp[n0] = i
                        n0 += 1
                        syn[0] += fanout[i]
            for layer in range(L):
                base = v_off[layer]
                size = sizes[layer]
                if layer == 0:
                    if current:
                        for j in range(size):
                            cur[j] = ic[j]
                    else:
                        _scatter(inp, n0, ptr, ptr_off[0], run_post, run_w, run_len, weights, cur, base)
                else:
                    pb = v_off[layer - 1]
                    _scatter(spk[pb:], nsp[layer - 1], ptr, ptr_off[layer], run_post, run_w, run_len, weights, cur, base)
                th = thresholds[layer]
                m = _update(v[base : base + size], cur[base : base + size], fired[: size], th, delay, zero)
                if m > 0:
                    _collect(fired, size, spk[base:])
                nsp[layer] = m
                layer_counts[b, layer] += m
                if record:
                    for q in range(m):
                        neurons[b, base + spk[base + q]] += 1
                if layer + 1 < L:
                    fo = pre_off[layer + 1]
                    for q in range(m):
                        syn[layer + 1] += fanout[fo + spk[base + q]]
                else:
                    for q in range(m):
                        running[spk[base + q]] += 1
                    if m > 0 and first[b] < 0:
                        first[b] = t
            while k < K and checkpoints[k] == t + 1:
                for j in range(C):
                    output_counts[b, k, j] = running[j]
                for layer in range(L):
                    synops_curve[b, k, layer] = syn[layer]
                if membrane:
                    for j in range(C):
                        potential[b, k, j] = v[out_off + j]
                k += 1
