"""The merged levels of a concatenation's branches: the convolutions that compute, level by level, what the
branches of one ``torch.cat`` compute (:mod:`convert.from_torch.siblings` finds the branches and rewrites the
graph; its docstring gives the rules). A pure computation on the branches' modules: shorter branches relayed
after their last layer (:func:`merged_levels`' first choice), or, where that does not align, joined to the last
level as its skip edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from convert.from_torch.rules import array, folded


@dataclass
class Branch:
    """One branch of a cat: its layers from the shared input up (conv, BatchNorm or None), its nodes from the
    cat down (each used only by the one before it), and its max-pool of the input, if it starts with one."""

    layers: list[tuple[nn.Conv2d, nn.BatchNorm2d | None]] = field(default_factory=list)
    nodes: list[fx.Node] = field(default_factory=list)
    pool: fx.Node | None = None
    x: Any = None
    select: np.ndarray | None = None  # a branch of no layers: these channels of x (a ChannelSelect)


def _embed(w: np.ndarray, k: int) -> np.ndarray:
    """A (O, C, kh, kw) kernel at the centre of a k×k one (zeros around it)."""
    out = np.zeros((*w.shape[:2], k, k))
    o = (k - w.shape[2]) // 2
    out[:, :, o : o + w.shape[2], o : o + w.shape[3]] = w
    return out


def _conv(
    weight: np.ndarray, bias: np.ndarray, stride: tuple[int, int], margin: tuple[int, int], dtype: torch.dtype
) -> nn.Conv2d:
    """An ``nn.Conv2d`` (eval) with ``weight`` and ``bias``, padded for ``kernel − 2·padding`` = margin."""
    o, c, k, _ = weight.shape
    pad = ((k - margin[0]) // 2, (k - margin[1]) // 2)
    conv = nn.Conv2d(c, o, k, stride=stride, padding=pad, bias=True, dtype=dtype)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight))
        conv.bias.copy_(torch.from_numpy(bias))
    return conv.eval()


def _aligned(layers: list[nn.Conv2d]) -> tuple[tuple[int, int], tuple[int, int], int] | None:
    """(stride, margin, kernel) of one level's convolutions, or None if their outputs do not align."""
    strides = {tuple(c.stride) for c in layers}
    margins = {(c.kernel_size[0] - 2 * c.padding[0], c.kernel_size[1] - 2 * c.padding[1]) for c in layers}
    if len(strides) != 1 or len(margins) != 1:
        return None
    return strides.pop(), margins.pop(), max(c.kernel_size[0] for c in layers)


def _width(b: Branch, lvl: int) -> int:
    """The channels of branch ``b`` at level ``lvl`` (its last layer's, or its selection's, past its end)."""
    if not b.layers:
        return len(b.select)
    return b.layers[min(lvl, len(b.layers) - 1)][0].out_channels


