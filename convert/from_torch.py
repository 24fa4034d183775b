"""Any traceable PyTorch model → NetworkSpec (the direct copy, θ = 1), through torch.fx.

``from_torch(model, input_shape)`` traces ``model`` with :func:`torch.fx.symbolic_trace`, propagates the shape
of one zero image through the graph (:class:`torch.fx.passes.shape_prop.ShapeProp`) and reads the graph node by
node into a chain of operations:

* a weight layer: ``nn.Linear``, ``nn.Conv2d`` (stride, zero padding; bias on or off), and the functional
  ``F.linear``/``F.conv2d`` of the model's own parameters;
* ``nn.BatchNorm1d``/``nn.BatchNorm2d`` and ``F.batch_norm`` in eval mode (running statistics), folded into
  the weight layer right before it: W ← W · γ/√(σ² + ε) per output channel, b ← (b − μ) · γ/√(σ² + ε) + β;
* a rectifier: ``nn.ReLU``, ``F.relu``, ``torch.relu``, ``x.relu()`` and their in-place forms (it becomes the
  integrate-and-fire neuron);
* a re-indexing: ``nn.Flatten``, ``torch.flatten(x, 1)``, ``x.flatten(1)``, ``x.view(n, -1)``/``reshape``
  (any view whose result is (N, features));
* average pooling: ``nn.AvgPool2d``/``F.avg_pool2d`` (no padding), ``nn.AdaptiveAvgPool2d`` and
  ``F.adaptive_avg_pool2d`` whose output size divides the input (then it is an ordinary average pool);
* max-pooling: ``nn.MaxPool2d``/``F.max_pool2d`` with stride = kernel, no padding (the spike gate
  :class:`~convert.spec.MaxPool2d`; one right before its ReLU is moved after it, as max and ReLU commute);
* a residual sum ``a + b`` of a weight layer's output (before its ReLU) and a rectified value before it (an
  identity skip) or a branch from one holding one Linear/Conv2d and its BatchNorm (a skip edge,
  :mod:`convert.layers.skip`; the branch's bias joins the layer's);
* dropped: ``nn.Dropout``, ``F.dropout``, ``nn.Identity`` (training devices and no-ops); shape queries
  (``x.size(0)``, ``x.shape``) that only feed a view.

Anything else is a :class:`SpecError` naming the graph node and its op ("node `head_act` (torch.sigmoid) has
no spiking equivalent"), never a silent skip; so is any other branching (a second input, a sum after a ReLU, a
second skip into one layer). A weight layer that is not the last must be followed by a rectifier (only re-indexing and
dropped nodes in between), as :func:`convert.extract.check_rectifiers` requires of an ``nn.Sequential``.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from convert.extract import direct_copy
from convert.spec import AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, NetworkSpec, SpecError

_DROP_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
# call_function targets: the functional API of a traced forward(), and (by name) the ATen ops of an exported one
_RELUS = {F.relu, torch.relu, torch.relu_, getattr(F, "relu_", F.relu), "relu.default", "relu_.default"}
_DROPPED_CALLS = {F.dropout, F.dropout2d, torch.dropout, "dropout.default", "clone.default", "alias.default"}
_FLATTENS = {torch.flatten, "view.default", "reshape.default", "flatten.using_ints", "_unsafe_view.default"}
_ADDS = {operator.add, torch.add, operator.iadd, "add.Tensor", "add_.Tensor"}
_MAXPOOLS = {F.max_pool2d, "max_pool2d.default", "max_pool2d_with_indices.default"}
_CONV = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_POOL = ("input", "kernel_size", "stride", "padding", "ceil_mode")
_BN = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
#: the calls with parameters: their argument names in order, and the handler (``_call_<kind>``) that reads them
_SIGNATURES: dict[Any, tuple[str, tuple[str, ...]]] = {
    F.linear: ("linear", ("input", "weight", "bias")),
    "linear.default": ("linear", ("input", "weight", "bias")),
    F.conv2d: ("conv2d", _CONV),
    "conv2d.default": ("conv2d", _CONV),
    F.batch_norm: ("batch_norm", _BN),
    "batch_norm.default": ("batch_norm", ("input", "weight", "bias", "running_mean", "running_var", *_BN[5:])),
    "_native_batch_norm_legit_no_training.default": (
        "batch_norm",
        ("input", "weight", "bias", "running_mean", "running_var", "momentum", "eps"),
    ),
    F.avg_pool2d: ("avg_pool2d", _POOL),
    "avg_pool2d.default": ("avg_pool2d", _POOL),
    F.adaptive_avg_pool2d: ("adaptive_avg_pool2d", ("input", "output_size")),
    "adaptive_avg_pool2d.default": ("adaptive_avg_pool2d", ("input", "output_size")),
}


@dataclass
class Op:
    """One operation of the chain: ``kind`` is weight, bn, relu, flatten or pool; ``node`` names it."""

    kind: str
    node: str
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    kernel: int = 0
    bn: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float] | None = None  # γ, β, μ, σ², ε
    source: str | None = None  # a weight op's skip edge: the tap node it comes from (a relu or a max-pool)
    skip: list[Op] | None = None  # and its branch: [] (the identity), or one weight op and its BatchNorm
    taps: tuple[str, ...] = ()  # a relu or max-pool op: the graph nodes whose value it is


def _array(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().astype(np.float64)


def _fn_name(target: Any) -> str:
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", str(target))
    if module.startswith("torch.nn.functional"):
        return f"F.{name}"
    if module.startswith("torch") or module == "" or "_VariableFunctions" in module:
        return f"torch.{name}"
    return f"{module}.{name}"


def _what(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)).__name__
    if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
        return f"aten.{target_name(node.target)}"
    if node.op == "call_function":
        return _fn_name(node.target)
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return node.op


def _refuse(node: fx.Node, gm: fx.GraphModule, why: str) -> SpecError:
    return SpecError(f"node `{node.name}` ({_what(node, gm)}) {why}")


def _pair(value: Any, node: fx.Node, gm: fx.GraphModule, name: str) -> tuple[int, int]:
    v = (value, value) if isinstance(value, int) else tuple(value)
    if len(v) != 2 or not all(isinstance(x, int) for x in v):
        raise _refuse(node, gm, f"has {name}={value!r}; only integer {name} is supported")
    return int(v[0]), int(v[1])


def target_name(target: Any) -> str:
    """``conv2d.default`` for ``torch.ops.aten.conv2d.default``."""
    return str(target).removeprefix("aten.")


def _shape(node: fx.Node) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else ()


class _Reader:
    """Walks a traced graph along its one chain of tensors, collecting :class:`Op` s."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm, self.ops, self.current = gm, [], None
        self.shape_nodes: set[fx.Node] = set()
        self.taps: dict[fx.Node, str] = {}  # a rectified value (after a relu or a max-pool) -> its op's node
        self.branches: dict[fx.Node, tuple[str, list[Op]]] = {}  # a side branch's value -> (tap, its ops)

    def param(self, node: Any) -> torch.Tensor | None:
        """The tensor of a ``get_attr`` node (a functional call on the model's own parameters)."""
        if node is None:
            return None
        if isinstance(node, fx.Node) and node.op == "get_attr":
            value: Any = self.gm
            for part in node.target.split("."):
                value = getattr(value, part)
            return value
        raise SpecError(f"node `{getattr(node, 'name', node)}`: a weight must be a parameter of the model")

    def take(self, node: fx.Node) -> bool:
        """``node`` continues the chain (True): its first argument must be the chain's current tensor; or it
        starts or continues a side branch from a rectified value (False; the op goes to that branch)."""
        source = node.args[0] if node.args else None
        if source is self.current:
            self.current = node
            return True
        if source in self.taps or source in self.branches:
            tap, ops = self.branches.get(source, (self.taps.get(source), []))
            self.branches[node] = (tap, list(ops))
            return False
        raise _refuse(
            node,
            self.gm,
            "reads a tensor other than the previous layer's output or a rectified value before it: "
            "a skip connection must leave from a ReLU or a max-pooling output",
        )

    def emit(self, node: fx.Node, on_trunk: bool, op: Op) -> None:
        """Append ``op`` to the chain, or to the side branch ``node`` continues."""
        if on_trunk:
            self.ops.append(op)
            if op.kind in ("relu", "maxpool"):
                self.taps[node] = op.node
            return
        if op.kind not in ("weight", "bn"):
            raise _refuse(
                node, self.gm, "lies on a skip branch, which may hold only one Linear/Conv2d and its BatchNorm"
            )
        self.branches[node][1].append(op)

    def add(self, node: fx.Node) -> None:
        """``a + b``: the chain's pre-activation plus a skip (a rectified value, or a branch from one)."""
        a, b = node.args[:2]
        if b is self.current:
            a, b = b, a
        if a is not self.current or not isinstance(b, fx.Node):
            raise _refuse(node, self.gm, "sums two tensors neither of which is the chain's current value")
        if b in self.taps:
            tap, ops = self.taps[b], []
        elif b in self.branches:
            tap, ops = self.branches[b]
        else:
            raise _refuse(
                node, self.gm, "adds a tensor that is not a rectified value before it (nor a branch from one)"
            )
        last = next((op for op in reversed(self.ops) if op.kind not in ("bn",)), None)
        if last is None or last.kind != "weight":
            raise _refuse(
                node,
                self.gm,
                "sums after a ReLU or a reshape: a residual sum must add the skip to a Linear/Conv2d's "
                "output (before its ReLU), which is where the spiking neuron integrates both currents",
            )
        if last.skip is not None:
            raise _refuse(node, self.gm, f"is a second skip into `{last.node}`; one skip per layer is supported")
        last.source, last.skip = tap, ops
        self.current = node

    def read(self) -> list[Op]:
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                if self.current is not None:
                    raise _refuse(node, self.gm, "is a second input; the spec has one input image")
                self.current = node
            elif node.op == "output":
                result = node.args[0]
                if isinstance(result, (tuple, list)) and len(result) == 1:  # an exported program's outputs
                    result = result[0]
                if result is not self.current:
                    raise _refuse(node, self.gm, "returns something other than the last layer's output")
            elif node.op == "get_attr":
                continue  # a parameter, read where a functional call uses it
            elif self._shape_query(node):
                continue
            elif node.op == "call_module":
                self._module(node, self.gm.get_submodule(node.target))
            elif node.op == "call_function":
                self._function(node)
            elif node.op == "call_method":
                self._method(node)
            else:  # pragma: no cover - torch.fx has no other node ops
                raise _refuse(node, self.gm, "is not supported")
        return self.ops

    def _shape_query(self, node: fx.Node) -> bool:
        """``x.size(...)``, ``x.shape``, ``x.dim()`` and indexing into them: they only feed views."""
        if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
            if target_name(node.target) in ("sym_size.int", "size.default"):
                self.shape_nodes.add(node)
                return True
        if node.op == "call_module" and str(node.target).startswith("_guards"):
            return True  # an exported program's input guards: checks, not an operation
        if node.op == "call_method" and node.target in ("size", "dim"):
            self.shape_nodes.add(node)
            return True
        if node.op == "call_function" and node.target is getattr and node.args[1] in ("shape",):
            self.shape_nodes.add(node)
            return True
        if node.op == "call_function" and node.target is operator.getitem and node.args[0] in self.shape_nodes:
            self.shape_nodes.add(node)
            return True
        return False

    def _module(self, node: fx.Node, m: nn.Module) -> None:
        trunk = self.take(node)
        if isinstance(m, nn.Linear):
            self.emit(node, trunk, Op("weight", node.name, _array(m.weight), _array(m.bias)))
        elif isinstance(m, nn.Conv2d):
            if m.groups != 1 or tuple(m.dilation) != (1, 1) or m.padding_mode != "zeros" or isinstance(m.padding, str):
                raise _refuse(node, self.gm, "has groups, dilation, string or non-zero padding: not supported")
            stride, padding = _pair(m.stride, node, self.gm, "stride"), _pair(m.padding, node, self.gm, "padding")
            self.emit(node, trunk, Op("weight", node.name, _array(m.weight), _array(m.bias), stride, padding))
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            self.emit(node, trunk, self._batchnorm(node, m.weight, m.bias, m.running_mean, m.running_var, m.eps))
        elif not trunk:
            self.emit(node, trunk, Op("other", node.name))  # refused: only weights and BatchNorm on a branch
        elif isinstance(m, nn.ReLU):
            self.emit(node, trunk, Op("relu", node.name))
        elif isinstance(m, nn.Flatten):
            self._flatten(node)
        elif isinstance(m, nn.AvgPool2d):
            self._avgpool(node, m.kernel_size, m.stride, m.padding, m.ceil_mode)
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            self._adaptive(node, m.output_size)
        elif isinstance(m, _DROP_MODULES):
            pass
        elif isinstance(m, nn.MaxPool2d):
            self._maxpool(node, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
        else:
            raise _refuse(node, self.gm, "has no spiking equivalent")

    def _function(self, node: fx.Node) -> None:
        target = node.target
        aten = isinstance(target, torch._ops.OpOverload)
        key = target_name(target) if aten else target
        if target is operator.getitem and node.args[0] is self.current and node.args[1] == 0:
            self.current = node  # the output of an op that returns a tuple (an exported batch norm)
            return
        if key in _ADDS:
            if len(node.args) != 2 or node.kwargs:
                raise _refuse(node, self.gm, "adds with alpha or a scalar: only a + b of two tensors is a residual sum")
            self.add(node)
            return
        trunk = self.take(node)
        if key in _SIGNATURES and _SIGNATURES[key][0] in ("linear", "conv2d", "batch_norm"):
            kind, names = _SIGNATURES[key]
            named = dict(zip(names, node.args, strict=False)) | dict(node.kwargs)
            self.emit(node, trunk, getattr(self, f"_call_{kind}")(node, named))
        elif not trunk:
            self.emit(node, trunk, Op("other", node.name))  # refused: only weights and BatchNorm on a branch
        elif key in _MAXPOOLS:
            names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode")
            a = dict(zip(names, node.args, strict=False)) | dict(node.kwargs)
            self._maxpool(
                node,
                a["kernel_size"],
                a.get("stride"),
                a.get("padding", 0),
                a.get("dilation", 1),
                a.get("ceil_mode", False),
            )
        elif key in _RELUS:
            self.emit(node, trunk, Op("relu", node.name))
        elif key in _DROPPED_CALLS:
            pass
        elif key in _FLATTENS:
            self._flatten(node)
        elif key in _SIGNATURES:
            kind, names = _SIGNATURES[key]
            named = dict(zip(names, node.args, strict=False)) | dict(node.kwargs)
            getattr(self, f"_call_{kind}")(node, named)
        else:
            raise _refuse(node, self.gm, "has no spiking equivalent")

    def _call_linear(self, node: fx.Node, a: dict[str, Any]) -> Op:
        return Op("weight", node.name, _array(self.param(a["weight"])), _array(self.param(a.get("bias"))))

    def _call_conv2d(self, node: fx.Node, a: dict[str, Any]) -> Op:
        if (a.get("groups") or 1) != 1 or _pair(a.get("dilation") or 1, node, self.gm, "dilation") != (1, 1):
            raise _refuse(node, self.gm, "has groups or dilation: not supported")
        stride = _pair(a.get("stride") or 1, node, self.gm, "stride")
        padding = _pair(a.get("padding") or 0, node, self.gm, "padding")
        w, b = self.param(a["weight"]), self.param(a.get("bias"))
        return Op("weight", node.name, _array(w), _array(b), stride, padding)

    def _call_batch_norm(self, node: fx.Node, a: dict[str, Any]) -> Op:
        if a.get("training", False):
            raise _refuse(node, self.gm, "normalizes with batch statistics (training=True); convert in eval mode")
        params = (self.param(a.get(k)) for k in ("weight", "bias", "running_mean", "running_var"))
        return self._batchnorm(node, *params, a.get("eps", 1e-5))

    def _maxpool(self, node: fx.Node, kernel: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool) -> None:
        from convert.layers.maxpool2d import pool_from

        try:
            gate = pool_from(kernel, stride, padding, dilation, bool(ceil_mode), f"node `{node.name}`")
        except SpecError as err:
            raise _refuse(node, self.gm, str(err).split(": ", 1)[-1]) from None
        self.emit(node, True, Op("maxpool", node.name, kernel=gate.kernel_size))

    def _call_avg_pool2d(self, node: fx.Node, a: dict[str, Any]) -> None:
        self._avgpool(node, a["kernel_size"], a.get("stride"), a.get("padding") or 0, bool(a.get("ceil_mode")))

    def _call_adaptive_avg_pool2d(self, node: fx.Node, a: dict[str, Any]) -> None:
        self._adaptive(node, a["output_size"])

    def _method(self, node: fx.Node) -> None:
        if not self.take(node):
            self.emit(node, False, Op("other", node.name))  # refused: only weights and BatchNorm on a branch
        if node.target in ("relu", "relu_"):
            self.emit(node, True, Op("relu", node.name))
        elif node.target in ("view", "reshape", "flatten"):
            self._flatten(node)
        elif node.target in ("contiguous",):
            pass
        else:
            raise _refuse(node, self.gm, "has no spiking equivalent")

    def _flatten(self, node: fx.Node) -> None:
        before, after = _shape(node.args[0]), _shape(node)
        if len(after) != 2 or before[:1] != after[:1]:
            raise _refuse(
                node, self.gm, f"reshapes {before} to {after}; only flattening to (batch, features) is supported"
            )
        if len(before) > 2:
            self.ops.append(Op("flatten", node.name))

    def _avgpool(self, node: fx.Node, kernel: Any, stride: Any, padding: Any, ceil_mode: bool) -> None:
        k = _pair(kernel, node, self.gm, "kernel_size")
        s = k if stride in (None, []) else _pair(stride, node, self.gm, "stride")
        if k[0] != k[1] or s[0] != s[1] or _pair(padding, node, self.gm, "padding") != (0, 0) or ceil_mode:
            raise _refuse(node, self.gm, "must be a square pool without padding or ceil_mode")
        self.ops.append(Op("pool", node.name, kernel=k[0], stride=s))

    def _adaptive(self, node: fx.Node, output_size: Any) -> None:
        before = _shape(node.args[0])
        out = _pair(output_size, node, self.gm, "output_size")
        h, w = before[-2:]
        if h % out[0] or w % out[1] or h // out[0] != w // out[1]:
            raise _refuse(
                node,
                self.gm,
                f"pools {h}x{w} to {out[0]}x{out[1]}: only an output size that divides "
                "the input into equal square windows is supported",
            )
        k = h // out[0]
        self.ops.append(Op("pool", node.name, kernel=k, stride=(k, k)))

    def _batchnorm(self, node: fx.Node, gamma, beta, mean, var, eps: float) -> Op:
        if mean is None or var is None:
            raise _refuse(node, self.gm, "has no running statistics (track_running_stats=False): cannot be folded")
        n = len(mean)
        g = np.ones(n) if gamma is None else _array(gamma)
        b = np.zeros(n) if beta is None else _array(beta)
        return Op("bn", node.name, bn=(g, b, _array(mean), _array(var), float(eps)))


def fold_batchnorm(ops: list[Op]) -> list[Op]:
    """Each BatchNorm folded into the weight layer right before it (only dropped nodes may lie between), on the
    chain and on every skip branch."""
    out: list[Op] = []
    for op in ops:
        if op.skip:
            op.skip = fold_batchnorm(op.skip)
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
    weights = [i for i, op in enumerate(ops) if op.kind == "weight"]
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
            pool, relu = out[i], out[i + 1]
            out[i] = Op("relu", pool.node)
            out[i + 1] = Op("maxpool", relu.node, kernel=pool.kernel)
    return out


def _skip_fields(op: Op, taps: dict[str, int]) -> dict[str, Any]:
    """The skip fields of a weight op's layer (convert.layers.skip), and its branch's bias folded into it."""
    if op.skip is None:
        return {}
    if len(op.skip) > 1:
        raise SpecError(f"node `{op.node}`: its skip branch holds {len(op.skip)} layers; at most one is supported")
    fields: dict[str, Any] = {"skip_source": taps[op.source], "skip_weight": np.array(1.0)}
    if op.skip:
        branch = op.skip[0]
        fields.update(skip_weight=branch.weight)
        if branch.weight.ndim == 4:
            fields.update(skip_stride=branch.stride, skip_padding=branch.padding)
        if branch.bias is not None:  # the node gets both edges' constant currents
            op.bias = branch.bias if op.bias is None else op.bias + branch.bias
    return fields


def _layers(ops: list[Op]) -> list[Any]:
    layers: list[Any] = []
    taps: dict[str, int] = {}  # a relu or max-pool node -> the index of the layer whose output it is
    for op in ops:
        if op.kind == "weight":
            skip = _skip_fields(op, taps)
            if op.weight.ndim == 2:
                layers.append(Dense(op.weight, bias=op.bias, **skip))
            else:
                layers.append(Conv2d(op.weight, stride=op.stride, padding=op.padding, bias=op.bias, **skip))
        elif op.kind == "pool":
            layers.append(AvgPool2d(op.kernel, stride=op.stride[0]))
        elif op.kind == "flatten":
            layers.append(Flatten())
        elif op.kind == "maxpool":
            layers.append(MaxPool2d(op.kernel))
            taps[op.node] = len(layers) - 1
        elif op.kind == "relu":
            taps[op.node] = len(layers) - 1
    return layers


def _convert(gm: fx.GraphModule, example: torch.Tensor, dataset: str | None, spec_fields: dict, source: str):
    """The direct copy of the graph ``gm``, its shapes propagated from ``example`` (a batch of zero images)."""
    from torch.fx.passes.shape_prop import ShapeProp

    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    ops = gates_after_relus(fold_batchnorm(_Reader(gm).read()))
    if not any(op.kind == "weight" for op in ops):
        raise SpecError("the model has no Linear or Conv2d layer: nothing to convert")
    check_chain(ops)
    provenance = {"source": source, **spec_fields.pop("provenance", {})}
    return direct_copy(_layers(ops), tuple(example.shape[1:]), dataset, provenance=provenance, **spec_fields)


def from_exported(program: Any, dataset: str | None = None, **spec_fields: Any) -> NetworkSpec:
    """The direct copy of a ``torch.export`` program (:func:`torch.export.load` of a ``.pt2`` archive): its
    ATen graph read as :func:`from_torch` reads a traced one, the input shape from the program's example."""
    gm = program.module()
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1 or "val" not in inputs[0].meta:
        raise SpecError(f"the exported program takes {len(inputs)} inputs; export a model of one image batch")
    shape = tuple(int(d) for d in inputs[0].meta["val"].shape)
    example = torch.zeros(shape, dtype=inputs[0].meta["val"].dtype)
    return _convert(gm, example, dataset, spec_fields, "torch.export")


def load_exported(path: Any) -> Any:
    """:func:`torch.export.load` of a ``.pt2`` archive (its graph is serialized data, its weights are read
    as tensors: no pickled code runs); a file that is not one is a ValueError naming it."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such file; write it with torch.export.save(torch.export.export(model, (example,)), path)"
        )
    try:
        return torch.export.load(path)
    except Exception as err:  # a zip error, a version mismatch, a foreign archive
        detail = (str(err).strip().splitlines() or [""])[0][:200]
        raise ValueError(
            f"{path}: not a torch.export archive ({type(err).__name__}: {detail}); write one with torch.export.save"
        ) from None


def from_torch(
    model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28), dataset: str | None = None, **spec_fields: Any
) -> NetworkSpec:
    """The direct copy (every threshold 1) of any model torch.fx can trace (module docstring)."""
    try:
        gm = fx.symbolic_trace(model)
    except Exception as err:  # torch.fx raises many kinds (TraceError, TypeError, NotImplementedError...)
        raise SpecError(
            f"torch.fx cannot trace this model ({type(err).__name__}: {err}); "
            "data-dependent control flow in forward() must go"
        ) from None
    gm.eval()
    example = torch.zeros(1, *input_shape, dtype=next(model.parameters()).dtype)
    return _convert(gm, example, dataset, dict(spec_fields), "torch.fx")
