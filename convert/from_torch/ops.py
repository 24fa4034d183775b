"""The chain of operations read off a traced graph, and its turning into the spec's layers.

:class:`Op` is one operation (a weight layer, a BatchNorm, a rectifier, a re-indexing, a pool, a max-pool
gate), possibly with a skip branch; :mod:`convert.from_torch.reader` reads them off the graph. Here they are
folded (each BatchNorm into the weight layer before it), ordered (a max-pool before its ReLU moved after it),
checked (a ReLU after every weight layer but the last) and built into layers (:func:`layers_of`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, Neurons, Skip, SpecError


@dataclass
class Op:
    """One operation of the chain: ``kind`` is weight, neurons (a population fed only by its skip edges), bn,
    relu, flatten, pool, maxpool or affine (the input's normalization: ``weight`` the scale and ``bias`` the
    offset per input channel); ``node`` names it."""

    kind: str
    node: str
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    kernel: int = 0
    bn: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float] | None = None  # γ, β, μ, σ², ε
    # a weight op's skip edges, in the order they are summed: (the tap node each comes from (a relu or a
    # max-pool), its branch: [] (the identity), or one weight op and its BatchNorm)
    skips: list[tuple[str, list[Op]]] = field(default_factory=list)
    taps: tuple[str, ...] = ()  # a relu or max-pool op: the graph nodes whose value it is
    lam: float | None = None  # a relu op read from a QCFS module (convert.qcfs): its threshold λ
    levels: int | None = None  # and its number of levels L
    gate: Any = None  # a maxpool op: its spec layer (convert.contract.spec.MaxPool2d: kernel, stride, padding)
    sizes: tuple[tuple[int, int], tuple[int, int]] | None = None  # an adaptive pool: (input, output) H, W
    groups: int = 1  # a convolution's groups
    shape: tuple[int, ...] | None = None  # a neurons op (a population fed only by its skip edges): its shape


def fold_batchnorm(ops: list[Op]) -> list[Op]:
    """Each BatchNorm folded into the weight layer right before it (only dropped nodes may lie between), on the
    chain and on every skip branch."""
    out: list[Op] = []
    for op in ops:
        op.skips = [(source, fold_batchnorm(branch)) for source, branch in op.skips]
        if op.kind != "bn":
            out.append(op)
            continue
        if not out or out[-1].kind != "weight":
            raise SpecError(
                f"node `{op.node}` (BatchNorm) does not follow a Linear or Conv2d directly: it cannot be "
                "folded into a weight layer; move it right after one"
            )
        layer = out[-1]
        gamma, beta, mean, var, eps = op.bn
        scale = gamma / np.sqrt(var + eps)
        if len(scale) != layer.weight.shape[0]:
            raise SpecError(
                f"node `{op.node}` normalizes {len(scale)} channels, but `{layer.node}` has "
                f"{layer.weight.shape[0]} outputs"
            )
        bias = np.zeros(len(scale)) if layer.bias is None else layer.bias
        layer.weight = layer.weight * scale.reshape(-1, *([1] * (layer.weight.ndim - 1)))
        layer.bias = (bias - mean) * scale + beta
        layer.node = f"{layer.node}+{op.node}"
    return out


def check_chain(ops: list[Op]) -> None:
    """Every weight layer but the last is followed by a rectifier, with only re-indexing in between."""
    weights = [i for i, op in enumerate(ops) if op.kind in ("weight", "neurons")]
    for i in weights[:-1]:
        j = i + 1
        while j < len(ops) and ops[j].kind == "flatten":
            j += 1
        if j < len(ops) and ops[j].kind == "relu":
            continue
        found = f"`{ops[j].node}` ({ops[j].kind})" if j < len(ops) else "the end of the model"
        raise SpecError(
            f"node `{ops[i].node}` is not followed by a ReLU (found {found} first): the spiking network rectifies "
            "after every weight layer but the last, so it would not compute this model; add a ReLU right after it"
        )


def gates_after_relus(ops: list[Op]) -> list[Op]:
    """A max-pool right before a ReLU moved after it: max and ReLU commute, and the spike gate reads spikes."""
    out = list(ops)
    for i in range(len(out) - 1):
        if out[i].kind == "maxpool" and out[i + 1].kind == "relu":  # the relu's value is the gate's output
            pool, relu = out[i], out[i + 1]  # a QCFS is monotone too: max(QCFS(z)) = QCFS(max(z))
            out[i] = Op("relu", pool.node, lam=relu.lam, levels=relu.levels)
            out[i + 1] = Op("maxpool", relu.node, gate=pool.gate)
    return out


def check_qcfs(ops: list[Op]) -> None:
    """Every QCFS rectifies a weight layer: it follows a Linear/Conv2d (its BatchNorm folded, a max-pool moved
    after it) with only re-indexing in between. A QCFS on the input, after a pool or after another rectifier
    would quantize something no spiking population computes: a :class:`SpecError` naming the node."""
    for i, op in enumerate(ops):
        if op.kind != "relu" or op.lam is None:
            continue
        j = i - 1
        while j >= 0 and ops[j].kind == "flatten":
            j -= 1
        if j >= 0 and ops[j].kind == "weight":
            continue
        kind = "QCFS" if j >= 0 and ops[j].lam is not None else ops[j].kind if j >= 0 else ""
        found = f"`{ops[j].node}` ({kind})" if j >= 0 else "the input"
        raise SpecError(
            f"node `{op.node}` (QCFS) does not follow a Linear or Conv2d (it follows {found}): a QCFS is the "
            "rectifier of a weight layer, whose spiking neurons fire at its threshold λ; put it right after one"
        )


def qcfs_scales(ops: list[Op]) -> list[tuple[float, int] | None]:
    """Per spiking layer of :func:`layers_of` (a weight layer or a pool), the (λ, L) of the QCFS that rectifies
    it, or None (a ReLU, the output layer, a pool). The chain must have passed :func:`check_qcfs`."""
    scales: list[tuple[float, int] | None] = []
    for op in ops:
        if op.kind in ("weight", "neurons", "pool"):
            scales.append(None)
        elif op.kind == "relu" and op.lam is not None:
            scales[-1] = (op.lam, op.levels)
    return scales


def _skips(op: Op, taps: dict[str, int], target: int) -> list[Skip]:
    """The skip edges into a weight op's layer (index ``target``), each branch's bias folded into the op's."""
    out = []
    for source, branch in op.skips:
        if len(branch) > 1:
            raise SpecError(f"node `{op.node}`: its skip branch holds {len(branch)} layers; at most one is supported")
        if not branch:  # the identity
            out.append(Skip(taps[source], target, np.array(1.0)))
            continue
        edge = branch[0]
        weight, conv = edge.weight, {"stride": edge.stride, "padding": edge.padding} if edge.weight.ndim == 4 else {}
        if edge.groups > 1:  # a depthwise 1×1 convolution: a gain per channel (convert/from_torch/dense_cats.py)
            plain = (edge.stride, edge.padding) == ((1, 1), (0, 0))
            if weight.shape[1:] != (1, 1, 1) or edge.groups != weight.shape[0] or not plain:
                raise SpecError(f"node `{op.node}`: a grouped convolution on a skip branch; only a depthwise 1×1 is")
            weight, conv = weight.reshape(-1), {}
        out.append(Skip(taps[source], target, weight, **conv))
        if edge.bias is not None:  # the node gets every edge's constant current
            op.bias = edge.bias if op.bias is None else op.bias + edge.bias
    return out


