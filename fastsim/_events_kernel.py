"""The numba kernel of the event-driven engine (:mod:`fastsim.events` documents the method and the tables).

Compiled on first use and cached on disk by numba, in ``$NUMBA_CACHE_DIR`` if the user set it, else in
``cache/numba/`` under the results folder (``$SNN_RUNS`` or ``runs/``: :func:`convert.contract.paths.numba_cache_dir`),
not in ``fastsim/__pycache__``. The helpers are plain numba functions, which LLVM inlines
(numba's own IR inlining, ``inline="always"``, dropped a conditional store of a prange body here). IEEE
arithmetic throughout (no fastmath): each current is summed in the order of the spikes, then added to v
once, as the layer step of :func:`fastsim.step.if_update` says.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import intrinsic

from fastsim import gate
from fastsim._numba import nb  # numba with its cache folder set (before any @njit below)
from fastsim.gate import N_TABLES

POISSON, CURRENT, GIVEN = 0, 1, 2  # the input modes
# steps whose first-layer current is built at once (_input_chunk): the chunk of currents (CHUNK × the first
# layer, 150 kB for the MLP's 1 200 neurons in float32) stays in the core's L2 cache
CHUNK = 32

_M = np.uint64(0xFFFFFFFF)
_C1 = np.uint64(0x7FEB352D)
_C2 = np.uint64(0x846CA68B)


@intrinsic
def _read_flag(typingctx, flag):
    """``flag[0]`` (a uint8 array another thread may set) as an atomic load, made afresh at every call: a
    plain read of memory that the loop never writes would be hoisted out of the loop by LLVM."""
    if not (isinstance(flag, types.Array) and flag.dtype == types.uint8):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.load_atomic(data, "monotonic", 1)

    return types.uint8(flag), codegen


@nb.njit(cache=True)
def _mix32(x):
    """lowbias32 of :func:`convert.encoding.mix32`, on uint64 values below 2^32."""
    x = x ^ (x >> np.uint64(16))
    x = (x * _C1) & _M
    x = x ^ (x >> np.uint64(15))
    x = (x * _C2) & _M
    return x ^ (x >> np.uint64(16))


@nb.njit(cache=True)
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


@nb.njit(cache=True)
def _update(v, cur, sk, b, fired, th, delay, zero, biased, skipped):
    """The layer step of every neuron, branch-free so that it vectorizes (``delay``, ``zero``, ``biased`` and
    ``skipped`` are the same for every neuron; LLVM takes them out of the loop): I = (W·s + S·s_j) + b (the
    trunk's sum in ``cur``, the skip edge's in ``sk``); u = v + I; c = v (delay) or u; s = [c ≥ θ];
    v' = reset(u, s); I ← 0; fired ← s. Returns the number of spikes. A layer without a bias (``biased``
    False) or a skip edge skips their adds and loads."""
    m = 0
    for j in range(v.shape[0]):
        vj = v[j]
        i = (cur[j] + sk[j]) if skipped else cur[j]
        u = vj + ((i + b[j]) if biased else i)
        s = (vj if delay else u) >= th
        v[j] = ((u - u) if zero else (u - th)) if s else u
        cur[j] = 0
        if skipped:
            sk[j] = 0
        fired[j] = s
        m += s
    return m


@nb.njit(cache=True)
def _fold_skip(cur, sk):
    """cur ← cur + sk, sk ← 0: one skip edge's sum added to the layer's sum so far, before the next edge's."""
    for j in range(cur.shape[0]):
        cur[j] = cur[j] + sk[j]
        sk[j] = 0


@nb.njit(cache=True)
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


@nb.njit(cache=True)
def _constant_current(xw_b, net, ic):
    """ic = W_1 · x, the first layer's current from the analog input x (``current`` encoding)."""
    sizes, v_off, pre_off, ptr_off, ptr, run_post, run_w, run_len, weights, thresholds, fanout, bias = net
    for i in range(xw_b.shape[0]):
        xi = xw_b[i]
        if xi != 0:
            for r in range(ptr[ptr_off[0] + i], ptr[ptr_off[0] + i + 1]):
                out = ic[run_post[r] : run_post[r] + run_len[r]]
                w = weights[run_w[r] : run_w[r] + run_len[r]]
                for q in range(run_len[r]):
                    out[q] += xi * w[q]


@nb.njit(cache=True)
def _spike_steps(mode, t0, tn, i, key_steps, thr_b, given_b, pixel_id, times):
    """The steps t0 + tt (tt < tn) in which input pixel i spikes, as tt into ``times``; returns their number."""
    nt = 0
    if mode == GIVEN:
        for tt in range(tn):
            if given_b[t0 + tt, i]:
                times[nt] = tt
                nt += 1
    else:
        th = thr_b[i]
        for tt in range(tn):
            if _mix32((key_steps[tt] + pixel_id) & _M) < th:
                times[nt] = tt
                nt += 1
    return nt