def _trailing(branches: list[Branch]) -> list[tuple[nn.Conv2d, nn.Conv2d | None]] | None:
    """The levels with every shorter branch relayed after its last layer (module docstring), or None."""
    depth = max(len(b.layers) for b in branches)
    dtype = next(b.layers[0][0].weight.dtype for b in branches if b.layers)
    levels: list[tuple[nn.Conv2d, nn.Conv2d | None]] = []
    below: list[int] = []  # the channels of level l − 1, branch by branch
    for lvl in range(depth):
        present = [b.layers[lvl][0] for b in branches if len(b.layers) > lvl]
        relayed = len(present) < len(branches)
        shape = _aligned(present)
        if shape is None or (relayed and shape[:2] != ((1, 1), (1, 1))):
            return None
        stride, margin, k = shape
        outs = [_width(b, lvl) for b in branches]
        ins = sum(below) if lvl else present[0].in_channels
        if lvl == 0 and len({c.in_channels for c in present}) != 1:
            return None
        if lvl == 0 and any(b.select is not None and (b.select.max() >= ins) for b in branches):
            return None
        has_pool = lvl == 0 and any(b.pool is not None for b in branches)
        weight = np.zeros((sum(outs), ins, k, k))
        pooled = np.zeros_like(weight) if has_pool else None
        bias = np.zeros(sum(outs))
        row = col = 0
        for i, (b, out) in enumerate(zip(branches, outs, strict=True)):
            if len(b.layers) > lvl:
                conv, bn = b.layers[lvl]
                w, bb = folded(conv, bn)
                if lvl and conv.in_channels != below[i]:
                    return None
                target = pooled if (lvl == 0 and b.pool is not None) else weight
                cols = slice(0, ins) if lvl == 0 else slice(col, col + conv.in_channels)
                target[row : row + out, cols] = _embed(w, k)
                bias[row : row + out] = bb
            elif lvl == 0:  # a branch of no layers: the identity from its channels of x
                weight[row + np.arange(out), b.select, k // 2, k // 2] = 1.0
            else:  # a relay: the identity on the branch's own channels
                weight[row : row + out, col : col + out, k // 2, k // 2] = np.eye(out)
            row += out
            col += below[i] if lvl else 0
        zero = np.zeros(sum(outs))
        levels.append(
            (
                _conv(weight, zero if has_pool else bias, stride, margin, dtype),
                _conv(pooled, bias, stride, margin, dtype) if has_pool else None,
            )
        )
        below = outs
    return levels


def _margin(conv: nn.Conv2d) -> tuple[int, int]:
    return conv.kernel_size[0] - 2 * conv.padding[0], conv.kernel_size[1] - 2 * conv.padding[1]


def _with_skip(branches: list[Branch]) -> tuple[list[tuple[nn.Conv2d, nn.Conv2d | None]], nn.Conv2d] | None:
    """The levels of the longest branches, the others (of at most one layer each) joining the last level as
    one convolution of x (the last population's skip edge; module docstring), or None."""
    depth = max(len(b.layers) for b in branches)
    full = [b for b in branches if len(b.layers) == depth]
    short = [b for b in branches if len(b.layers) < depth]
    if depth < 2 or not short or any(len(b.layers) > 1 for b in short) or any(b.pool is not None for b in branches):
        return None
    levels = _trailing(full)
    convs = [b.layers[0][0] for b in short if b.layers]
    shape = _aligned(convs) if convs else ((1, 1), (1, 1), 1)
    if levels is None or shape is None:
        return None
    stride, margin, k = shape
    ins = full[0].layers[0][0].in_channels
    if any(c.in_channels != ins for c in convs):
        return None
    if any(b.select is not None and (margin != (1, 1) or stride != (1, 1) or b.select.max() >= ins) for b in short):
        return None
    last = levels[-1][0]
    lw, lb = array(last.weight), array(last.bias)
    total = sum(_width(b, depth - 1) for b in branches)
    trunk = np.zeros((total, *lw.shape[1:]))
    skip = np.zeros((total, ins, k, k))
    bias = np.zeros(total)
    row = got = 0
    for b in branches:
        out = _width(b, depth - 1)
        if b in full:
            trunk[row : row + out], bias[row : row + out] = lw[got : got + out], lb[got : got + out]
            got += out
        elif b.layers:
            w, bias[row : row + out] = folded(*b.layers[0])
            skip[row : row + out] = _embed(w, k)
        else:
            skip[row + np.arange(out), b.select, k // 2, k // 2] = 1.0
        row += out
    dtype = last.weight.dtype
    levels[-1] = (_conv(trunk, bias, tuple(last.stride), _margin(last), dtype), None)
    return levels, _conv(skip, np.zeros(total), stride, margin, dtype)


def merged_levels(
    branches: list[Branch],
) -> tuple[list[tuple[nn.Conv2d, nn.Conv2d | None]], nn.Conv2d | None] | None:
    """Per level, the merged convolution of what it reads below (``x`` at level 1) and, at level 1 with a
    pooled branch, the convolution of the max-pool; and the convolution of ``x`` into the last level where the
    shorter branches join there (module docstring); None if the branches do not align either way."""
    levels = _trailing(branches)
    if levels is not None:
        return levels, None
    return _with_skip(branches)


__all__ = ["Branch", "merged_levels"]
