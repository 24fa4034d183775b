"""The event engine's tables (:mod:`fastsim.events`): the network's flat fan-out tables, read off the
layers' own torch operators.

The fan-out tables are read off the layers' own torch operators (:mod:`fastsim.layers`) by probing them with
one-hot inputs in float64, so every layer family the operators know runs here without its own code, and a
weight is exactly the operator's. A convolution or pool is probed once per (channel, kernel offset) class and
its columns placed by geometry (:func:`known_matrix`, property-tested equal to the one-hot probe). Populations
with a (C, H, W) shape are stored channels-last, so a convolution's fan-out from one neuron is kh·kw runs of
C_out consecutive neurons. Max-pool gates and skip edges get their own tables (:class:`GraphTables`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from convert.contract.spec import NetworkSpec
from fastsim import gate
from fastsim.layers import ConvOp, PoolOp
from fastsim.skips import Gain
from fastsim.stages import TAP_NODES, build_stages

#: the tap-node kinds (:data:`fastsim.stages.TAP_NODES`) the event engine runs: each has its tables and its
#: compiled step in its own module, which the kernel calls (the gate: :mod:`fastsim.gate`). A kind missing here
#: runs on the torch engines (``kernel="auto"`` picks them for a spec that holds one)
EVENT_NODES: tuple[type, ...] = (gate.MaxGate,)
PROBE_ROWS = 256  # one-hot rows per operator call while reading the fan-out tables
RUN_PAD = 16  # runs are padded to whole 16-float vectors (AVX-512; two AVX2 vectors)
_TABLES: dict[tuple[str, str], EventTables] = {}


def internal_order(shape: tuple[int, ...]) -> np.ndarray:
    """Spec (C order) index of the neuron at each internal position: channels-last for (C, H, W) shapes, the
    identity otherwise."""
    n = int(np.prod(shape))
    if len(shape) == 3:
        return np.arange(n).reshape(shape).transpose(1, 2, 0).reshape(-1)
    return np.arange(n)


@dataclass(frozen=True)
class EventTables:
    """The network as flat arrays for the kernel. Layer l (0-based, L spiking layers) has ``sizes[l]``
    neurons at ``v_off[l]`` in the flat membrane; its presynaptic population (the input for l = 0) has
    ``pre_sizes[l]`` neurons whose fan-outs start at ``ptr[ptr_off[l] + i]``: runs r of ``run_len[r]``
    consecutive postsynaptic neurons from ``run_post[r]`` with weights ``weights[run_w[r]:...]``.
    ``fanout`` (float64, internal order, offsets ``pre_off``): synapse counts of the synaptic-event sums.
    ``bias`` (internal order, offsets ``v_off``): every neuron's constant current (0 in a layer without one).
    ``spec_index[v_off[l] + j]``: the spec index of internal neuron j of layer l; ``input_spec_index``
    likewise for the input; ``input_fanout``: the input's fan-out in spec order."""

    sizes: np.ndarray
    v_off: np.ndarray
    pre_off: np.ndarray
    ptr_off: np.ndarray
    ptr: np.ndarray
    run_post: np.ndarray
    run_w: np.ndarray
    run_len: np.ndarray
    weights: np.ndarray
    thresholds: np.ndarray
    fanout: np.ndarray
    bias: np.ndarray
    spec_index: np.ndarray
    input_spec_index: np.ndarray
    input_fanout: np.ndarray
    graph: GraphTables

    @property
    def pre_sizes(self) -> np.ndarray:
        return np.diff(self.pre_off)