@nb.njit(cache=True)
def _input_chunk(mode, t0, tn, key, cand, n_cand, thr_b, given_b, pixel_ids, net, buf, syn0, key_steps, times):
    """The first layer's current of the steps t0..t0+tn-1 into buf[tt] (zeroed first), and each step's input
    events into syn0[tt]: pixel by pixel, the fan-out runs of a pixel added into every step it spikes in.

    A pixel's weights stay in the core's cache across the chunk (instead of one read of every spiking pixel's
    weights per step), and for each step the spikes are still added in pixel order, then run order: the order
    of the per-step scatter, so every current is bit for bit the same sum."""
    sizes, v_off, pre_off, ptr_off, ptr, run_post, run_w, run_len, weights, thresholds, fanout, bias = net
    buf[:tn] = 0
    syn0[:tn] = 0
    if mode == POISSON:
        for tt in range(tn):
            key_steps[tt] = _mix32((key + np.uint64(t0 + tt)) & _M)
    for c in range(n_cand):
        i = cand[c]
        nt = _spike_steps(mode, t0, tn, i, key_steps, thr_b, given_b, pixel_ids[i], times)
        if nt == 0:
            continue
        f = fanout[i]
        for k in range(nt):
            syn0[times[k]] += f
        for r in range(ptr[ptr_off[0] + i], ptr[ptr_off[0] + i + 1]):
            dst = run_post[r]
            ln = run_len[r]
            w = weights[run_w[r] : run_w[r] + ln]
            for k in range(nt):
                out = buf[times[k], dst : dst + ln]
                for q in range(ln):
                    out[q] += w[q]


@nb.njit(cache=True)
def _events(pre, n_pre, fanout, off):
    """The synaptic events that presynaptic units pre[:n_pre] send through an edge: Σ fanout[off + i]."""
    e = 0.0
    for s in range(n_pre):
        e += fanout[off + pre[s]]
    return e


@nb.njit(cache=True)
def _layer(layer, t, net, graph, v, cur, sk, fired, spk, nsp, gate_state, syn, delay, zero, biased):
    """Layer ``layer``'s step t: its currents from the spikes below (already in cur for the first layer; through
    its max-pool gate if it has one, :func:`fastsim.gate.event_step`) and from its skip edges' sources, the
    events they carry into syn[layer], the update, and the list of the neurons that fired (spk at the layer's
    offset, nsp[layer] of them)."""
    sizes, v_off, pre_off, ptr_off, ptr, run_post, run_w, run_len, weights, thresholds, fanout, bias = net
    skip_ptr, skip_kind, skip_src, skip_ptr_off, skip_fan_off = graph[N_TABLES:]
    base, size = v_off[layer], sizes[layer]
    if layer > 0:
        g = gate.gate_into(graph, layer)
        if g >= 0:
            pre, n_pre = gate.event_step(g, t, v_off, graph, spk, nsp, gate_state)
        else:
            pre, n_pre = spk[v_off[layer - 1] :], nsp[layer - 1]
        _scatter(pre, n_pre, ptr, ptr_off[layer], run_post, run_w, run_len, weights, cur, base)
        syn[layer] += _events(pre, n_pre, fanout, pre_off[layer])
    first, last = skip_ptr[layer], skip_ptr[layer + 1]
    skipped = last > first
    for e in range(first, last):  # the skip edges in order: I = ((W·s + S·s_j) + S'·s_k …) + b
        if e > first:  # the previous edge's sum joins the trunk's before this edge's is summed
            _fold_skip(cur[base : base + size], sk[base : base + size])
        src = skip_src[e]
        if skip_kind[e] == 0:
            pre, n_pre = spk[v_off[src] :], nsp[src]
        else:
            pre, n_pre = gate.event_output(src, graph, gate_state)
        _scatter(pre, n_pre, ptr, skip_ptr_off[e], run_post, run_w, run_len, weights, sk, base)
        syn[layer] += _events(pre, n_pre, fanout, skip_fan_off[e])
    m = _update(
        v[base : base + size],
        cur[base : base + size],
        sk[base : base + size],
        bias[base : base + size],
        fired[:size],
        thresholds[layer],
        delay,
        zero,
        biased[layer],
        skipped,
    )
    if m > 0:
        _collect(fired, size, spk[base:])
    nsp[layer] = m
    return m


@nb.njit(cache=True)
def _candidates(mode, thr_b, n_in, cand):
    """The input pixels that can spike into cand (Poisson: those with p > 0; given spikes: every pixel);
    returns their number."""
    n = 0
    for i in range(n_in):
        if mode != POISSON or thr_b[i] > 0:
            cand[n] = i
            n += 1
    return n


@nb.njit(cache=True)
def _record(b, layer, fired, net, out, running):
    """Image b's records of the neurons ``fired`` of ``layer`` in this step: counts, and (output layer) the
    running output counts. (The synaptic events are counted by the layers they reach, in :func:`_layer`.)"""
    sizes, v_off = net[0], net[1]
    output_counts, layer_counts, first, synops_curve, potential, neurons = out
    layer_counts[b, layer] += fired.shape[0]
    if neurons.shape[1] > 0:
        for j in fired:
            neurons[b, v_off[layer] + j] += 1
    if layer + 1 == sizes.shape[0]:
        for j in fired:
            running[j] += 1


