"""DenseNet's concatenations read by a BatchNorm and ReLU: one population per reader and joined piece.

In a dense block every layer reads ``relu(bn(cat(x_0, f_1, …, f_{k−1})))``: the concatenation of the block's
input and every earlier layer's *unrectified* convolution output, normalized by the reader's own BatchNorm.
No population holds the concatenation (its pieces are not rectified), and each reader's BatchNorm is its own,
so the spiking network needs, per reader and per piece, a population of its own:

    N_{k,i} = relu(a_{k,i} ⊙ piece_i + b_{k,i}),

where (a, b) is the reader's BatchNorm on the piece's channels. Each piece is a linear form of rectified values
(:func:`_form`): a rectified tensor (a gain per channel), a convolution of one (its weights, rows scaled by a),
an average pool of 1×1 convolutions (a transition's output: one k×k stride-k convolution per term, W / k²), or a
sum of such. So N_{k,i} is a :class:`convert.layers.neurons.Neurons` population fed by one skip edge per term
(:class:`NeuronsInput` marks it in the graph for the reader). What read the ReLU then reads the populations:
a convolution (and the BatchNorm after it, folded) becomes one convolution per piece, summed (the first reads
the last population on the chain, the others are skip edges); the classifier after a global average pool and a
flatten becomes one H×W convolution per piece (output (classes, 1, 1), the flatten after it dropped); a
transition's convolution becomes a sum that the next block's pieces read through its average pool.

Exactly the model's function (a sum of the same products, in float64 up to rounding; BatchNorm folded). The
price is the populations: one per reader and piece, a quadratic number in the block's depth (densenet121: about
650 populations), and one edge per term. A cat whose readers or pieces fall outside this is left to the reader,
which refuses it with its reason.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from convert.from_torch import rules
from convert.from_torch.refusals import node_shape
from convert.from_torch.rules import array, module_of

CATS = {torch.cat, torch.concat}


class NeuronsInput(nn.Module):
    """A population fed only by the edges added to this node (:class:`convert.layers.neurons.Neurons`): zeros of
    ``shape`` per sample; the reader starts a ``Neurons`` layer here."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(int(d) for d in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros((x.shape[0], *self.shape))


@dataclass
class Term:
    """One rectified value ``source`` through a map: a gain per channel (``gain``), or a convolution
    (``weight``, ``stride``, ``padding``)."""

    source: fx.Node
    gain: np.ndarray | None = None
    weight: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    def scaled(self, a: np.ndarray) -> Term:
        """The term with its output channels multiplied by ``a``."""
        if self.gain is not None:
            return Term(self.source, gain=self.gain * a)
        return Term(self.source, weight=self.weight * a.reshape(-1, 1, 1, 1), stride=self.stride, padding=self.padding)

    def module(self, bias: np.ndarray | None, dtype: torch.dtype) -> nn.Conv2d:
        """The term as a torch convolution (a depthwise 1×1 for gains), with ``bias``."""
        if self.gain is not None:
            c = len(self.gain)
            conv = nn.Conv2d(c, c, 1, groups=c, bias=bias is not None)
            weight = self.gain.reshape(c, 1, 1, 1)
        else:
            oc, ic, kh, kw = self.weight.shape
            conv = nn.Conv2d(ic, oc, (kh, kw), self.stride, self.padding, bias=bias is not None)
            weight = self.weight
        conv = conv.to(dtype)
        with torch.no_grad():
            conv.weight.copy_(torch.as_tensor(weight, dtype=dtype))
            if bias is not None:
                conv.bias.copy_(torch.as_tensor(bias, dtype=dtype))
        return conv


def _kind(node: Any, gm: fx.GraphModule) -> tuple[str | None, dict[str, Any]]:
    """The reader's rule name of a node (``relu``, ``max_pool2d``, ``avg_pool2d``, ...) and its arguments."""
    found = rules.for_node(node, gm)
    return (None, {}) if found is None else (found[0].name, found[1])


def _is_relu(node: fx.Node, gm: fx.GraphModule) -> bool:
    return _kind(node, gm)[0] == "relu"


def _is_tap(node: fx.Node, gm: fx.GraphModule) -> bool:
    """A rectified value: a ReLU's output, or a max-pool of one (the spike gate)."""
    if _is_relu(node, gm):
        return True
    return _kind(node, gm)[0] == "max_pool2d" and isinstance(node.args[0], fx.Node) and _is_tap(node.args[0], gm)


def _square(value: Any) -> int | None:
    """An int, or a pair of equal ints, as one int; None otherwise."""
    if isinstance(value, int):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2 and value[0] == value[1] and isinstance(value[0], int):
        return value[0]
    return None


