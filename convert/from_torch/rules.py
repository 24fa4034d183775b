"""What each kind of layer reads from a torch.fx graph: one rule per kind, registered with the torch modules,
functions, tensor methods and ATen ops it reads.

A rule turns one graph node into one :class:`~convert.from_torch.ops.Op` of the reader's chain (or none: a
flatten of what is already flat): ``read(reader, node, args)``, where ``args`` are the node's arguments by name
(for a ``call_module`` node, the module's own attributes under the functional call's names, so one rule serves
``nn.Conv2d``, ``F.conv2d`` and ``aten.conv2d``). A parameter is a tensor (a module's) or a ``get_attr`` node (a
functional call's); :meth:`reader.param` reads either. ``on_branch``: the kind may also sit on a skip branch
(a weight layer and its BatchNorm); every other kind runs only on the chain.

Adding a kind of layer to ``from_torch`` is one :func:`rule` here (its family is in :mod:`convert.layers`, its
engines' cases in tests/conformance). What is not a layer (dropped nodes, the softmax head, residual sums,
concatenations, the input's normalization) stays with the reader, which walks the graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from convert.contract.spec import SpecError
from convert.from_torch.ops import Op, fold_batchnorm
from convert.from_torch.refusals import (
    EVAL_FIRST,
    NO_RUNNING_STATS,
    TRAIN_MODE,
    Fatal,
    int_pair,
    node_shape,
    refuse,
    target_name,
)
from convert.qcfs import QCFS

# call_function targets: the functional API of a traced forward(), and (by name) the ATen ops of an exported one
RELUS = {F.relu, torch.relu, torch.relu_, getattr(F, "relu_", F.relu), "relu.default", "relu_.default"}
FLATTENS = {torch.flatten, "view.default", "reshape.default", "flatten.using_ints", "_unsafe_view.default"}
MAXPOOLS = {F.max_pool2d, "max_pool2d.default", "max_pool2d_with_indices.default"}
_CONV = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_POOL = ("input", "kernel_size", "stride", "padding", "ceil_mode")
_MAXPOOL = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode")
_BN = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
_BN_ATEN = ("input", "weight", "bias", "running_mean", "running_var", *_BN[5:])


@dataclass(frozen=True)
class Rule:
    """One kind's reading of a graph node (module docstring)."""

    name: str
    read: Callable[[Any, fx.Node, dict[str, Any]], Op | None]
    on_branch: bool = False


#: module type -> (rule, the module's attributes as the call's arguments)
MODULES: dict[type, tuple[Rule, Callable[[nn.Module], dict[str, Any]]]] = {}
#: function or ATen op name -> (rule, the call's argument names in order)
CALLS: dict[Any, tuple[Rule, tuple[str, ...]]] = {}
#: tensor method name -> (rule, the method's argument names, ``self`` first)
METHODS: dict[str, tuple[Rule, tuple[str, ...]]] = {}


def rule(
    name: str,
    *,
    modules: dict[type, Callable[[nn.Module], dict[str, Any]]] | None = None,
    calls: dict[Any, tuple[str, ...]] | None = None,
    methods: dict[str, tuple[str, ...]] | None = None,
    on_branch: bool = False,
) -> Callable:
    """Register the decorated ``read(reader, node, args)`` as the rule ``name`` for these modules, calls and
    methods."""

    def register(read: Callable) -> Callable:
        r = Rule(name, read, on_branch)
        for kind, attributes in (modules or {}).items():
            MODULES[kind] = (r, attributes)
        for target, names in (calls or {}).items():
            CALLS[target] = (r, names)
        for method, names in (methods or {}).items():
            METHODS[method] = (r, names)
        return read

    return register


def for_module(m: nn.Module) -> tuple[Rule, dict[str, Any]] | None:
    """The rule of a module (its own type's, else a base class's) and its arguments, or None."""
    for kind in type(m).__mro__:
        if kind in MODULES:
            r, attributes = MODULES[kind]
            return r, attributes(m)
    return None


