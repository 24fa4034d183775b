"""Two weight layers with no rectifier between them, merged into one: ``conv_B(bn_A(conv_A(x)))`` with B
pointwise, and ``linear_B(bn_A(linear_A(x)))``.

A depthwise (or any) convolution A, its eval-mode BatchNorm, then a 1×1 convolution B (stride 1, no padding)
compute one linear map of ``x``: a convolution C with A's kernel size, stride, padding and dilation, groups 1,

    W_C[o, i] = Σ_c B[o, c] · s_c · A[c, i],     b_C[o] = Σ_c B[o, c] · (s_c · a_c + t_c) + b_B[o],

where bn_A(y) = s·y + t per channel and ``A[c, i]`` is A's weight with its groups expanded (zeros between
them). B is pointwise, so A's zero padding and the constant t commute with it exactly. This is ShuffleNet's
depthwise 3×3 → BatchNorm → 1×1 (and any model's linear bottleneck read by a 1×1); without it, the depthwise
convolution's output would need a population of its own, which would rectify what the model does not.
Two ``nn.Linear`` (a BatchNorm1d between allowed) merge the same way: W_C = W_B · diag(s) · W_A (a projection
head of two Linears without a ReLU). B's own BatchNorm, if any, stays after C (the reader folds it).
:func:`fold_linear_pairs` is a pure transform of a ``GraphModule`` (it returns a new one); A and its BatchNorm
must be used only by the next op.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import fx, nn

from convert.from_torch.channel_maps import full_weight
from convert.from_torch.rules import array, folded, module_of


def _pointwise(conv: nn.Module | None) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and tuple(conv.kernel_size) == (1, 1)
        and tuple(conv.stride) == (1, 1)
        and tuple(conv.padding) == (0, 0)
        and conv.padding_mode == "zeros"
    )


def _with(m: nn.Module, weight: np.ndarray, bias: np.ndarray) -> nn.Module:
    """``m`` (eval) holding ``weight`` and ``bias``."""
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(weight))
        m.bias.copy_(torch.from_numpy(bias))
    return m.eval()


def _bias(layer: nn.Module) -> np.ndarray | float:
    return 0.0 if layer.bias is None else array(layer.bias)


def merged(a: nn.Conv2d, bn: nn.BatchNorm2d | None, b: nn.Conv2d) -> nn.Conv2d:
    """The convolution C = b ∘ bn ∘ a (module docstring): a with its BatchNorm folded in as the reader folds
    every one (:func:`convert.from_torch.rules.folded`), its groups expanded, then b's 1×1 map."""
    wa, ba = folded(a, bn)
    wa = full_weight(torch.from_numpy(wa), a.groups, a.in_channels).numpy()
    wb = full_weight(b.weight.detach(), b.groups, b.in_channels).double().numpy()[:, :, 0, 0]
    c = nn.Conv2d(
        a.in_channels,
        b.out_channels,
        a.kernel_size,
        stride=a.stride,
        padding=a.padding,
        dilation=a.dilation,
        bias=True,
        dtype=a.weight.dtype,
    )
    return _with(c, np.einsum("oc,cikl->oikl", wb, wa), wb @ ba + _bias(b))


def merged_dense(a: nn.Linear, bn: nn.BatchNorm1d | None, b: nn.Linear) -> nn.Linear:
    """The Linear C = b ∘ bn ∘ a: W_C = W_b · W_a', b_C = W_b · b_a' + b_b, with bn folded into a (W_a', b_a')."""
    wa, ba = folded(a, bn)
    wb = array(b.weight)
    c = nn.Linear(a.in_features, b.out_features, bias=True, dtype=a.weight.dtype)
    return _with(c, wb @ wa, wb @ ba + _bias(b))


def fold_linear_pairs(gm: fx.GraphModule) -> tuple[fx.GraphModule, list[str]]:
    """``gm`` with every ``conv → [BatchNorm] → 1×1 conv`` (no rectifier between) merged into one convolution;
    a line per merge for the spec's provenance; ``gm`` itself is unchanged."""
    gm = copy.deepcopy(gm)
    notes: list[str] = []
    for node in list(gm.graph.nodes):
        found = ((k, m) for k in (nn.Conv2d, nn.Linear) if (m := module_of(node, gm, k)) is not None)
        kind, b = next(found, (None, None))
        if b is None or (kind is nn.Conv2d and not _pointwise(b)) or len(node.args) != 1 or node.kwargs:
            continue
        inner, bn_node = node.args[0], None
        bn = module_of(inner, gm, nn.BatchNorm2d if kind is nn.Conv2d else nn.BatchNorm1d)
        if bn is not None:
            if len(inner.users) != 1 or bn.running_mean is None or bn.running_var is None:
                continue
            bn_node, inner = inner, inner.args[0]
        a = module_of(inner, gm, kind)
        if a is None or len(inner.users) != 1 or getattr(a, "padding_mode", "zeros") != "zeros":
            continue
        if isinstance(getattr(a, "padding", 0), str):
            continue
        name = f"{node.target}_after_{inner.target}".replace(".", "_")
        gm.add_submodule(name, merged(a, bn, b) if kind is nn.Conv2d else merged_dense(a, bn, b))
        with gm.graph.inserting_before(node):
            new = gm.graph.call_module(name, inner.args)
        node.replace_all_uses_with(new)
        for dead in (node, bn_node, inner):
            if dead is not None:
                gm.graph.erase_node(dead)
        notes.append(f"`{inner.name}`{' → ' + bn_node.name if bn_node else ''} → `{node.name}` merged")
    if notes:
        gm.graph.lint()
        gm.recompile()
    return gm, notes


__all__ = ["fold_linear_pairs", "merged", "merged_dense"]