def _runs(columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Runs of consecutive nonzero entries of each row of ``columns`` (rows: presynaptic neurons, columns:
    postsynaptic neurons in internal order): per row, the (start, length) of its runs, and the weights."""
    nz = columns != 0
    padded = np.zeros((nz.shape[0], nz.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = nz
    edges = np.diff(padded, axis=1)
    starts_r, starts_c = np.nonzero(edges == 1)
    ends_r, ends_c = np.nonzero(edges == -1)
    assert np.array_equal(starts_r, ends_r)
    return [starts_r, starts_c, ends_c - starts_c], columns[nz]


class _WeightStore:
    """The weights of every run, each distinct (padded) run stored once: a convolution's fan-out from every
    interior position is the same kernel slice, so the CNN's 64c5 layer keeps 77 kB of weights instead of
    11 MB, and they stay in cache. Runs longer than one neuron are padded with zero weights to a multiple of
    :data:`RUN_PAD`, so that their adds run in whole vectors (adding 0 leaves a current unchanged)."""

    def __init__(self, dtype) -> None:
        self.dtype, self.chunks, self.index, self.size = dtype, [], {}, 0

    def add(self, w: np.ndarray) -> int:
        key = w.tobytes()
        if key not in self.index:
            self.index[key] = self.size
            self.chunks.append(w)
            self.size += len(w)
        return self.index[key]

    def add_runs(self, weights: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Store runs given back to back (``weights``, ``lengths``); their offsets and padded lengths."""
        ends = np.cumsum(lengths)
        offsets = np.zeros(len(lengths), dtype=np.int64)
        padded = np.where(lengths > 1, -(-lengths // RUN_PAD) * RUN_PAD, lengths).astype(np.int32)
        for r, (end, n, m) in enumerate(zip(ends.tolist(), lengths.tolist(), padded.tolist(), strict=True)):
            w = weights[end - n : end]
            offsets[r] = self.add(w if m == n else np.concatenate([w, np.zeros(m - n, dtype=self.dtype)]))
        return offsets, padded

    def array(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=self.dtype)


def _edge_table(synapse, in_shape, pre_index, post_index, np_dtype, matrix=None):
    """The fan-out runs of one synapse map (activity (R, *in_shape) → currents), presynaptic units in
    ``pre_index`` order and postsynaptic neurons in internal order. Returns the run starts, lengths and weights
    back to back, and each presynaptic unit's number of runs.

    Probed with one-hot rows in float64, unless the map is given as a sparse ``matrix`` (n_in, n_out) in spec
    order (:func:`known_matrix`)."""
    if matrix is not None:
        return _csr_runs(matrix[pre_index][:, post_index], np_dtype)
    n_pre, n_post = len(pre_index), len(post_index)
    starts, lengths, weights, counts = [], [], [], np.zeros(n_pre, dtype=np.int64)
    for lo in range(0, n_pre, PROBE_ROWS):
        hi = min(n_pre, lo + PROBE_ROWS)
        onehot = torch.zeros(hi - lo, n_pre, dtype=torch.float64)
        onehot[torch.arange(hi - lo), torch.as_tensor(pre_index[lo:hi])] = 1.0
        with torch.inference_mode():
            cols = synapse(onehot.view(hi - lo, *in_shape)).reshape(hi - lo, n_post)
        (r, start, length), w = _runs(cols.numpy()[:, post_index])  # postsynaptic neurons in internal order
        starts.append(start)
        lengths.append(length)
        weights.append(w.astype(np_dtype))
        counts[lo:hi] = np.bincount(r, minlength=hi - lo)
    return np.concatenate(starts).astype(np.int32), np.concatenate(lengths), np.concatenate(weights), counts


def known_matrix(ops, synapse, in_shape):
    """The synapse map of ``ops`` as a sparse matrix in spec order when its structure is known without one probe
    per input: a convolution or a pool (:func:`_local_columns`), or the identity times a gain (a skip edge);
    None otherwise."""
    import scipy.sparse

    if len(ops) == 1 and isinstance(ops[0], Gain):
        n = int(np.prod(in_shape))
        return scipy.sparse.identity(n, dtype=np.float64, format="csr") * float(ops[0].gain)
    geometry = local_geometry(ops)
    return None if geometry is None else _local_columns(synapse, in_shape, geometry)


def local_geometry(ops) -> tuple[int, int, int, int, int, int] | None:
    """(kh, kw, sh, sw, ph, pw) of a synapse map that is one convolution or one pool (every input unit reaches
    only the outputs whose window holds it), else None."""
    if len(ops) != 1:
        return None
    op = ops[0]
    if isinstance(op, ConvOp) and op.parts == 1:
        (sh, sw), (ph, pw) = op.stride, op.padding
        return (int(op.weight.shape[2]), int(op.weight.shape[3]), sh, sw, ph, pw)
    if isinstance(op, PoolOp):
        return (op.kernel_size, op.kernel_size, op.stride, op.stride, 0, 0)
    return None


def _local_columns(synapse, in_shape, geometry):
    """The synapse map of a local operator as a sparse (n_in, n_out) matrix in spec (C) order, from C·kh·kw
    probes: probe (c, a, b) is one at every input (c, y, x) with y ≡ a (mod kh), x ≡ b (mod kw). Two such
    inputs are at least a kernel apart, so no output window holds both: the output at (oy, ox) is the weight
    from the one input of the class inside its window, y = y0 + ((a − y0) mod kh) with y0 = oy·sh − ph (and
    likewise x), or nothing when that input lies in the padding."""
    import scipy.sparse

    kh, kw, sh, sw, ph, pw = geometry
    c, h, w = in_shape
    probe = torch.zeros(c, kh, kw, c, h, w, dtype=torch.float64)
    for a in range(kh):
        for b in range(kw):
            probe[torch.arange(c), a, b, torch.arange(c), a::kh, b::kw] = 1.0
    with torch.inference_mode():
        out = synapse(probe.view(c * kh * kw, c, h, w))
    oc, oh, ow = out.shape[1:]
    out = out.reshape(c, kh, kw, oc, oh, ow).numpy()
    y0, x0 = np.arange(oh) * sh - ph, np.arange(ow) * sw - pw
    ys = y0[None, :] + (np.arange(kh)[:, None] - y0[None, :]) % kh  # (kh, oh): the input row of class a
    xs = x0[None, :] + (np.arange(kw)[:, None] - x0[None, :]) % kw
    inside = ((ys >= 0) & (ys < h))[:, None, :, None] & ((xs >= 0) & (xs < w))[None, :, None, :]  # (kh, kw, oh, ow)
    src = (ys[:, None, :, None] * w + xs[None, :, None, :])[None] + (np.arange(c) * h * w)[:, None, None, None, None]
    src = np.broadcast_to(src[:, :, :, None], (c, kh, kw, oc, oh, ow))
    dst = np.broadcast_to(np.arange(oc * oh * ow).reshape(1, 1, 1, oc, oh, ow), out.shape)
    keep = (out != 0) & np.broadcast_to(inside[None, :, :, None], out.shape)
    return scipy.sparse.csr_matrix((out[keep], (src[keep], dst[keep])), shape=(c * h * w, oc * oh * ow))


def _csr_runs(m, np_dtype):
    """:func:`_edge_table`'s result from a sparse matrix (rows: presynaptic units, columns: postsynaptic
    neurons in internal order): the runs of consecutive columns of every row, in row order."""
    m = m.tocsr()
    m.sort_indices()
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    cols = m.indices.astype(np.int64)
    new = np.ones(len(cols), dtype=bool)
    new[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1] + 1)
    first = np.flatnonzero(new)
    lengths = np.diff(np.append(first, len(cols)))
    counts = np.bincount(rows[first], minlength=m.shape[0]).astype(np.int64)
    return cols[first].astype(np.int32), lengths, m.data.astype(np_dtype), counts


@dataclass(frozen=True)
class GraphTables:
    """The max-pool gates and skip edges of a spec that is not a chain (all arrays empty for a chain).

    ``gates``: the gates' own tables (:class:`fastsim.gate.GateTables`). The skip edges into layer l, a
    compressed list of incoming edges, are e = ``skip_ptr[l]`` … ``skip_ptr[l + 1]`` − 1, in the spec's order:
    edge e (``skip_kind[e]`` 0: from a population, 1: from a gate) leaves from source ``skip_src[e]`` (a
    population or a gate id); its runs start at ``ptr[skip_ptr_off[e] + i]`` and its fan-out counts at
    ``fanout[skip_fan_off[e] + i]`` (source units in internal order)."""

    gates: gate.GateTables
    skip_ptr: np.ndarray
    skip_kind: np.ndarray
    skip_src: np.ndarray
    skip_ptr_off: np.ndarray
    skip_fan_off: np.ndarray

    def as_tuple(self) -> tuple[np.ndarray, ...]:
        """The kernel's flat ``graph``: the gates' tables, then the skip edges'."""
        skips = tuple(getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "gates")
        return self.gates.as_tuple() + skips


def unsupported_reason(spec: NetworkSpec) -> str | None:
    """Why the event engine cannot run ``spec`` (None when it can): a tap node of a kind it has no step for."""
    nodes = [type(layer) for layer in spec.layers if type(layer) in TAP_NODES]
    kinds = sorted({kind.__name__ for kind in nodes if TAP_NODES[kind] not in EVENT_NODES})
    if not kinds:
        return None
    return f"the event engine has no step for the tap node(s) {', '.join(kinds)}; use kernel='torch'"


def _check_supported(spec: NetworkSpec) -> None:
    reason = unsupported_reason(spec)
    if reason:
        raise ValueError(f"kernel='events': {reason}")


def build_tables(spec: NetworkSpec, dtype: torch.dtype) -> EventTables:
    """:class:`EventTables` of ``spec`` with weights and thresholds in ``dtype`` (float32 or float64); a
    ValueError for a spec the event engine cannot run (:func:`unsupported_reason`)."""
    _check_supported(spec)
    # the operators and fan-outs the torch engine uses, in float64
    probe_stages = build_stages(spec, torch.device("cpu"), torch.float64, compile=False, sparse=False)
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    sizes, pre_sizes, thresholds = [], [], []
    ptr_parts, post_parts, w_off_parts, len_parts, fan_parts, index_parts = [], [], [], [], [], []
    bias_parts = []
    n_runs, n_ptr, n_fan = 0, 0, 0
    store = _WeightStore(np_dtype)

    def add_edge(synapse, in_shape, post_index, fan, ops):
        """Append one edge's runs and fan-out; returns the offsets of its ptr and fan-out entries."""
        nonlocal n_runs, n_ptr, n_fan
        pre_index = internal_order(tuple(in_shape))
        matrix = known_matrix(ops, synapse, in_shape)
        start, length, weights, counts = _edge_table(synapse, in_shape, pre_index, post_index, np_dtype, matrix)
        w_off, padded = store.add_runs(weights, length)
        ptr_parts.append(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64) + n_runs)
        post_parts.append(start)
        w_off_parts.append(w_off)
        len_parts.append(padded)
        fan_parts.append(fan.numpy()[pre_index])
        offsets = (n_ptr, n_fan)
        n_runs, n_ptr, n_fan = n_runs + len(start), n_ptr + len(pre_index) + 1, n_fan + len(pre_index)
        return offsets

    for stage in probe_stages:  # the trunk edges first: ptr_off[l] and pre_off[l] as in a chain
        post_index = internal_order(stage.shape)
        add_edge(stage.synapse, stage.in_shape, post_index, stage.fanout, stage.ops)
        index_parts.append(post_index)
        bias = np.zeros(len(post_index)) if stage.bias is None else stage.bias.numpy().reshape(-1)[post_index]
        bias_parts.append(bias.astype(np_dtype))  # float64 → dtype, as the torch engine rounds it
        sizes.append(len(post_index))
        pre_sizes.append(int(np.prod(stage.in_shape)))
        thresholds.append(float(stage.threshold))
    graph = _graph_tables(probe_stages, add_edge)
    sizes_a = np.asarray(sizes, dtype=np.int64)
    pre_a = np.asarray(pre_sizes, dtype=np.int64)
    ptr_off = np.concatenate([[0], np.cumsum(pre_a + 1)[:-1]]).astype(np.int64)
    return EventTables(
        sizes=sizes_a,
        v_off=np.concatenate([[0], np.cumsum(sizes_a)]).astype(np.int64),
        pre_off=np.concatenate([[0], np.cumsum(pre_a)]).astype(np.int64),
        ptr_off=ptr_off,
        ptr=np.concatenate(ptr_parts),
        run_post=np.concatenate(post_parts),
        run_w=np.concatenate(w_off_parts),
        run_len=np.concatenate(len_parts),
        weights=store.array(),
        thresholds=np.asarray(thresholds, dtype=np_dtype),
        fanout=np.concatenate(fan_parts).astype(np.float64),
        bias=np.concatenate(bias_parts).astype(np_dtype),
        spec_index=np.concatenate(index_parts).astype(np.int64),
        input_spec_index=internal_order(tuple(spec.input_shape)).astype(np.int64),
        input_fanout=probe_stages[0].fanout.numpy().astype(np.float64),
        graph=graph,
    )


def _graph_tables(stages, add_edge) -> GraphTables:
    """The gates and skip edges of the stages (:class:`GraphTables`); ``add_edge`` appends a skip's runs."""
    gates = gate.event_tables(stages, internal_order)
    skip_kind, skip_src, skip_ptr_off, skip_fan_off = [], [], [], []
    for stage in stages:
        for edge in stage.skips:
            kind, index = edge.tap
            skip_kind.append(0 if kind == "pop" else 1)
            skip_src.append(index if kind == "pop" else gates.source_id(edge.tap))
            p, f = add_edge(edge.current, edge.in_shape, internal_order(stage.shape), edge.fanout, (edge.op,))
            skip_ptr_off.append(p)
            skip_fan_off.append(f)
    skip_ptr = np.concatenate([[0], np.cumsum([len(s.skips) for s in stages])]).astype(np.int64)
    return GraphTables(
        gates=gates,
        skip_ptr=skip_ptr,
        skip_kind=np.asarray(skip_kind, dtype=np.int64),
        skip_src=np.asarray(skip_src, dtype=np.int64),
        skip_ptr_off=np.asarray(skip_ptr_off, dtype=np.int64),
        skip_fan_off=np.asarray(skip_fan_off, dtype=np.int64),
    )


def tables_for(spec: NetworkSpec, dtype: torch.dtype) -> EventTables:
    """:func:`build_tables`, kept for the last few specs (keyed by the spec's content): Table 2 simulates one
    spec in many parts."""
    from convert.contract.fingerprint import spec_fingerprint

    _check_supported(spec)
    key = (spec_fingerprint(spec), str(dtype))
    if key not in _TABLES:
        if len(_TABLES) >= 4:
            _TABLES.pop(next(iter(_TABLES)))
        _TABLES[key] = build_tables(spec, dtype)
    return _TABLES[key]