def for_call(key: Any, node: fx.Node) -> tuple[Rule, dict[str, Any]] | None:
    """The rule of a function or ATen op (``key``) and the node's arguments by name, or None."""
    found = CALLS.get(key)
    if found is None:
        return None
    r, names = found
    return r, dict(zip(names, node.args, strict=False)) | dict(node.kwargs)


def for_method(node: fx.Node) -> tuple[Rule, dict[str, Any]] | None:
    found = METHODS.get(node.target)
    if found is None:
        return None
    r, names = found
    return r, dict(zip(names, node.args, strict=False)) | dict(node.kwargs)


def for_node(node: Any, gm: fx.GraphModule) -> tuple[Rule, dict[str, Any]] | None:
    """The rule of any graph node (a module, a function or ATen op, a tensor method) and its arguments, as the
    reader finds it; None for a node no rule reads."""
    if not isinstance(node, fx.Node):
        return None
    if node.op == "call_module":
        return for_module(gm.get_submodule(node.target))
    if node.op == "call_function":
        aten = isinstance(node.target, torch._ops.OpOverload)
        return for_call(target_name(node.target) if aten else node.target, node)
    return for_method(node) if node.op == "call_method" else None


def module_of(node: Any, gm: fx.GraphModule, kind: type) -> nn.Module | None:
    """The module a ``call_module`` node calls if it is exactly of type ``kind``, else None."""
    if isinstance(node, fx.Node) and node.op == "call_module":
        m = gm.get_submodule(node.target)
        return m if type(m) is kind else None
    return None