def layers_of(ops: list[Op]) -> tuple[list[Any], list[Skip]]:
    """The spec's layers of a folded, ordered and checked chain of operations, and its skip edges; a flatten
    after the last spiking layer (a pooled classifier's ``(N, C, 1, 1) -> (N, C)``) is dropped."""
    layers: list[Any] = []
    skips: list[Skip] = []
    taps: dict[str, int] = {}  # a relu or max-pool node -> the index of the layer whose output it is
    for op in ops:
        if op.kind == "weight":
            skips += _skips(op, taps, len(layers))
            if op.weight.ndim == 2:
                layers.append(Dense(op.weight, bias=op.bias))
            else:
                conv = {"stride": op.stride, "padding": op.padding, "groups": op.groups}
                layers.append(Conv2d(op.weight, bias=op.bias, **conv))
        elif op.kind == "neurons":
            skips += _skips(op, taps, len(layers))
            layers.append(Neurons(op.shape, bias=op.bias))
        elif op.kind == "pool":
            layers.append(AvgPool2d(op.kernel, stride=op.stride[0]))
        elif op.kind == "flatten":
            layers.append(Flatten())
        elif op.kind == "maxpool":
            layers.append(op.gate)
            taps[op.node] = len(layers) - 1
        elif op.kind == "relu":
            taps[op.node] = len(layers) - 1
    while len(layers) > 1 and isinstance(layers[-1], Flatten):  # (C, 1, 1) -> (C,) after the output layer:
        layers.pop()  # the same neurons in the same order, so the same class labels
    return layers, skips


