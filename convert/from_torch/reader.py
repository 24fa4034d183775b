"""The torch.fx graph reader: walks a traced (or exported) graph along its one chain of tensors and its skip
branches, node by node, into :class:`~convert.from_torch.ops.Op` s. Each layer's node is read by its kind's rule
(:mod:`convert.from_torch.rules`); the reader keeps what is not a layer: the chain and its skip branches,
dropped nodes, residual sums, the softmax head and the input's normalization. Anything without a spiking
equivalent is a :class:`SpecError` naming the node and its op."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from convert.contract.spec import SpecError
from convert.from_torch import rules
from convert.from_torch.channel_maps import ChannelSelect
from convert.from_torch.dense_cats import NeuronsInput
from convert.from_torch.ops import Op
from convert.from_torch.refusals import (
    EVAL_FIRST,
    TRAIN_MODE,
    Fatal,
    describe_node,
    node_shape,
    refuse,
    summary,
    target_name,
)

DROP_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
# call_function targets: the functional API of a traced forward(), and (by name) the ATen ops of an exported one
_DROPPED_CALLS = {F.dropout, F.dropout2d, torch.dropout, "dropout.default", "clone.default", "alias.default"}
_ADDS = {operator.add, torch.add, operator.iadd, "add.Tensor", "add_.Tensor"}
# the input's normalization, (x - mean) / std, as a model's first ops: each an affine map with a constant
_AFFINE = {
    operator.sub: "sub",
    torch.sub: "sub",
    operator.isub: "sub",
    "sub.Tensor": "sub",
    operator.truediv: "div",
    torch.div: "div",
    operator.itruediv: "div",
    "div.Tensor": "div",
    operator.mul: "mul",
    torch.mul: "mul",
    operator.imul: "mul",
    "mul.Tensor": "mul",
    **{k: "add" for k in (operator.add, torch.add, operator.iadd, "add.Tensor")},
}
CATS = {torch.cat, torch.concat, torch.concatenate, "cat.default"}
CAT_REFUSED = (
    "joins branches that do not merge into layers: each branch must be a chain of rectified Conv2d's (their "
    "BatchNorm allowed) from one shared tensor, or some of its channels where it is rectified, at most one of "
    "them starting with a size-keeping max-pool of it, the branches of each level with one stride and kernels "
    "that share a centre (a shorter branch is relayed with stride 1, or joins the last level as a skip edge if it "
    "has one layer); branches from different tensors, of other layers, or of other strides are not supported"
)
LEFT_MAP = (
    "selects channels that neither a Conv2d nor a merged torch.cat reads: a split or shuffle is folded into the "
    "convolution that reads it, or joins a cat of branches from one rectified tensor"
)
# a classifier's head after its last layer: monotone in each logit's rank, so the argmax is unchanged (dropped,
# and said in the spec's provenance)
_HEADS = {F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, "_softmax.default", "_log_softmax.default"}
_HEAD_METHODS = ("softmax", "log_softmax")


class _Reader:
    """Walks a traced graph along its one chain of tensors, collecting :class:`Op` s."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm, self.ops, self.current = gm, [], None
        self.shape_nodes: set[fx.Node] = set()
        self.taps: dict[fx.Node, str] = {}  # a rectified value (after a relu or a max-pool) -> its op's node
        self.branches: dict[fx.Node, tuple[str, list[Op]]] = {}  # a side branch's value -> (tap, its ops)
        self.problems: list[SpecError] = []  # every refusal, so that one error names them all
        self.head: fx.Node | None = None  # a softmax/log_softmax after the last layer (dropped)

    def param(self, node: Any) -> torch.Tensor | None:
        """The tensor of a ``get_attr`` node (a functional call on the model's own parameters), or a module's
        tensor as it is (:mod:`convert.from_torch.rules`)."""
        if node is None or isinstance(node, torch.Tensor):
            return node  # absent, or a module's own tensor
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
        raise refuse(
            node,
            self.gm,
            "reads a tensor other than the previous layer's output or a rectified value before it: "
            "a skip connection must leave from a ReLU or a max-pooling output",
        )

    def drop(self, node: fx.Node) -> None:
        """A dropped node (Identity, Dropout, ``contiguous``...) stands for its input: on the chain, and as the
        rectified value or the branch its input was, so a skip may leave from it."""
        source = node.args[0] if node.args else None
        if source is self.current:
            self.current = node
        if source in self.taps:
            self.taps[node] = self.taps[source]
        if source in self.branches:
            tap, ops = self.branches[source]
            self.branches[node] = (tap, list(ops))

    def emit(self, node: fx.Node, on_trunk: bool, op: Op) -> None:
        """Append ``op`` to the chain, or to the side branch ``node`` continues."""
        if on_trunk:
            self.ops.append(op)
            if op.kind in ("relu", "maxpool"):
                self.taps[node] = op.node
            return
        if op.kind not in ("weight", "bn"):
            raise refuse(
                node, self.gm, "lies on a skip branch, which may hold only one Linear/Conv2d and its BatchNorm"
            )
        self.branches[node][1].append(op)

    def add(self, node: fx.Node) -> None:
        """``a + b``: the chain's pre-activation (or a sum of it) plus a skip (a rectified value, or a branch
        from one)."""
        a, b = node.args[:2]
        if b is self.current:
            a, b = b, a
        if a is not self.current or not isinstance(b, fx.Node):
            raise refuse(node, self.gm, "sums two tensors neither of which is the chain's current value")
        if b in self.taps:
            tap, ops = self.taps[b], []
        elif b in self.branches:
            tap, ops = self.branches[b]
        else:
            raise refuse(node, self.gm, "adds a tensor that is not a rectified value before it (nor a branch from one)")
        last = next((op for op in reversed(self.ops) if op.kind not in ("bn",)), None)
        if last is None or last.kind not in ("weight", "neurons"):
            raise refuse(
                node,
                self.gm,
                "sums after a ReLU or a reshape: a residual sum must add the skip to a Linear/Conv2d's "
                "output (before its ReLU), which is where the spiking neuron integrates both currents",
            )
        last.skips.append((tap, ops))  # any number: ((W·s + S·s_j) + S'·s_k …), in the order of the sums
        self.current = node

    def read(self) -> list[Op]:
        """The chain of ops; every node that cannot be read is a problem, and all of them are one SpecError."""
        for node in self.gm.graph.nodes:
            try:
                self._node(node)
            except Fatal:
                raise
            except SpecError as err:  # go on as if the node passed its input through, to find the others too
                self.problems.append(err)
                if node.op != "output" and self.current in node.all_input_nodes:
                    self.current = node  # it reads the chain: its value goes on as the chain's (a sum, a cat)
                elif node.args and isinstance(node.args[0], fx.Node):
                    self.drop(node)
        if len(self.problems) == 1:
            raise SpecError(str(self.problems[0]))
        if self.problems:
            raise SpecError(summary(self.problems))
        return self.ops

    def _node(self, node: fx.Node) -> None:
        if self.head is not None and node.op != "output":
            raise refuse(
                node,
                self.gm,
                f"comes after `{self.head.name}` (a softmax): only the model's output may follow a softmax head",
            )
        if node.op == "placeholder":
            if self.current is not None:
                raise refuse(node, self.gm, "is a second input; the spec has one input image")
            self.current = node
        elif node.op == "output":
            result = node.args[0]
            if isinstance(result, (tuple, list)) and len(result) == 1:  # an exported program's outputs
                result = result[0]
            if result is not self.current and not self.problems:
                raise refuse(node, self.gm, "returns something other than the last layer's output")
        elif node.op == "get_attr":
            return  # a parameter, read where a functional call uses it
        elif self._shape_query(node):
            return
        elif node.op == "call_module":
            self._module(node, self.gm.get_submodule(node.target))
        elif node.op == "call_function":
            self._function(node)
        elif node.op == "call_method":
            self._method(node)
        else:  # pragma: no cover - torch.fx has no other node ops
            raise refuse(node, self.gm, "is not supported")

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

    def _head(self, node: fx.Node, dim: Any) -> None:
        """A softmax or log_softmax over the classes of the last layer's output: dropped (the argmax is the
        logits'), and named in the spec's provenance (``dropped_head``)."""
        if node.args[0] is not self.current:
            raise refuse(node, self.gm, "is a softmax of something other than the last layer's output")
        shape = node_shape(node.args[0])
        if len(shape) != 2 or (dim is not None and dim not in (1, -1)):
            raise refuse(
                node,
                self.gm,
                f"is a softmax over dim={dim} of a {shape} tensor: only one over the classes of the "
                "(batch, classes) output leaves the argmax unchanged",
            )
        self.head = self.current = node

    def _passive(self, node: fx.Node, m: nn.Module) -> bool:
        """A module that computes nothing here: dropped (Identity, Dropout) or the softmax head."""
        if isinstance(m, ChannelSelect):  # left by a cat that did not merge (convert/from_torch/channel_maps.py)
            raise refuse(node, self.gm, LEFT_MAP)
        if isinstance(m, DROP_MODULES):
            self.drop(node)
            return True
        if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
            self._head(node, m.dim)
            return True
        return False

    def _module(self, node: fx.Node, m: nn.Module) -> None:
        if self._passive(node, m):
            return
        if isinstance(m, NeuronsInput):  # a population fed only by the skip edges summed into it (dense_cats.py)
            self.ops.append(Op("neurons", node.name, shape=m.shape))
            self.current = node
            return
        self._apply(node, self.take(node), rules.for_module(m))

    def _apply(self, node: fx.Node, trunk: bool, found: tuple[rules.Rule, dict[str, Any]] | None) -> None:
        """Read ``node`` by its kind's rule (:mod:`convert.from_torch.rules`) onto the chain or its branch."""
        if not trunk and (found is None or not found[0].on_branch):
            self.emit(node, False, Op("other", node.name))  # refused: only weights and BatchNorm on a branch
        if found is None:
            raise refuse(node, self.gm, "has no spiking equivalent")
        rule, args = found
        op = rule.read(self, node, args)
        if op is not None:
            self.emit(node, trunk, op)

    def _passive_call(self, node: fx.Node, key: Any) -> bool:
        """A call that computes nothing here: dropped, the softmax head, or a step of the input's normalization."""
        if key in _DROPPED_CALLS:
            self.drop(node)
            return True
        if key in _HEADS:
            names = ("input", "dim")
            self._head(node, (dict(zip(names, node.args, strict=False)) | dict(node.kwargs)).get("dim"))
            return True
        return key in _AFFINE and self._input_affine(node, _AFFINE[key])

    def _function(self, node: fx.Node) -> None:
        target = node.target
        aten = isinstance(target, torch._ops.OpOverload)
        key = target_name(target) if aten else target
        if target is operator.getitem and node.args[0] is self.current and node.args[1] == 0:
            self.current = node  # the output of an op that returns a tuple (an exported batch norm)
            return
        self._refuse_buffer_update(node, key)
        if self._passive_call(node, key):
            return
        if key in CATS:
            raise refuse(node, self.gm, self._cat_reason(node))
        if key in _ADDS:
            if len(node.args) != 2 or node.kwargs:
                raise refuse(node, self.gm, "adds with alpha or a scalar: only a + b of two tensors is a residual sum")
            self.add(node)
            return
        self._apply(node, self.take(node), rules.for_call(key, node))

    def _cat_reason(self, node: fx.Node) -> str:
        """Why a cat is refused: DenseNet's (a BatchNorm reads the joined, unrectified tensors), else what a cat
        may join (:data:`CAT_REFUSED`)."""
        for user in node.users:
            found = rules.for_node(user, self.gm)
            if found is not None and found[0].name == "batch_norm":
                return (
                    "is read by a BatchNorm (and its ReLU): a BatchNorm after a concatenation, as in "
                    "DenseNet, rectifies its own affine map of every joined tensor, so each reader would need a "
                    "population of its own with an edge from every joined layer; a population takes one skip edge "
                    "besides its trunk"
                )
        return CAT_REFUSED

    def _constant(self, value: Any) -> np.ndarray | None:
        """A number or a model tensor (``get_attr``) as float64 per input channel, else None."""
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            return np.array([float(value)])
        if isinstance(value, fx.Node) and value.op == "get_attr":
            tensor = self.param(value)
            if isinstance(tensor, torch.Tensor) and tensor.numel() >= 1:
                return tensor.detach().cpu().double().numpy().ravel()
        return None

    def _input_affine(self, node: fx.Node, how: str) -> bool:
        """``x - m``, ``x / s``, ``x * k``, ``x + c`` on the model's input before any layer (its normalization):
        kept as one affine map per channel, x ↦ scale·x + offset, that the first weight layer absorbs
        (:func:`convert.from_torch.ops.fold_input`). False when ``node`` is not such a step."""
        if len(node.args) != 2 or node.kwargs or any(op.kind != "affine" for op in self.ops):
            return False
        x, c = node.args
        if x is not self.current or (self.current.op != "placeholder" and not self.ops):
            return False
        k = self._constant(c)
        if k is None:
            return False
        if not self.ops:
            self.ops.append(Op("affine", node.name, weight=np.ones(1), bias=np.zeros(1)))
        op = self.ops[0]
        a, b = (np.array(v, dtype=np.float64) for v in np.broadcast_arrays(op.weight, op.bias, k)[:2])
        if how == "sub":
            b = b - k
        elif how == "add":
            b = b + k
        elif how == "mul":
            a, b = a * k, b * k
        else:
            if np.any(k == 0):
                raise refuse(node, self.gm, "divides the input by zero")
            a, b = a / k, b / k
        op.weight, op.bias, op.node = a, b, node.name
        self.current = node
        return True

    def _refuse_buffer_update(self, node: fx.Node, key: Any) -> None:
        """An in-place ATen op (``add_``) on a model buffer is refused: a train-mode export records one for each
        BatchNorm (its ``num_batches_tracked``), which is named as that."""
        first = node.args[0] if node.args else None
        if not isinstance(key, str) or not key.split(".")[0].endswith("_") or not isinstance(first, fx.Node):
            return
        if first.op != "get_attr":
            return
        if first.target.endswith("num_batches_tracked"):
            raise Fatal(
                f"{TRAIN_MODE} (node `{node.name}` ({describe_node(node, self.gm)}) counts a BatchNorm's batches "
                f"in `{first.target}`): {EVAL_FIRST}"
            )
        raise refuse(node, self.gm, f"updates the buffer `{first.target}` in place: a model's state must not change")

    def _method(self, node: fx.Node) -> None:
        if node.target == "contiguous":
            self.drop(node)
            return
        if node.target in ("chunk", "split"):  # a channel split no convolution or cat reads
            raise refuse(node, self.gm, LEFT_MAP)
        if node.target in _HEAD_METHODS:
            self._head(node, (dict(zip(("self", "dim"), node.args, strict=False)) | dict(node.kwargs)).get("dim"))
            return
        self._apply(node, self.take(node), rules.for_method(node))


def read_ops(gm: fx.GraphModule) -> tuple[list[Op], list[str]]:
    """The chain of operations of a graph whose shapes were propagated (module docstring), and what was dropped
    from its head (``["log_softmax (node `x`)"]``: a softmax after the last layer), for the provenance."""
    reader = _Reader(gm)
    ops = reader.read()
    head = [] if reader.head is None else [f"{describe_node(reader.head, gm)} (node `{reader.head.name}`)"]
    return ops, head