def array(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().astype(np.float64)


def folded(layer: nn.Module, bn: nn.Module | None) -> tuple[np.ndarray, np.ndarray]:
    """A Linear's or Conv2d's weight and bias (float64) with its eval-mode BatchNorm folded in, as the reader
    folds every one (:func:`convert.from_torch.ops.fold_batchnorm`)."""
    ops = [Op("weight", "layer", array(layer.weight), array(layer.bias))]
    if bn is not None:
        n = bn.num_features
        gamma = np.ones(n) if bn.weight is None else array(bn.weight)
        beta = np.zeros(n) if bn.bias is None else array(bn.bias)
        ops.append(Op("bn", "bn", bn=(gamma, beta, array(bn.running_mean), array(bn.running_var), float(bn.eps))))
    (op,) = fold_batchnorm(ops)
    return op.weight, np.zeros(op.weight.shape[0]) if op.bias is None else op.bias


# ------------------------------------------------------------------------------------------------ weight layers
@rule(
    "linear",
    modules={nn.Linear: lambda m: {"weight": m.weight, "bias": m.bias}},
    calls={F.linear: ("input", "weight", "bias"), "linear.default": ("input", "weight", "bias")},
    on_branch=True,
)
def _linear(reader: Any, node: fx.Node, a: dict[str, Any]) -> Op:
    return Op("weight", node.name, array(reader.param(a["weight"])), array(reader.param(a.get("bias"))))


def _conv_attributes(m: nn.Conv2d) -> dict[str, Any]:
    a = {k: getattr(m, k) for k in ("weight", "bias", "stride", "padding", "dilation", "groups")}
    return a | {"padding_mode": m.padding_mode}


@rule("conv2d", modules={nn.Conv2d: _conv_attributes}, calls={F.conv2d: _CONV, "conv2d.default": _CONV}, on_branch=True)
def _conv2d(reader: Any, node: fx.Node, a: dict[str, Any]) -> Op:
    if isinstance(a.get("padding"), str) or a.get("padding_mode", "zeros") != "zeros":
        raise refuse(node, reader.gm, "has string or non-zero padding: not supported")
    if int_pair(a.get("dilation") or 1, node, reader.gm, "dilation") != (1, 1):
        raise refuse(node, reader.gm, "has dilation: not supported")
    groups = a.get("groups") or 1
    if not isinstance(groups, int):
        raise refuse(node, reader.gm, f"has groups={groups!r}; only an integer is supported")
    stride = int_pair(a.get("stride") or 1, node, reader.gm, "stride")
    padding = int_pair(a.get("padding") or 0, node, reader.gm, "padding")
    w, b = reader.param(a["weight"]), reader.param(a.get("bias"))
    return Op("weight", node.name, array(w), array(b), stride, padding, groups=groups)


def _bn_attributes(m: nn.Module) -> dict[str, Any]:
    return {k: getattr(m, k) for k in ("weight", "bias", "running_mean", "running_var", "eps")}


@rule(
    "batch_norm",
    modules={nn.BatchNorm1d: _bn_attributes, nn.BatchNorm2d: _bn_attributes},
    calls={
        F.batch_norm: _BN,
        "batch_norm.default": _BN_ATEN,
        "_native_batch_norm_legit_no_training.default": (*_BN_ATEN[:5], "momentum", "eps"),
    },
    on_branch=True,
)
def _batch_norm(reader: Any, node: fx.Node, a: dict[str, Any]) -> Op:
    """Eval-mode BatchNorm (running statistics), folded into the weight layer before it."""
    if a.get("running_mean") is None or a.get("running_var") is None:
        raise refuse(node, reader.gm, NO_RUNNING_STATS)
    if a.get("training", False):
        why = f"normalizes with batch statistics (training=True): {TRAIN_MODE}; {EVAL_FIRST}"
        raise Fatal(str(refuse(node, reader.gm, why)))
    gamma, beta, mean, var = (reader.param(a.get(k)) for k in ("weight", "bias", "running_mean", "running_var"))
    n = len(mean)
    g = np.ones(n) if gamma is None else array(gamma)
    b = np.zeros(n) if beta is None else array(beta)
    return Op("bn", node.name, bn=(g, b, array(mean), array(var), float(a.get("eps", 1e-5))))


# ------------------------------------------------------------------------------------------------- the neurons
@rule(
    "relu",
    modules={nn.ReLU: lambda m: {}, QCFS: lambda m: {"qcfs": m}},
    calls=dict.fromkeys(RELUS, ("input",)),
    methods={"relu": ("self",), "relu_": ("self",)},
)
def _relu(reader: Any, node: fx.Node, a: dict[str, Any]) -> Op:
    """A rectifier (the integrate-and-fire neuron); or a QCFS module, with its threshold λ and levels L
    (convert/qcfs.py)."""
    m = a.get("qcfs")
    if m is None:
        return Op("relu", node.name)
    lam = float(m.lam.detach())
    if not np.isfinite(lam) or lam <= 0:
        raise refuse(node, reader.gm, f"has λ = {lam!r}: its threshold must be a positive finite number")
    return Op("relu", node.name, lam=lam, levels=m.levels)


# ---------------------------------------------------------------------------------------- re-indexing, pooling
@rule(
    "flatten",
    modules={nn.Flatten: lambda m: {}},
    calls=dict.fromkeys(FLATTENS, ("input",)),
    methods=dict.fromkeys(("view", "reshape", "flatten"), ("self",)),
)
def _flatten(reader: Any, node: fx.Node, a: dict[str, Any]) -> Op | None:
    before, after = node_shape(node.args[0]), node_shape(node)
    if len(after) != 2 or before[:1] != after[:1]:
        raise refuse(
            node, reader.gm, f"reshapes {before} to {after}; only flattening to (batch, features) is supported"
        )
    return Op("flatten", node.name) if len(before) > 2 else None


def _pool_attributes(m: nn.Module) -> dict[str, Any]:
    return {k: getattr(m, k) for k in ("kernel_size", "stride", "padding", "ceil_mode")}


@rule("avg_pool2d", modules={nn.AvgPool2d: _pool_attributes}, calls={F.avg_pool2d: _POOL, "avg_pool2d.default": _POOL})
def _avg_pool2d(reader: Any, node: fx.Node, a: dict[str, Any]) -> Op:
    k = int_pair(a["kernel_size"], node, reader.gm, "kernel_size")
    stride = a.get("stride")
    s = k if stride in (None, []) else int_pair(stride, node, reader.gm, "stride")
    padding = int_pair(a.get("padding") or 0, node, reader.gm, "padding")
    if k[0] != k[1] or s[0] != s[1] or padding != (0, 0) or a.get("ceil_mode"):
        raise refuse(node, reader.gm, "must be a square pool without padding or ceil_mode")
    return Op("pool", node.name, kernel=k[0], stride=s)


_ADAPTIVE = ("input", "output_size")


@rule(
    "adaptive_avg_pool2d",
    modules={nn.AdaptiveAvgPool2d: lambda m: {"output_size": m.output_size}},
    calls={F.adaptive_avg_pool2d: _ADAPTIVE, "adaptive_avg_pool2d.default": _ADAPTIVE},
)
def _adaptive(reader: Any, node: fx.Node, a: dict[str, Any]) -> Op:
    """An adaptive average pool: an ordinary pool where the output size divides the input into equal square
    windows; any other size (PyTorch's windows, start ⌊i·in/out⌋, end ⌈(i+1)·in/out⌉, overlapping or
    repeating) is a linear map that :func:`convert.from_torch.ops.fold_adaptive` folds into the Linear
    after it."""
    output_size = a["output_size"]
    h, w = node_shape(node.args[0])[-2:]
    size = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(size) != 2:
        raise refuse(node, reader.gm, f"has output_size={output_size!r}; give one or two positive sizes")
    out = (h if size[0] is None else int(size[0]), w if size[1] is None else int(size[1]))  # None: keep it
    if min(out) < 1:
        raise refuse(node, reader.gm, f"has output_size={output_size!r}; give one or two positive sizes")
    if h % out[0] == 0 and w % out[1] == 0 and h // out[0] == w // out[1]:
        k = h // out[0]
        return Op("pool", node.name, kernel=k, stride=(k, k))
    return Op("adaptive", node.name, sizes=((h, w), out))


_MEAN = ("input", "dim", "keepdim")


@rule("mean", calls={torch.mean: _MEAN, "mean.dim": _MEAN}, methods={"mean": ("self", "dim", "keepdim")})
def _mean(reader: Any, node: fx.Node, a: dict[str, Any]) -> Op:
    """``x.mean([2, 3])`` (ShuffleNet's head): the global average pool, then (without ``keepdim``) the flatten
    to (batch, channels); a pool of non-square maps is an adaptive pool to 1×1, folded into the next Linear."""
    shape = node_shape(node.args[0])
    dims = a.get("dim")
    dims = dims if isinstance(dims, (tuple, list)) else (dims,)
    if len(shape) != 4 or sorted(int(d) % 4 for d in dims if isinstance(d, int)) != [2, 3]:
        raise refuse(node, reader.gm, f"averages {shape} over dim={a.get('dim')!r}; only the mean over H and W is")
    h, w = shape[-2:]
    if h == w:
        pool = Op("pool", node.name, kernel=h, stride=(h, h))
    else:
        pool = Op("adaptive", node.name, sizes=((h, w), (1, 1)))
    if a.get("keepdim"):
        return pool
    reader.emit(node, True, pool)
    return Op("flatten", node.name)


def _maxpool_attributes(m: nn.Module) -> dict[str, Any]:
    return {k: getattr(m, k) for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")}


@rule("max_pool2d", modules={nn.MaxPool2d: _maxpool_attributes}, calls=dict.fromkeys(MAXPOOLS, _MAXPOOL))
def _max_pool2d(reader: Any, node: fx.Node, a: dict[str, Any]) -> Op:
    """The spike gate (:class:`convert.layers.maxpool2d.MaxPool2d`)."""
    from convert.layers.maxpool2d import pool_from

    try:
        gate = pool_from(
            a["kernel_size"],
            a.get("stride"),
            a.get("padding", 0),
            a.get("dilation", 1),
            bool(a.get("ceil_mode", False)),
            f"node `{node.name}`",
        )
    except SpecError as err:
        raise refuse(node, reader.gm, str(err).split(": ", 1)[-1]) from None
    return Op("maxpool", node.name, gate=gate)


__all__ = [
    "CALLS",
    "FLATTENS",
    "MAXPOOLS",
    "METHODS",
    "MODULES",
    "RELUS",
    "Rule",
    "array",
    "folded",
    "for_call",
    "for_method",
    "for_module",
    "for_node",
    "module_of",
]
