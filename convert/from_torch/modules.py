"""An exported program's ATen layer calls as the modules they stand for, so that the graph rewrites of a traced
model (:mod:`~convert.from_torch.linear_pairs`, :mod:`~convert.from_torch.channel_maps`,
:mod:`~convert.from_torch.siblings`) apply to it too.

``torch.export`` writes ``nn.Conv2d(x)`` as ``aten.conv2d(x, weight, bias, stride, padding, dilation, groups)``
with the weights lifted to ``get_attr`` nodes. :func:`modularize` puts back, for every such call whose weights
are the program's own tensors, the module it stands for (same tensors, same arguments): ``aten.conv2d`` →
``nn.Conv2d``, ``aten.linear`` → ``nn.Linear``, an eval-mode ``aten.batch_norm`` (or
``_native_batch_norm_legit_no_training`` and its ``[0]``) → ``nn.BatchNorm1d/2d``, ``aten.relu`` → ``nn.ReLU``,
``aten.max_pool2d`` → ``nn.MaxPool2d`` and ``aten.cat`` → ``torch.cat``. Anything else stays as it is, for the
reader to read or name (a train-mode BatchNorm, a weight computed in the graph). A pure transform: it returns a
new ``GraphModule``.
"""

from __future__ import annotations

import copy
import operator
from typing import Any

import torch
from torch import fx, nn

from convert.from_torch.refusals import target_name


def _tensor(gm: fx.GraphModule, node: Any) -> torch.Tensor | None:
    """The program's own tensor a ``get_attr`` node names (None for None); raises LookupError otherwise."""
    if node is None:
        return None
    if isinstance(node, fx.Node) and node.op == "get_attr":
        value: Any = gm
        for part in node.target.split("."):
            value = getattr(value, part)
        if isinstance(value, torch.Tensor):
            return value.detach()
    raise LookupError(node)


def _named(node: fx.Node, names: tuple[str, ...], defaults: dict[str, Any]) -> dict[str, Any]:
    return {**defaults, **dict(zip(names, node.args, strict=False)), **dict(node.kwargs)}


def _holding(m: nn.Module, w: torch.Tensor, b: torch.Tensor | None) -> nn.Module:
    """``m`` with the program's weight and bias copied in."""
    with torch.no_grad():
        m.weight.copy_(w)
        if b is not None:
            m.bias.copy_(b)
    return m


def _conv(gm: fx.GraphModule, node: fx.Node) -> tuple[nn.Module, tuple]:
    names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    a = _named(node, names, {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1})
    w, b = _tensor(gm, a["weight"]), _tensor(gm, a["bias"])
    if w.dim() != 4 or isinstance(a["padding"], str):
        raise LookupError(node)
    m = nn.Conv2d(
        w.shape[1] * a["groups"], w.shape[0], tuple(w.shape[2:]), stride=a["stride"], padding=a["padding"],
        dilation=a["dilation"], groups=a["groups"], bias=b is not None, dtype=w.dtype,
    )  # fmt: skip
    return _holding(m, w, b), (a["input"],)


def _linear(gm: fx.GraphModule, node: fx.Node) -> tuple[nn.Module, tuple]:
    a = _named(node, ("input", "weight", "bias"), {"bias": None})
    w, b = _tensor(gm, a["weight"]), _tensor(gm, a["bias"])
    return _holding(nn.Linear(w.shape[1], w.shape[0], bias=b is not None, dtype=w.dtype), w, b), (a["input"],)


def _batch_norm(gm: fx.GraphModule, node: fx.Node) -> tuple[nn.Module, tuple]:
    if target_name(node.target) == "batch_norm.default":
        names = ("input", "weight", "bias", "running_mean", "running_var", "training", "momentum", "eps")
        a = _named(node, names, {"training": False, "eps": 1e-5})
        if a["training"]:
            raise LookupError(node)  # a train-mode export: the reader names it
    else:  # _native_batch_norm_legit_no_training(input, weight, bias, running_mean, running_var, momentum, eps)
        a = _named(node, ("input", "weight", "bias", "running_mean", "running_var", "momentum", "eps"), {})
    mean, var = _tensor(gm, a["running_mean"]), _tensor(gm, a["running_var"])
    w, b = _tensor(gm, a["weight"]), _tensor(gm, a["bias"])
    if mean is None or var is None:
        raise LookupError(node)
    meta = a["input"].meta.get("val") if isinstance(a["input"], fx.Node) else None
    kind = nn.BatchNorm1d if meta is not None and meta.dim() == 2 else nn.BatchNorm2d
    m = kind(len(mean), eps=float(a["eps"]), affine=w is not None, dtype=mean.dtype)
    with torch.no_grad():
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
        if w is not None:
            m.weight.copy_(w)
            m.bias.copy_(torch.zeros_like(w) if b is None else b)
    return m.eval(), (a["input"],)


def _max_pool(gm: fx.GraphModule, node: fx.Node) -> tuple[nn.Module, tuple]:
    names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode")
    a = _named(node, names, {"stride": [], "padding": 0, "dilation": 1, "ceil_mode": False})
    stride = a["stride"] or None  # aten's empty stride: the kernel's
    m = nn.MaxPool2d(a["kernel_size"], stride, a["padding"], a["dilation"], ceil_mode=bool(a["ceil_mode"]))
    return m, (a["input"],)


def _relu(gm: fx.GraphModule, node: fx.Node) -> tuple[nn.Module, tuple]:
    return nn.ReLU(), (node.args[0],)


_MODULES = {
    "conv2d.default": _conv,
    "linear.default": _linear,
    "batch_norm.default": _batch_norm,
    "_native_batch_norm_legit_no_training.default": _batch_norm,
    "relu.default": _relu,
    "relu_.default": _relu,
    "max_pool2d.default": _max_pool,
}


def modularize(gm: fx.GraphModule) -> fx.GraphModule:
    """``gm`` with its ATen layer calls as modules (module docstring); ``gm`` itself is unchanged."""
    gm = copy.deepcopy(gm)
    changed = False
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        name = target_name(node.target)
        if name == "cat.default":
            node.target = torch.cat
            changed = True
            continue
        if name not in _MODULES:
            continue
        stands_for = [node]  # the nodes whose value the module gives
        if name.startswith("_native_batch_norm"):  # a tuple: the module stands for its users' [0]
            stands_for = list(node.users)
            if not stands_for or not all(u.target is operator.getitem and u.args[1] == 0 for u in stands_for):
                continue
        try:
            module, args = _MODULES[name](gm, node)
        except LookupError:
            continue
        gm.add_submodule(f"_module_{node.name}", module)
        with gm.graph.inserting_before(node):
            new = gm.graph.call_module(f"_module_{node.name}", args)
        new.meta = dict(stands_for[0].meta)
        for use in stands_for:
            use.replace_all_uses_with(new)
            if use is not node:
                gm.graph.erase_node(use)
        gm.graph.erase_node(node)
        changed = True
    if changed:
        gm.graph.lint()
        gm.recompile()
    return gm


__all__ = ["modularize"]
