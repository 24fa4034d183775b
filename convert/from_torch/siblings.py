"""Parallel branches merged into layers: ``torch.cat([branch_1(x), branch_2(x), ...], dim=1)``.

A branch is a chain of rectified convolutions, ``relu([bn](conv(...)))`` one or more times, that reads the
tensor ``x`` all branches share, or, on at most one branch, a size-keeping max-pool of ``x`` (stride 1,
``kernel − 2·padding`` = 1: GoogLeNet's pool projection). SqueezeNet's Fire module is two branches of one layer;
GoogLeNet's inception four branches of one or two. The concatenation computes exactly what a chain of merged
layers does, level by level:

* level 1: one population whose channels are every branch's first convolution in order: one convolution of
  ``x`` into the rows of the branches that read ``x``, plus, for the pooled branch, its convolution of the
  max-pool into its own rows (a second edge into the same population: the spec's skip edge, the pool the
  max-pool gate in the chain before it). Each branch's kernel sits at the centre of the level's largest kernel
  (zeros around it), its padding grown by the same margin; each branch's eval-mode BatchNorm is folded into
  its rows;
* level l ≥ 2: one population reading level l − 1, block by block: branch b's l-th convolution reads only b's
  channels. A branch with fewer than l layers is *relayed*: a 1×1 identity into its own channels, ReLU after
  it. relu(1 · y) = y for a rectified y, so the ANN is unchanged; in the SNN a relay neuron is one more
  integrate-and-fire neuron between the branch and the concatenation.

Where the pooled branch's ``x`` is itself a max-pool output (GoogLeNet's inceptions after a stride-2 pool), a
max-pool gate cannot read a gate: ``x`` is relayed first (a depthwise 1×1 identity population with ReLU: one
synapse of weight 1 per neuron). The last
level's ReLU then stands for the cat: one population, the union of the branches', in the cat's channel order.
The zeros around a smaller kernel and the off-block zeros of a level ≥ 2 are no synapses of the ANN but
weight-0 entries of the merged kernels; they add nothing to any current.

The branches of one level must agree in stride and in ``kernel − 2·padding`` (one output size, an exact centred
placement; a relay needs stride 1 and ``kernel − 2·padding`` = 1); each layer must be a plain ``nn.Conv2d``
(groups 1, dilation 1, zero padding) with its [BatchNorm] and ReLU, each node used only by the one after it.
Anything else is left to the reader, which names what it cannot read. :func:`merge_siblings` is a pure
transform of a ``GraphModule`` (it returns a new one).
"""

from __future__ import annotations

import copy
import operator
from typing import Any

import torch
from torch import fx, nn

from convert.from_torch import rules
from convert.from_torch.channel_maps import ChannelSelect
from convert.from_torch.levels import Branch, merged_levels
from convert.from_torch.reader import CATS, DROP_MODULES
from convert.from_torch.rules import RELUS, module_of


def _is_relu(node: fx.Node, gm: fx.GraphModule) -> bool:
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)) is nn.ReLU
    if node.op == "call_function":
        return node.target in RELUS
    return node.op == "call_method" and node.target in ("relu", "relu_")


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


def _level(item: Any, gm: fx.GraphModule) -> tuple[fx.Node, nn.Conv2d, nn.BatchNorm2d | None, list[fx.Node]] | None:
    """(input x, conv, BatchNorm or None, the level's nodes) of ``relu([bn](conv(x)))`` (dropped modules
    anywhere between), or None."""
    nodes: list[fx.Node] = []
    item = _passed(item, gm, nodes)
    if not isinstance(item, fx.Node) or not _is_relu(item, gm) or len(item.users) != 1:
        return None
    nodes.append(item)
    inner = _passed(item.args[0], gm, nodes)
    bn = module_of(inner, gm, nn.BatchNorm2d)
    if bn is not None:
        if len(inner.users) != 1 or bn.running_mean is None or bn.running_var is None:
            return None
        nodes.append(inner)
        inner = _passed(inner.args[0], gm, nodes)
    conv = module_of(inner, gm, nn.Conv2d)
    if conv is None or len(inner.users) != 1 or not isinstance(inner.args[0], fx.Node):
        return None
    if conv.groups != 1 or tuple(conv.dilation) != (1, 1) or conv.padding_mode != "zeros":
        return None
    if isinstance(conv.padding, str) or conv.kernel_size[0] != conv.kernel_size[1]:
        return None
    nodes.append(inner)
    return inner.args[0], conv, bn, nodes