@nb.njit(cache=True)
def _biased_layers(v_off, bias):
    """Per layer, whether any of its neurons has a bias (the others skip its add)."""
    biased = np.zeros(v_off.shape[0] - 1, np.bool_)
    for layer in range(v_off.shape[0] - 1):
        for j in range(v_off[layer], v_off[layer + 1]):
            if bias[j] != 0:
                biased[layer] = True
    return biased


@nb.njit(cache=True)
def _start_potentials(v, v_start):
    """Every neuron's membrane at the start of an image: neuron i's at ``v_start[i]``."""
    for i in range(v_start.shape[0]):
        v[i] = v_start[i]


@nb.njit(cache=True)
def _longest_run(run_len):
    """The longest run of the tables (0 for a network without synapses: ``run_len.max()`` of no runs fails)."""
    pad = 0
    for r in range(run_len.shape[0]):
        pad = max(pad, run_len[r])
    return pad


@nb.njit(parallel=True, cache=True, nogil=True)
def run_images(mode, keys, thr, xw, given, pixel_ids, steps, checkpoints, net, v_start, graph, delay, zero, out, stop):
    """Simulate every image (in parallel) for ``steps`` steps; ``net``, ``graph`` and ``out`` are the tuples
    that :func:`fastsim.events.run_batch` builds (the network's flat tables, its gates and skip edges
    (:class:`fastsim.events.GraphTables`); the recorded arrays); ``v_start[i]``: neuron i's membrane at the
    start of every image (v_init · θ_l, or its own fraction · θ_l, in the simulation dtype). ``stop[0] != 0``,
    set by another thread, ends every image at its next chunk of ``CHUNK`` steps (what was recorded is then
    incomplete)."""
    sizes, v_off, pre_off, ptr_off, ptr, run_post, run_w, run_len, weights, thresholds, fanout, bias = net
    output_counts, layer_counts, first, synops_curve, potential, neurons = out
    L = sizes.shape[0]
    n_in = pre_off[1]
    out_off, C = v_off[L - 1], sizes[L - 1]
    biased = _biased_layers(v_off, bias)
    pad = _longest_run(run_len)
    for b in nb.prange(keys.shape[0]):
        v = np.zeros(v_off[L], weights.dtype)
        _start_potentials(v, v_start)
        cur = np.zeros(v_off[L] + pad, weights.dtype)  # padded runs may add zeros past the end
        sk = np.zeros(v_off[L] + pad, weights.dtype)  # the skip edges' currents
        gate_state = gate.event_state(graph, v_off[L])
        spk = np.zeros(v_off[L], np.int32)
        nsp = np.zeros(L, np.int64)
        syn = np.zeros(L, np.float64)
        running = np.zeros(C, np.int64)
        fired = np.zeros(8 * (sizes.max() // 8 + 1), np.uint8)  # whole uint64 words
        cand = np.zeros(n_in, np.int32)  # the pixels that can spike (p > 0)
        thr_b = thr[b] if mode == POISSON else thr[0]
        n_cand = _candidates(mode, thr_b, n_in, cand)
        buf = np.zeros((CHUNK, sizes[0] + pad), weights.dtype)  # the first layer's current per step
        syn0 = np.zeros(CHUNK, np.float64)
        key_steps = np.zeros(CHUNK, np.uint64)
        times = np.zeros(CHUNK, np.int64)
        ic = np.zeros(sizes[0], weights.dtype)
        if mode == CURRENT:
            _constant_current(xw[b], net, ic)
        given_b = given[b] if mode == GIVEN else given[0]
        key = np.uint64(keys[b])
        k = 0
        for t in range(steps):
            if t % CHUNK == 0 and _read_flag(stop) != 0:  # asked to stop (Ctrl-C): a load per CHUNK steps
                break
            if mode == CURRENT:
                cur[: sizes[0]] = ic
            else:
                tt = t % CHUNK
                if tt == 0:
                    tn = min(CHUNK, steps - t)
                    _input_chunk(
                        mode, t, tn, key, cand, n_cand, thr_b, given_b, pixel_ids, net, buf, syn0, key_steps, times
                    )
                cur[: sizes[0]] = buf[tt, : sizes[0]]
                syn[0] += syn0[tt]
            for layer in range(L):
                m = _layer(layer, t, net, graph, v, cur, sk, fired, spk, nsp, gate_state, syn, delay, zero, biased)
                _record(b, layer, spk[v_off[layer] : v_off[layer] + m], net, out, running)
            if nsp[L - 1] > 0 and first[b] < 0:  # the first output spike
                first[b] = t
            while k < checkpoints.shape[0] and checkpoints[k] == t + 1:  # the checkpoints this step ends
                output_counts[b, k] = running
                synops_curve[b, k] = syn
                if potential.shape[1] > 0:
                    for j in range(C):
                        potential[b, k, j] = v[out_off + j]
                k += 1