def _form(node: fx.Node, gm: fx.GraphModule) -> tuple[list[Term], np.ndarray] | None:
    """The piece ``node`` as terms of rectified values and a constant per channel, or None if it is not one."""
    if _is_tap(node, gm):
        shape = node_shape(node)
        if len(shape) != 4:
            return None
        return [Term(node, gain=np.ones(shape[1]))], np.zeros(shape[1])
    if node.op == "call_function" and node.target in (operator.add, torch.add) and len(node.args) == 2:
        parts = [_form(a, gm) if isinstance(a, fx.Node) else None for a in node.args]
        if any(p is None for p in parts):
            return None
        return parts[0][0] + parts[1][0], parts[0][1] + parts[1][1]
    conv = module_of(node, gm, nn.Conv2d)
    if _plain(conv):
        source = node.args[0]
        if not (isinstance(source, fx.Node) and _is_tap(source, gm)):
            return None
        bias = np.zeros(conv.out_channels) if conv.bias is None else array(conv.bias)
        term = Term(source, weight=array(conv.weight), stride=tuple(conv.stride), padding=tuple(conv.padding))
        return [term], bias
    kind, a = _kind(node, gm)
    if kind == "avg_pool2d" and isinstance(node.args[0], fx.Node):
        k = _square(a.get("kernel_size"))
        s = k if a.get("stride") in (None, []) else _square(a.get("stride"))
        if k is None or s != k or _square(a.get("padding") or 0) != 0 or a.get("ceil_mode"):
            return None
        inner = _form(node.args[0], gm)
        if inner is None or any(t.weight is None or t.weight.shape[2:] != (1, 1) for t in inner[0]):
            return None
        if any(t.stride != (1, 1) or t.padding != (0, 0) for t in inner[0]):
            return None
        # a mean of k×k outputs of a 1×1 convolution is one k×k stride-k convolution with W / k²
        terms = [
            Term(t.source, weight=np.repeat(np.repeat(t.weight, k, 2), k, 3) / k**2, stride=(k, k)) for t in inner[0]
        ]
        return terms, inner[1]
    return None