def _maxpool_args(node: Any, gm: fx.GraphModule) -> dict[str, Any] | None:
    """A max-pool node's arguments by name, as the reader's max-pool rule reads them; None for any other node."""
    found = rules.for_node(node, gm)
    return found[1] if found is not None and found[0].name == "max_pool2d" else None


def _pool_of(node: Any, gm: fx.GraphModule) -> tuple[int, int, int] | None:
    """(kernel, stride, padding) of a square max-pool node with dilation 1 used once, or None."""
    a = _maxpool_args(node, gm)
    if a is None or len(node.users) != 1:
        return None
    k, st, p, d = a["kernel_size"], a.get("stride") or a["kernel_size"], a.get("padding", 0), a.get("dilation", 1)
    k, st, p, d = (v if isinstance(v, (tuple, list)) else (v, v) for v in (k, st, p, d))
    if len({*k}) != 1 or len({*st}) != 1 or len({*p}) != 1 or tuple(d) != (1, 1):
        return None
    return int(k[0]), int(st[0]), int(p[0])


def _branch(item: Any, gm: fx.GraphModule) -> Branch | None:
    """The branch whose output is ``item``: its levels down to a node used by other branches too (the shared
    input) or to a size-keeping max-pool of it; a branch of no layers where ``item`` is a
    :class:`~convert.from_torch.channel_maps.ChannelSelect` of the shared input; None if ``item`` is neither
    that nor a rectified convolution."""
    b = Branch()
    node = _passed(item, gm, b.nodes)
    select = module_of(node, gm, ChannelSelect)
    if select is not None and len(node.users) == 1 and isinstance(node.args[0], fx.Node):
        b.nodes.append(node)
        b.select, b.x = select.index.numpy().copy(), node.args[0]
        return b
    b = Branch()
    node = item
    while (level := _level(node, gm)) is not None:
        node, conv, bn, nodes = level
        b.layers.insert(0, (conv, bn))
        b.nodes += nodes
    if not b.layers:
        return None
    node = _passed(node, gm, b.nodes)
    pool = _pool_of(node, gm)
    if pool is not None and pool[1] == 1 and pool[0] - 2 * pool[2] == 1 and isinstance(node.args[0], fx.Node):
        b.pool, node = node, node.args[0]
    b.x = node
    return b


def _identity(channels: int, dtype: torch.dtype) -> nn.Conv2d:
    """A relay: the depthwise 1×1 identity (one synapse of weight 1 per neuron)."""
    conv = nn.Conv2d(channels, channels, 1, groups=channels, bias=False, dtype=dtype)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    return conv.eval()


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


def _branches(items: list[Any], gm: fx.GraphModule) -> list[Branch] | None:
    """The cat's branches if they merge: every item a branch, one shared input, at most one pooled branch, and
    a pooled branch's input a ReLU or max-pool output (a relay then stands for the latter)."""
    branches = [_branch(item, gm) for item in items]
    if any(b is None for b in branches) or len({b.x for b in branches}) != 1:
        return None
    pooled = [b for b in branches if b.pool is not None]
    if len(pooled) > 1 or len(pooled) == len(branches):
        return None
    selected = any(b.select is not None for b in branches)  # relu(x[:, idx]) = x[:, idx] needs a rectified x
    if (pooled or selected) and not (_is_relu(branches[0].x, gm) or _maxpool_args(branches[0].x, gm) is not None):
        return None
    return branches


