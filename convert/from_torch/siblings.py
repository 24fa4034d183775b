"""Parallel branches merged into one layer: ``torch.cat([relu(conv_a(x)), relu(conv_b(x)), ...], dim=1)``.

A channel concatenation of rectified convolutions that all read the same tensor ``x`` (SqueezeNet's Fire
module: a 1×1 and a 3×3 expansion of one squeeze) computes exactly what one convolution does whose output
channels are the branches' in order, each branch's kernel placed at the centre of the largest kernel
(zeros around it) and its padding grown by the same margin, each branch's eval-mode BatchNorm folded into
its rows. So the cat and its branches are rewritten, in the traced graph, into that one ``nn.Conv2d``
followed by one ``nn.ReLU``: one population of integrate-and-fire neurons, the union of the branches', each
neuron fed by exactly the synapses it had (the zeros around a smaller kernel are no synapses of the ANN but
weight-0 entries of the merged kernel; they add nothing to any current).

The branches must agree in stride and in ``kernel − 2·padding`` (so their outputs have one size and the
centred placement is exact); each must be [BatchNorm] + ReLU after a plain ``nn.Conv2d`` (groups 1,
dilation 1, zero padding) and used only by the cat. Anything else is left to the reader, which names what it
cannot read. :func:`merge_siblings` is a pure transform of a ``GraphModule`` (it returns a new one).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from convert.from_torch.ops import Op, fold_batchnorm
from convert.from_torch.reader import CATS, DROP_MODULES, RELUS


def _is_relu(node: fx.Node, gm: fx.GraphModule) -> bool:
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)) is nn.ReLU
    if node.op == "call_function":
        return node.target in RELUS
    return node.op == "call_method" and node.target in ("relu", "relu_")


def _module(node: Any, gm: fx.GraphModule, kind: type) -> nn.Module | None:
    if isinstance(node, fx.Node) and node.op == "call_module":
        m = gm.get_submodule(node.target)
        return m if type(m) is kind else None
    return None


def _passed(node: Any, gm: fx.GraphModule, nodes: list[fx.Node]) -> Any:
    """``node``'s input while ``node`` is a dropped module (Identity, Dropout) used once, each added to
    ``nodes``."""
    while (
        isinstance(node, fx.Node)
        and node.op == "call_module"
        and isinstance(gm.get_submodule(node.target), DROP_MODULES)
        and len(node.users) == 1
    ):
        nodes.append(node)
        node = node.args[0]
    return node


def _branch(item: Any, gm: fx.GraphModule) -> tuple[fx.Node, nn.Conv2d, nn.BatchNorm2d | None, list[fx.Node]] | None:
    """(input x, conv, BatchNorm or None, the branch's nodes) of ``relu([bn](conv(x)))`` (dropped modules
    anywhere between), or None."""
    nodes: list[fx.Node] = []
    item = _passed(item, gm, nodes)
    if not isinstance(item, fx.Node) or not _is_relu(item, gm) or len(item.users) != 1:
        return None
    nodes.append(item)
    inner = _passed(item.args[0], gm, nodes)
    bn = _module(inner, gm, nn.BatchNorm2d)
    if bn is not None:
        if len(inner.users) != 1 or bn.running_mean is None or bn.running_var is None:
            return None
        nodes.append(inner)
        inner = _passed(inner.args[0], gm, nodes)
    conv = _module(inner, gm, nn.Conv2d)
    if conv is None or len(inner.users) != 1 or not isinstance(inner.args[0], fx.Node):
        return None
    if conv.groups != 1 or tuple(conv.dilation) != (1, 1) or conv.padding_mode != "zeros":
        return None
    if isinstance(conv.padding, str) or conv.kernel_size[0] != conv.kernel_size[1]:
        return None
    nodes.append(inner)
    return inner.args[0], conv, bn, nodes


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[np.ndarray, np.ndarray]:
    """The branch's weight and bias (float64) with its BatchNorm folded in, as the reader folds every one
    (:func:`convert.from_torch.ops.fold_batchnorm`)."""

    def array(t: torch.Tensor | None) -> np.ndarray | None:
        return None if t is None else t.detach().cpu().numpy().astype(np.float64)

    ops = [Op("weight", "conv", array(conv.weight), array(conv.bias))]
    if bn is not None:
        n = bn.num_features
        gamma = np.ones(n) if bn.weight is None else array(bn.weight)
        beta = np.zeros(n) if bn.bias is None else array(bn.bias)
        ops.append(Op("bn", "bn", bn=(gamma, beta, array(bn.running_mean), array(bn.running_var), float(bn.eps))))
    (op,) = fold_batchnorm(ops)
    return op.weight, np.zeros(op.weight.shape[0]) if op.bias is None else op.bias


def merged_conv(convs: list[nn.Conv2d], bns: list[nn.BatchNorm2d | None]) -> nn.Conv2d | None:
    """One convolution computing ``cat([bn_i(conv_i(x))], 1)``, or None where the branches' outputs do not
    align (module docstring)."""
    strides = {tuple(c.stride) for c in convs}
    margins = {(c.kernel_size[0] - 2 * c.padding[0], c.kernel_size[1] - 2 * c.padding[1]) for c in convs}
    if len(strides) != 1 or len(margins) != 1 or len({c.in_channels for c in convs}) != 1:
        return None
    k = max(c.kernel_size[0] for c in convs)
    (mh, mw), stride = margins.pop(), strides.pop()
    out = nn.Conv2d(
        convs[0].in_channels,
        sum(c.out_channels for c in convs),
        k,
        stride=stride,
        padding=((k - mh) // 2, (k - mw) // 2),
        bias=True,
        dtype=convs[0].weight.dtype,
    )
    weight = np.zeros(tuple(out.weight.shape))
    bias = np.zeros(out.out_channels)
    row = 0
    for conv, bn in zip(convs, bns, strict=True):
        w, b = _folded(conv, bn)
        o = (k - conv.kernel_size[0]) // 2
        weight[row : row + w.shape[0], :, o : o + w.shape[2], o : o + w.shape[3]] = w
        bias[row : row + w.shape[0]] = b
        row += w.shape[0]
    with torch.no_grad():
        out.weight.copy_(torch.from_numpy(weight))
        out.bias.copy_(torch.from_numpy(bias))
    return out.eval()


def _cat_items(node: fx.Node) -> list[Any] | None:
    """The tensors a channel concatenation of 4-d tensors joins, or None if ``node`` is not one."""
    if node.op != "call_function" or node.target not in CATS:
        return None
    named = dict(zip(("tensors", "dim"), node.args, strict=False)) | dict(node.kwargs)
    items = named.get("tensors")
    meta = node.meta.get("tensor_meta")
    rank = len(meta.shape) if meta is not None and hasattr(meta, "shape") else 4
    if not isinstance(items, (list, tuple)) or named.get("dim", 0) not in (1, 1 - rank):
        return None
    return list(items)


def merge_siblings(gm: fx.GraphModule) -> tuple[fx.GraphModule, list[str]]:
    """``gm`` with every concatenation of sibling branches replaced by one merged convolution and ReLU (module
    docstring), and the names of the cats merged (for the spec's provenance); ``gm`` itself is unchanged."""
    gm = copy.deepcopy(gm)
    merged: list[str] = []
    for node in list(gm.graph.nodes):
        items = _cat_items(node)
        if items is None or len(items) < 2:
            continue
        branches = [_branch(item, gm) for item in items]
        if any(b is None for b in branches) or len({b[0] for b in branches}) != 1:
            continue
        conv = merged_conv([b[1] for b in branches], [b[2] for b in branches])
        if conv is None:
            continue
        name = f"merged_{node.name}"
        gm.add_submodule(name, conv)
        gm.add_submodule(f"{name}_relu", nn.ReLU())
        with gm.graph.inserting_before(node):
            c = gm.graph.call_module(name, (branches[0][0],))
            r = gm.graph.call_module(f"{name}_relu", (c,))
        node.replace_all_uses_with(r)
        gm.graph.erase_node(node)
        for _x, _conv, _bn, nodes in branches:
            for n in nodes:  # from the cat down to the conv: each used only by the one before it
                gm.graph.erase_node(n)
        merged.append(node.name)
    if merged:
        gm.graph.lint()
        gm.recompile()
    return gm, merged


__all__ = ["merge_siblings", "merged_conv"]