def input_affine(mean: Any, std: Any) -> Op:
    """The input normalization ``(x - mean) / std`` (one number, or one per input channel) as an affine op,
    x ↦ x/std − mean/std: the ``normalize_input`` option of :func:`convert.from_torch.from_torch`."""
    m, s = np.atleast_1d(np.asarray(mean, dtype=np.float64)), np.atleast_1d(np.asarray(std, dtype=np.float64))
    if m.ndim != 1 or s.ndim != 1 or not np.all(np.isfinite(m)) or not np.all(np.isfinite(s)) or np.any(s == 0):
        raise SpecError(
            f"normalize_input=(mean, std) must be finite numbers (one, or one per input channel) with std != 0, "
            f"got mean={mean!r}, std={std!r}"
        )
    m, s = np.broadcast_arrays(m, s)
    return Op("affine", "normalize_input", weight=1.0 / s, bias=-m / s)


def fold_input(ops: list[Op], input_shape: tuple[int, ...], given: Op | None = None) -> list[Op]:
    """The input's affine normalization (``given``, then the model's own first ops) folded into the first weight
    layer, which then reads the raw input: with x ↦ a_c·x + o_c per input channel c,

        W'[:, c] = W[:, c]·a_c,    b' = b + Σ_c W[:, c]·o_c   (summed over the kernel's positions),

    exact for a Linear (through a Flatten: column j reads channel j // (H·W)) and for a Conv2d without padding.
    A padded Conv2d with an offset is refused: its zero padding is 0 of the normalized input, a raw value of
    −o_c/a_c, which no fixed weights reproduce at the border."""
    affines = ([given] if given is not None else []) + [op for op in ops if op.kind == "affine"]
    rest = [op for op in ops if op.kind != "affine"]
    if not affines:
        return ops
    channels = input_shape[0] if len(input_shape) == 3 else 1
    a, o = np.ones(channels), np.zeros(channels)
    for op in affines:  # compose: first the given normalization, then the model's own steps
        if op.weight.size not in (1, channels) or op.bias.size not in (1, channels):
            raise SpecError(
                f"node `{op.node}` normalizes {op.weight.size} input channels, but the input has {channels} "
                f"(input_shape {tuple(input_shape)})"
            )
        w, b = np.broadcast_to(op.weight, (channels,)), np.broadcast_to(op.bias, (channels,))
        a, o = a * w, o * w + b
    i = next((k for k, op in enumerate(rest) if op.kind not in ("flatten",)), None)
    if i is None or rest[i].kind != "weight":
        found = "nothing" if i is None else f"`{rest[i].node}` ({rest[i].kind})"
        raise SpecError(
            f"the input normalization (node `{affines[-1].node}`) can be folded only into a first Linear or "
            f"Conv2d, but {found} reads the input first"
        )
    first = rest[i]
    w = first.weight
    bias = np.zeros(w.shape[0]) if first.bias is None else first.bias
    if w.ndim == 4:
        if first.padding != (0, 0) and np.any(o != 0):
            raise SpecError(
                f"node `{first.node}` pads the normalized input with zeros, which the raw input cannot give: the "
                f"input normalization (node `{affines[-1].node}`) cannot be folded into it exactly; train without "
                "the normalization's offset, or without padding in the first layer"
            )
        oc, icg = w.shape[:2]  # W[o, i] reads input channel chan[o, i] (its group's i-th; all of them for g = 1)
        chan = (np.arange(oc) // (oc // first.groups))[:, None] * icg + np.arange(icg)[None, :]
        scaled = w * a[chan][:, :, None, None]
        bias = bias + (w * o[chan][:, :, None, None]).sum(axis=(1, 2, 3))
    else:
        per = w.shape[1] // channels  # the columns of one channel, in C order
        scaled = w * np.repeat(a, per)[None, :]
        bias = bias + w @ np.repeat(o, per)
    rest[i] = dataclasses.replace(first, weight=scaled, bias=bias)
    return rest


def adaptive_matrix(size_in: tuple[int, int], size_out: tuple[int, int]) -> np.ndarray:
    """The (out_h·out_w, in_h·in_w) matrix of ``F.adaptive_avg_pool2d`` on one channel: output (i, j) averages
    rows ⌊i·H/h⌋ … ⌈(i+1)·H/h⌉ − 1 and the columns alike (PyTorch's windows)."""
    (hi, wi), (ho, wo) = size_in, size_out

    def windows(n_in: int, n_out: int) -> np.ndarray:
        m = np.zeros((n_out, n_in))
        for i in range(n_out):
            a, b = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
            m[i, a:b] = 1.0 / (b - a)
        return m

    return np.kron(windows(hi, ho), windows(wi, wo))


def fold_adaptive(ops: list[Op]) -> list[Op]:
    """Each adaptive average pool whose windows are not equal squares (``kind`` adaptive, ``sizes`` its input
    and output sizes) folded into the Linear after it (only a Flatten between): a linear map
    followed by another is one, W' = W · (I_C ⊗ P) with P :func:`adaptive_matrix`; VGG's 1×1 → 7×7 becomes a
    Linear on the 512 channels, each column the sum of its 49 copies. Anything else after it is refused."""
    out = list(ops)
    i = 0
    while i < len(out):
        op = out[i]
        if op.kind != "adaptive":
            i += 1
            continue
        j = i + 1
        while j < len(out) and out[j].kind == "flatten":
            j += 1
        if j >= len(out) or out[j].kind != "weight" or out[j].weight.ndim != 2 or j == i + 1:
            found = f"`{out[j].node}` ({out[j].kind})" if j < len(out) else "the end of the model"
            (hi, wi), (ho, wo) = op.sizes
            raise SpecError(
                f"node `{op.node}` (AdaptiveAvgPool2d) pools {hi}x{wi} to {ho}x{wo} in unequal windows: such a "
                f"pool is folded into the Linear that reads it through a Flatten, but {found} follows it"
            )
        dense = out[j]
        pool = adaptive_matrix(*op.sizes)
        n_out, n_in = pool.shape
        channels = dense.weight.shape[1] // n_out
        w = dense.weight.reshape(dense.weight.shape[0], channels, n_out) @ pool  # (rows, C, n_in)
        out[j] = dataclasses.replace(dense, weight=w.reshape(dense.weight.shape[0], channels * n_in))
        del out[i]
    return out