def _affine(bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """An eval-mode BatchNorm as x ↦ a·x + b per channel (float64)."""
    n = bn.num_features
    gamma = np.ones(n) if bn.weight is None else array(bn.weight)
    beta = np.zeros(n) if bn.bias is None else array(bn.bias)
    a = gamma / np.sqrt(array(bn.running_var) + float(bn.eps))
    return a, beta - array(bn.running_mean) * a


def _only_user(node: fx.Node) -> fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


@dataclass
class Reader:
    """One BatchNorm → ReLU reading the cat, and how what reads the ReLU becomes sums over the pieces."""

    bn: fx.Node
    relu: fx.Node
    consumers: list[tuple[str, list[fx.Node]]]  # ("conv", [conv, bn?]) | ("head", [pool, flatten, linear])


def _plain(conv: nn.Conv2d | None) -> bool:
    """A convolution that one Term holds: no groups, no dilation, zero padding given as numbers."""
    if conv is None or conv.groups != 1 or conv.dilation != (1, 1) or conv.padding_mode != "zeros":
        return False
    return not isinstance(conv.padding, str)


def _consumers(relu: fx.Node, gm: fx.GraphModule) -> list[tuple[str, list[fx.Node]]] | None:
    """What reads the ReLU, as it can be split over the pieces: a convolution (and the BatchNorm after it), or
    a global average pool, a flatten and a Linear (the classifier); None for anything else."""
    out = []
    for user in relu.users:
        if _plain(module_of(user, gm, nn.Conv2d)):
            nxt = _only_user(user)
            bn = nxt if nxt is not None and module_of(nxt, gm, nn.BatchNorm2d) is not None else None
            out.append(("conv", [user] if bn is None else [user, bn]))
            continue
        pool, flat = user, _only_user(user)
        linear = _only_user(flat) if flat is not None else None
        kind, a = _kind(pool, gm)
        global_pool = kind == "adaptive_avg_pool2d" and _square(a.get("output_size")) == 1
        if global_pool and _kind(flat, gm)[0] == "flatten" and module_of(linear, gm, nn.Linear) is not None:
            out.append(("head", [pool, flat, linear]))
            continue
        return None
    return out


def _readers(cat: fx.Node, gm: fx.GraphModule) -> list[Reader] | None:
    readers = []
    for user in cat.users:
        if module_of(user, gm, nn.BatchNorm2d) is None or gm.get_submodule(user.target).training:
            return None
        relu = _only_user(user)
        if relu is None or not _is_relu(relu, gm):
            return None
        consumers = _consumers(relu, gm)
        if consumers is None:
            return None
        readers.append(Reader(user, relu, consumers))
    return readers


class _Builder:
    """Adds modules and nodes to the graph, before ``at``."""

    def __init__(self, gm: fx.GraphModule, x: fx.Node, dtype: torch.dtype) -> None:
        self.gm, self.x, self.dtype, self.count = gm, x, dtype, 0

    def call(self, module: nn.Module, arg: fx.Node, stem: str) -> fx.Node:
        self.count += 1
        name = f"dense_cat_{stem}_{self.count}"
        self.gm.add_submodule(name, module)
        return self.gm.graph.call_module(name, (arg,))

    def add(self, a: fx.Node, b: fx.Node) -> fx.Node:
        return self.gm.graph.call_function(operator.add, (a, b))

    def population(self, terms: list[Term], bias: np.ndarray, shape: tuple[int, ...]) -> fx.Node:
        """relu(Σ terms + bias) as a Neurons population: the marker, one edge per term, the ReLU."""
        s = self.call(NeuronsInput(shape), self.x, "neurons")
        for j, t in enumerate(terms):
            s = self.add(s, self.call(t.module(bias if j == 0 else None, self.dtype), t.source, "edge"))
        return self.call(nn.ReLU(), s, "relu")

    def sum_of(self, pieces: list[tuple[fx.Node, Term]], bias: np.ndarray) -> fx.Node:
        """Σ terms + bias, the first term reading the last population (the chain), the others skip edges."""
        order = [pieces[-1], *pieces[:-1]]
        s = None
        for j, (_, t) in enumerate(order):
            c = self.call(t.module(bias if j == 0 else None, self.dtype), t.source, "sum")
            s = c if s is None else self.add(s, c)
        return s


def _split(weight: np.ndarray, pops: list[tuple[fx.Node, int, int]]) -> list[tuple[fx.Node, np.ndarray]]:
    """A reader's weights (out, C, …) split by the pieces' input channels."""
    return [(relu, weight[:, o : o + c]) for relu, o, c in pops]


def _rewrite(cat: fx.Node, forms: list, readers: list[Reader], gm: fx.GraphModule, b: _Builder) -> None:
    shapes = [node_shape(p) for p in cat.args[0]]
    offsets = np.concatenate([[0], np.cumsum([s[1] for s in shapes])]).astype(int)
    for r in readers:
        a, shift = _affine(gm.get_submodule(r.bn.target))
        with gm.graph.inserting_before(r.relu):
            pops = []
            for i, ((terms, const), shape) in enumerate(zip(forms, shapes, strict=True)):
                lo, hi = offsets[i], offsets[i + 1]
                scaled = [t.scaled(a[lo:hi]) for t in terms]
                relu = b.population(scaled, a[lo:hi] * const + shift[lo:hi], tuple(shape[1:]))
                pops.append((relu, int(lo), int(hi - lo)))
        for kind, nodes in r.consumers:
            last = nodes[-1]
            with gm.graph.inserting_before(last):
                if kind == "conv":
                    conv = gm.get_submodule(nodes[0].target)
                    bn = gm.get_submodule(nodes[1].target) if len(nodes) > 1 else None
                    w = array(conv.weight)
                    bias = np.zeros(w.shape[0]) if conv.bias is None else array(conv.bias)
                    if bn is not None:  # the BatchNorm after the convolution, folded into every piece's
                        s, t = _affine(bn)
                        w, bias = w * s.reshape(-1, 1, 1, 1), bias * s + t
                    stride, padding = tuple(conv.stride), tuple(conv.padding)
                    terms = [(rl, Term(rl, weight=wi, stride=stride, padding=padding)) for rl, wi in _split(w, pops)]
                    out = b.sum_of(terms, bias)
                else:  # global average pool → flatten → Linear: one H×W convolution per piece, then the flatten
                    linear = gm.get_submodule(nodes[2].target)
                    h, wd = node_shape(r.relu)[2:]
                    w = array(linear.weight)[:, :, None, None] * np.ones((1, 1, h, wd)) / (h * wd)
                    bias = np.zeros(w.shape[0]) if linear.bias is None else array(linear.bias)
                    out = b.sum_of([(rl, Term(rl, weight=wi)) for rl, wi in _split(w, pops)], bias)
                    out = gm.graph.call_function(torch.flatten, (out, 1))
            last.replace_all_uses_with(out)


def split_dense_cats(gm: fx.GraphModule, propagate: Callable[[], None]) -> tuple[fx.GraphModule, list[str]]:
    """Every cat that only BatchNorm → ReLU pairs read, whose pieces are linear forms of rectified values,
    rewritten as one population per reader and piece (module docstring); returns the graph and the cats it
    rewrote. Needs the shapes (``node.meta["tensor_meta"]``); ``propagate()`` sets them again after each
    rewrite (the next cat's pieces may read the nodes it added)."""
    x = next((n for n in gm.graph.nodes if n.op == "placeholder"), None)
    param = next(iter(gm.parameters()), None)
    if x is None or param is None:
        return gm, []
    builder, done = _Builder(gm, x, param.dtype), []
    for cat in list(gm.graph.nodes):
        if cat.op != "call_function" or cat.target not in CATS or not isinstance(cat.args[0], (list, tuple)):
            continue
        dim = cat.args[1] if len(cat.args) > 1 else cat.kwargs.get("dim", 0)
        if dim not in (1, -3) or not cat.users:
            continue
        forms = [_form(p, gm) if isinstance(p, fx.Node) else None for p in cat.args[0]]
        readers = _readers(cat, gm)
        if readers is None or any(f is None for f in forms):
            continue
        _rewrite(cat, forms, readers, gm, builder)
        done.append(cat.name)
        gm.graph.eliminate_dead_code()
        gm.graph.lint()
        gm.recompile()
        gm.eval()
        propagate()
    return gm, done