def _emit(
    gm: fx.GraphModule, node: fx.Node, branches: list[Branch], found: tuple, x: Any, pool: Any, relays: list[str]
) -> fx.Node:
    """The merged levels of the cat ``node`` into ``gm`` (at the insertion point); their last ReLU."""
    levels, skip = found
    name, r = f"merged_{node.name}", x
    for lvl, (conv, pooled) in enumerate(levels):
        gm.add_submodule(f"{name}_{lvl + 1}", conv)
        gm.add_submodule(f"{name}_{lvl + 1}_relu", nn.ReLU())
        c = gm.graph.call_module(f"{name}_{lvl + 1}", (r,))
        if pooled is not None:  # the pooled branch's edge on the chain, the others' as its skip
            gm.add_submodule(f"{name}_{lvl + 1}_pooled", pooled)
            c = gm.graph.call_function(operator.add, (gm.graph.call_module(f"{name}_{lvl + 1}_pooled", (pool,)), c))
        if skip is not None and lvl == len(levels) - 1:  # the shorter branches, as the last level's skip
            gm.add_submodule(f"{name}_{lvl + 1}_skip", skip)
            c = gm.graph.call_function(
                operator.add, (c, gm.graph.call_module(f"{name}_{lvl + 1}_skip", (branches[0].x,)))
            )
        r = gm.graph.call_module(f"{name}_{lvl + 1}_relu", (c,))
        short = [i + 1 for i, b in enumerate(branches) if len(b.layers) <= lvl]
        if short and skip is None:
            relays.append(f"`{node.name}`: branch(es) {short} relayed at level {lvl + 1}")
    if skip is not None:
        short = [i + 1 for i, b in enumerate(branches) if len(b.layers) < len(levels)]
        relays.append(f"`{node.name}`: branch(es) {short} join level {len(levels)} as its skip edge")
    return r


def merge_siblings(gm: fx.GraphModule) -> tuple[fx.GraphModule, list[str], list[str]]:
    """``gm`` with every concatenation of parallel branches replaced by its merged levels (module docstring);
    the names of the cats merged and a line per relay population added (for the spec's provenance); ``gm``
    itself is unchanged."""
    gm = copy.deepcopy(gm)
    merged: list[str] = []
    relays: list[str] = []
    for node in list(gm.graph.nodes):
        items = _cat_items(node)
        if items is None or len(items) < 2:
            continue
        branches = _branches(items, gm)
        found = None if branches is None else merged_levels(branches)
        if found is None:
            continue
        levels = found[0]
        name, x = f"merged_{node.name}", branches[0].x
        pool = next((b.pool for b in branches if b.pool is not None), None)
        if pool is not None and not _is_relu(x, gm):  # a gate cannot read a gate: relay the max-pool output
            gm.add_submodule(f"{name}_relay", _identity(levels[0][0].in_channels, levels[0][0].weight.dtype))
            gm.add_submodule(f"{name}_relay_relu", nn.ReLU())
            with gm.graph.inserting_before(pool):
                x = gm.graph.call_module(f"{name}_relay_relu", (gm.graph.call_module(f"{name}_relay", (x,)),))
            pool.replace_input_with(branches[0].x, x)
            relays.append(f"`{node.name}`: `{branches[0].x.name}` relayed before the max-pool `{pool.name}`")
        with gm.graph.inserting_before(node):
            r = _emit(gm, node, branches, found, x, pool, relays)
        node.replace_all_uses_with(r)
        gm.graph.erase_node(node)
        for b in branches:
            for n in b.nodes:  # from the cat down to the lowest conv: each used only by the one before it
                gm.graph.erase_node(n)
        merged.append(node.name)
    if merged:
        gm.graph.lint()
        gm.recompile()
    return gm, merged, relays


__all__ = ["merge_siblings"]
