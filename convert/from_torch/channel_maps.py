"""Channel maps folded into the layers that read them: ``x.chunk``, ``x[:, a:b]``, a channel shuffle.

A *channel map* is a chain of re-indexing ops (``view``/``reshape``, ``transpose``/``permute``,
``contiguous``, ``chunk``/``split`` and indexing into their result or into the tensor) whose result is
``s[:, idx]`` for a 4-d tensor ``s`` and an index array ``idx``: a channel selection (ShuffleNet's split), a
permutation (its shuffle) or both. Each map is found by running the graph once on one image with every tensor's
*positions* (``arange``) beside its values: a map's result holds, at each of its entries, the position of ``s``
it copies. A map is then

* dropped, where ``idx`` is every channel in order (a no-op ``view`` or ``contiguous``): its users read ``s``;
* folded into a ``Conv2d`` that reads it: the convolution reads ``s`` with its weights' input channels moved to
  ``idx`` (zeros elsewhere; a grouped convolution is expanded to groups 1 first), which computes the same;
* a :class:`ChannelSelect` of ``s`` where a ``torch.cat`` joins it (ShuffleNet's untouched half), which the
  sibling merge reads as a branch of no layers (:mod:`convert.from_torch.siblings`);
* left as it is for any other user (the reader then names what it cannot read).

A map that moves spatial positions (a transpose of H and W, a view that mixes channels and rows) is no channel
map and is left to the reader. :func:`fold_channel_maps` is a pure transform of a ``GraphModule`` whose shapes
were propagated (it returns a new one).
"""

from __future__ import annotations

import copy
import operator
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from convert.from_torch.refusals import target_name

_METHODS = {"view", "reshape", "transpose", "permute", "contiguous", "chunk", "split", "narrow"}
_CALLS = {torch.transpose, torch.reshape, torch.permute, torch.chunk, torch.split, torch.narrow, operator.getitem}


