"""What the torch.fx reader says about a graph node it cannot read: how a node is named and described, the
refusal that carries its node, op and reason, and the one-line summary of all of a model's refusals."""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from convert.contract.spec import SpecError


def _fn_name(target: Any) -> str:
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", str(target))
    if module.startswith("torch.nn.functional"):
        return f"F.{name}"
    if module.startswith("torch") or module == "" or "_VariableFunctions" in module:
        return f"torch.{name}"
    return f"{module}.{name}"


def describe_node(node: fx.Node, gm: fx.GraphModule) -> str:
    """What a graph node computes, for messages: a module's class, ``aten.<op>``, ``F.relu``, ``Tensor.view``."""
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)).__name__
    if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
        return f"aten.{target_name(node.target)}"
    if node.op == "call_function":
        return _fn_name(node.target)
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return node.op


SHOWN_NODES = 3  # per kind of problem, the nodes named before "and N more"


class Refusal(SpecError):
    """A node the reader cannot read, with its name, what it computes and why (:func:`summary` groups by the
    last two)."""

    def __init__(self, node_name: str, what: str, why: str) -> None:
        super().__init__(f"node `{node_name}` ({what}) {why}")
        self.node_name, self.what, self.why = node_name, what, why


def summary(problems: list[SpecError]) -> str:
    """Every problem of a model in one line: those of one kind (the same op and reason) grouped, with their
    first nodes named: ``the model has 5 parts with no spiking equivalent, of 2 kinds: (1) 3× MaxPool2d
    (`a`, `b`, `c`): ...; (2) ...``."""
    groups: dict[tuple[str, str], list[str]] = {}
    for p in problems:
        key, node = ((p.what, p.why), p.node_name) if isinstance(p, Refusal) else (("", str(p)), "")
        groups.setdefault(key, []).append(node)
    parts = []
    for i, ((what, why), nodes) in enumerate(groups.items(), 1):
        if not what:
            parts.append(f"({i}) {why}")
            continue
        named = ", ".join(f"`{n}`" for n in nodes[:SHOWN_NODES])
        more = f" and {len(nodes) - SHOWN_NODES} more" if len(nodes) > SHOWN_NODES else ""
        count = f"{len(nodes)}× " if len(nodes) > 1 else ""
        parts.append(f"({i}) {count}{what} ({named}{more}) {why}")
    kinds = f"{len(groups)} kinds" if len(groups) > 1 else "1 kind"
    return f"the model has {len(problems)} parts with no spiking equivalent, of {kinds}: " + "; ".join(parts)


class Fatal(SpecError):
    """A refusal that explains the whole model (it was in train mode): raised at once, not listed with others."""


def refuse(node: fx.Node, gm: fx.GraphModule, why: str) -> SpecError:
    return Refusal(node.name, describe_node(node, gm), why)


def int_pair(value: Any, node: fx.Node, gm: fx.GraphModule, name: str) -> tuple[int, int]:
    v = (value, value) if isinstance(value, int) else tuple(value)
    if len(v) != 2 or not all(isinstance(x, int) for x in v):
        raise refuse(node, gm, f"has {name}={value!r}; only integer {name} is supported")
    return int(v[0]), int(v[1])


TRAIN_MODE = "the model was in train mode when exported or traced"
EVAL_FIRST = "call model.eval() before torch.export.export (a functional F.batch_norm must pass training=self.training)"
NO_RUNNING_STATS = (
    "has track_running_stats=False: even in eval mode it normalizes each batch by that batch's own mean "
    "and variance, which no fixed weights compute; retrain it with track_running_stats=True (the default) "
    "or remove the BatchNorm"
)


def target_name(target: Any) -> str:
    """``conv2d.default`` for ``torch.ops.aten.conv2d.default``."""
    return str(target).removeprefix("aten.")


def node_shape(node: fx.Node) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else ()