class ChannelSelect(nn.Module):
    """``x[:, index]``: the channels of ``x`` a map selects, in its order (a cat's branch of no layers)."""

    def __init__(self, index: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("index", torch.as_tensor(np.asarray(index), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.index)


#: the same re-indexings as ATen ops (an exported program, :mod:`convert.from_torch.modules`)
_ATEN = {
    "view.default",
    "_unsafe_view.default",
    "reshape.default",
    "transpose.int",
    "permute.default",
    "clone.default",
    "contiguous.default",
    "chunk.default",
    "split.Tensor",
    "split_with_sizes.default",
    "slice.Tensor",
    "narrow.default",
}


def _is_map(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in _METHODS
    if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
        return target_name(node.target) in _ATEN
    return node.op == "call_function" and node.target in _CALLS


class _Positions(fx.Interpreter):
    """Runs the graph, keeping beside each 4-d tensor ``t`` that a map reads (source, positions): for a tensor
    computed by a layer, itself and ``arange(t.numel())``; for a map of one, the map applied to its source's
    positions."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.positions: dict[fx.Node, tuple[fx.Node, Any]] = {}

    def run_node(self, n: fx.Node) -> Any:
        value = super().run_node(n)
        first = n.args[0] if n.args else None
        if _is_map(n) and isinstance(first, fx.Node) and first in self.positions:
            source, pos = self.positions[first]
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            args = (pos, *args[1:])
            result = getattr(pos, n.target)(*args[1:], **kwargs) if n.op == "call_method" else n.target(*args, **kwargs)
            self.positions[n] = (source, result)
        elif isinstance(value, torch.Tensor) and value.dim() == 4 and any(_is_map(u) for u in n.users):
            self.positions[n] = (n, torch.arange(value.numel()).view(value.shape))  # only where a map reads it
        return value


def channel_index(source_shape: tuple[int, ...], pos: Any) -> np.ndarray | None:
    """``idx`` where the positions ``pos`` of a map of a (N, C, H, W) source are ``source[:, idx]``; else None."""
    if not isinstance(pos, torch.Tensor) or pos.dim() != 4:
        return None
    n, c, h, w = source_shape
    if pos.shape[0] != n or tuple(pos.shape[2:]) != (h, w) or pos.shape[1] == 0:
        return None
    idx = (pos[0, :, 0, 0] // (h * w)).numpy()
    want = (
        torch.arange(n).view(n, 1, 1, 1) * (c * h * w)
        + torch.as_tensor(idx).view(1, -1, 1, 1) * (h * w)
        + torch.arange(h * w).view(1, 1, h, w)
    )
    return idx if torch.equal(pos, want) else None


def full_weight(w: torch.Tensor, groups: int, in_channels: int) -> torch.Tensor:
    """A convolution's (out, in/groups, kh, kw) weight ``w`` as groups 1: (out, in, kh, kw), zeros between groups."""
    if groups == 1:
        return w.clone()
    out = w.shape[0]
    full = torch.zeros(out, in_channels, *w.shape[2:], dtype=w.dtype)
    per_out, per_in = out // groups, in_channels // groups
    for k in range(groups):
        full[k * per_out : (k + 1) * per_out, k * per_in : (k + 1) * per_in] = w[k * per_out : (k + 1) * per_out]
    return full


def reading(conv: nn.Conv2d, idx: np.ndarray, channels: int) -> nn.Conv2d:
    """``conv`` reading all ``channels`` of the source of the map ``idx``: its input channel j moved to idx[j]
    (summed where a map repeats a channel), zeros elsewhere."""
    w = full_weight(conv.weight.detach(), conv.groups, conv.in_channels)
    moved = torch.zeros(w.shape[0], channels, *w.shape[2:], dtype=w.dtype)
    moved.index_add_(1, torch.as_tensor(idx, dtype=torch.long), w)
    out = nn.Conv2d(
        channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        dtype=w.dtype,
    )
    with torch.no_grad():
        out.weight.copy_(moved)
        if conv.bias is not None:
            out.bias.copy_(conv.bias.detach())
    return out.eval()


def _folds_into(user: fx.Node, node: fx.Node, gm: fx.GraphModule) -> nn.Conv2d | None:
    if user.op != "call_module" or user.args[:1] != (node,) or len(user.args) != 1 or user.kwargs:
        return None
    m = gm.get_submodule(user.target)
    if type(m) is not nn.Conv2d or m.padding_mode != "zeros" or isinstance(m.padding, str):
        return None
    return m


def fold_channel_maps(gm: fx.GraphModule, example: torch.Tensor) -> tuple[fx.GraphModule, list[str]]:
    """``gm`` with its channel maps folded (module docstring), run on ``example`` to find them; a line per map
    folded, for the spec's provenance; ``gm`` itself is unchanged."""
    gm = copy.deepcopy(gm)
    runner = _Positions(gm)
    with torch.no_grad():
        runner.run(example)
    notes: list[str] = []
    for node in list(gm.graph.nodes):
        if not _is_map(node) or node not in runner.positions:
            continue
        source, pos = runner.positions[node]
        meta = source.meta.get("tensor_meta")
        shape = tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None
        idx = None if shape is None or len(shape) != 4 else channel_index(shape, pos)
        if idx is None:
            continue
        channels = shape[1]
        if np.array_equal(idx, np.arange(channels)):
            node.replace_all_uses_with(source)
            notes.append(f"`{node.name}`: a no-op re-indexing of `{source.name}`, dropped")
            continue
        done = []
        for user in list(node.users):
            conv = _folds_into(user, node, gm)
            if conv is not None:
                name = f"{user.name}_reads_{source.name}"  # the node's name: one module per call
                gm.add_submodule(name, reading(conv, idx, channels))
                with gm.graph.inserting_before(user):
                    user.replace_all_uses_with(gm.graph.call_module(name, (source,)))
                gm.graph.erase_node(user)
                done.append(f"into `{user.name}`")
            elif user.op == "call_function" and user.target in (torch.cat, torch.concat):
                name = f"select_{node.name}"
                gm.add_submodule(name, ChannelSelect(idx))
                with gm.graph.inserting_before(user):
                    user.replace_input_with(node, gm.graph.call_module(name, (source,)))
                done.append(f"as channels {_ranges(idx)} of `{source.name}` into `{user.name}`")
        if done:
            notes.append(f"`{node.name}` (channels {_ranges(idx)} of `{source.name}`): " + ", ".join(done))
    _drop_dead(gm)
    gm.graph.lint()
    gm.recompile()
    return gm, notes


def _ranges(idx: np.ndarray) -> str:
    """``0..57`` for a run, else the first few indices."""
    if len(idx) > 1 and np.all(np.diff(idx) == 1):
        return f"{idx[0]}..{idx[-1]}"
    head = ", ".join(str(int(i)) for i in idx[:4])
    return f"[{head}{', ...' if len(idx) > 4 else ''}] ({len(idx)})"


def _drop_dead(gm: fx.GraphModule) -> None:
    """Erase the maps and shape queries no node uses any more."""
    changed = True
    while changed:
        changed = False
        for node in reversed(list(gm.graph.nodes)):
            pure = _is_map(node) or (node.op == "call_method" and node.target in ("size", "dim"))
            pure = pure or (node.op == "call_function" and node.target in (operator.floordiv, getattr))
            if pure and not node.users:
                gm.graph.erase_node(node)
                changed = True


__all__ = ["ChannelSelect", "channel_index", "fold_channel_maps", "full_weight", "reading"]
