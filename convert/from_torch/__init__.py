"""Any traceable PyTorch model → NetworkSpec (the direct copy, θ = 1), through torch.fx.

``from_torch(model, input_shape)`` traces ``model`` with :func:`torch.fx.symbolic_trace`, propagates the shape
of one zero image through the graph (:class:`torch.fx.passes.shape_prop.ShapeProp`) and reads the graph node by
node into a chain of operations:

* a weight layer: ``nn.Linear``, ``nn.Conv2d`` (stride, zero padding; bias on or off), and the functional
  ``F.linear``/``F.conv2d`` of the model's own parameters;
* ``nn.BatchNorm1d``/``nn.BatchNorm2d`` and ``F.batch_norm`` in eval mode (running statistics), folded into
  the weight layer right before it: W ← W · γ/√(σ² + ε) per output channel, b ← (b − μ) · γ/√(σ² + ε) + β;
* a rectifier: ``nn.ReLU``, ``F.relu``, ``torch.relu``, ``x.relu()`` and their in-place forms (it becomes the
  integrate-and-fire neuron); or a :class:`convert.qcfs.QCFS` module (traced as a leaf, not into), the rectifier
  of the weight layer right before it with threshold λ: the copy then holds the λ's in its weights, θ = 1
  (W_l · λ_{l−1}/λ_l, b_l/λ_l, a skip edge's weights · λ_j/λ_l; λ = 1 for a layer without QCFS), starts every
  membrane at θ/2 (``v_init`` 0.5) and resets by subtraction unless ``spec_fields`` say otherwise, and its
  provenance names the method ``qcfs`` with each layer's λ and L (docs/qcfs.md). A QCFS that does not follow a
  weight layer is a :class:`SpecError` naming it. torch.export writes a QCFS out as arithmetic (a floor among
  mul/div/add/clamp): :func:`from_exported` refuses such a program naming its floor; convert the module;
* a re-indexing: ``nn.Flatten``, ``torch.flatten(x, 1)``, ``x.flatten(1)``, ``x.view(n, -1)``/``reshape``
  (any view whose result is (N, features));
* average pooling: ``nn.AvgPool2d``/``F.avg_pool2d`` (no padding), ``nn.AdaptiveAvgPool2d`` and
  ``F.adaptive_avg_pool2d`` whose output size divides the input (then it is an ordinary average pool); one of
  any other output size (PyTorch's unequal or repeating windows, e.g. VGG's 1×1 → 7×7) is a linear map folded
  into the Linear that reads it through a Flatten;
* max-pooling: ``nn.MaxPool2d``/``F.max_pool2d`` with a square kernel, any stride, padding and ``ceil_mode``,
  dilation 1 (the spike gate :class:`~convert.contract.spec.MaxPool2d`, overlapping windows included; one right
  before its ReLU is moved after it, as max and ReLU commute);
* a residual sum ``a + b`` of a weight layer's output (before its ReLU) and a rectified value before it (an
  identity skip) or a branch from one holding one Linear/Conv2d and its BatchNorm (a skip edge,
  :mod:`convert.layers.skip`; the branch's bias joins the layer's);
* parallel branches joined by a channel concatenation (``torch.cat(..., 1)``): each a chain of rectified
  convolutions from one shared tensor, one of them possibly starting with a size-keeping max-pool of it
  (SqueezeNet's Fire, GoogLeNet's inception), merged level by level into layers before the graph is read,
  a shorter branch relayed by identity neurons (:mod:`convert.from_torch.siblings`); the spec's provenance
  names the merged cats (``merged_branches``) and the relays (``relays``);
* channel maps: ``chunk``, slicing and ``view``/``transpose`` chains whose result is ``s[:, idx]`` (ShuffleNet's
  split and shuffle), folded into the convolution that reads them or made a cat's branch of no layers
  (:mod:`convert.from_torch.channel_maps`); a convolution, its BatchNorm and the 1×1 convolution after it with
  no ReLU between, merged into one (:mod:`convert.from_torch.linear_pairs`); ``x.mean([2, 3])``, the global
  average pool; the provenance lists them (``channel_maps``, ``merged_linear_pairs``);
* dropped: ``nn.Dropout``, ``F.dropout``, ``nn.Identity``, ``x.contiguous()`` (training devices and no-ops)
  anywhere, a skip's source included (a dropped node stands for its input); shape queries (``x.size(0)``,
  ``x.shape``) that only feed a view;
* the input's normalization: ``(x - mean) / std`` (subtractions, divisions, multiplications and additions of
  a number or a model tensor, one per channel) as the model's first ops, or given as
  ``normalize_input=(mean, std)`` for a model trained behind a ``transforms.Normalize``, folded into the first
  Linear/Conv2d (W·a per input channel, b + W·o; a padded Conv2d with an offset is refused, its zero padding
  cannot be folded); the spec's provenance records it (``input_normalization``);
* the head: a softmax or log_softmax over the classes after the last layer (``F.log_softmax(x, dim=1)``,
  ``nn.Softmax(1)``, ``x.softmax(1)``) is dropped, since the argmax is the logits'; the spec's provenance names it
  (``dropped_head``).

Anything else is a :class:`SpecError` naming the graph node and its op ("node `head_act` (torch.sigmoid) has
no spiking equivalent"), never a silent skip; a model with several such nodes gets one error that lists them
all ("the model has 3 parts with no spiking equivalent: (1) ..."); so is any other branching (a second input,
a sum after a ReLU, a second skip into one layer). A weight layer that is not the last must be followed by a
rectifier (only re-indexing and dropped nodes in between), as :func:`convert.extract.check_rectifiers` requires
of an ``nn.Sequential``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import fx, nn

from convert.contract.spec import NetworkSpec, SpecError
from convert.extract import check_input_shape, direct_copy
from convert.from_torch.channel_maps import fold_channel_maps
from convert.from_torch.dense_cats import split_dense_cats
from convert.from_torch.linear_pairs import fold_linear_pairs
from convert.from_torch.modules import modularize
from convert.from_torch.ops import (
    check_chain,
    check_qcfs,
    fold_adaptive,
    fold_batchnorm,
    fold_input,
    gates_after_relus,
    input_affine,
    layers_of,
    qcfs_scales,
)
from convert.from_torch.reader import read_ops
from convert.from_torch.refusals import describe_node, target_name
from convert.from_torch.siblings import merge_siblings
from convert.qcfs import QCFS

__all__ = ["from_exported", "from_torch", "load_exported"]


NOTHING_TO_CONVERT = "the model has no parameters (no Linear or Conv2d layer): nothing to convert"
EXPORT = "torch.export.save(torch.export.export(model.eval(), (example,)), path)"


def _first_layer(gm: fx.GraphModule) -> str | None:
    """What the graph's first Linear or Conv2d reads ("`fc1` (Linear) takes 784 input features"), if any."""
    for node in gm.graph.nodes:
        weight, what = None, None
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                weight, what = module.weight, type(module).__name__
        elif node.op == "call_function" and len(node.args) > 1 and isinstance(node.args[1], fx.Node):
            name = getattr(node.target, "__name__", str(node.target))
            if name in ("linear", "conv2d", "linear.default", "conv2d.default") and node.args[1].op == "get_attr":
                weight, what = gm.get_parameter(node.args[1].target), name.split(".")[0]
        if weight is None:
            continue
        if weight.ndim == 2:
            return f"its first layer `{node.name}` ({what}) takes {weight.shape[1]} input features"
        return f"its first layer `{node.name}` ({what}) takes {weight.shape[1]} input channels"
    return None


def _propagate(gm: fx.GraphModule, example: torch.Tensor) -> None:
    """Shapes propagated through ``gm`` from ``example``; a model that cannot run on it is a one-line
    :class:`SpecError` naming the graph node that failed, the input shape and what the first layer expects
    (ShapeProp's own traceback, printed to stderr, and its graph dump are dropped)."""
    import contextlib
    import io

    from torch.fx.passes.shape_prop import ShapeProp

    class Prop(ShapeProp):
        node: fx.Node | None = None

        def run_node(self, n: fx.Node) -> Any:
            self.node = n
            return super().run_node(n)

    prop = Prop(gm)
    try:
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            prop.propagate(example)
    except Exception as err:
        cause = err.__cause__ or err
        detail = (str(cause).strip().splitlines() or [""])[0][:200]
        first = _first_layer(gm)
        where = ""
        if prop.node is not None and prop.node.op not in ("placeholder", "output"):
            where = f"node `{prop.node.name}` ({describe_node(prop.node, gm)}) fails: "
        raise SpecError(
            f"the model cannot run on input_shape={tuple(example.shape[1:])}: {where}{type(cause).__name__}: "
            f"{detail}"
            + (f"; {first}" if first else "")
            + ": pass the shape of one input image (without the batch dimension), or the size the model needs"
        ) from None


def _convert(
    gm: fx.GraphModule,
    example: torch.Tensor,
    dataset: str | None,
    spec_fields: dict,
    source: str,
    normalize_input: tuple[Any, Any] | None = None,
):
    """The direct copy of the graph ``gm`` after :func:`_rewritten` (which checked the input shape), its shapes
    propagated from ``example`` (a batch of zero images) again: the rewrites added nodes."""
    shape = tuple(example.shape[1:])
    given = None if normalize_input is None else input_affine(*_pair_of(normalize_input))
    _propagate(gm, example)
    read, head = read_ops(gm)
    affines = [op for op in ([given] if given else []) + read if op.kind == "affine"]
    ops = gates_after_relus(fold_adaptive(fold_batchnorm(fold_input(read, shape, given))))
    if not any(op.kind == "weight" for op in ops):
        raise SpecError(NOTHING_TO_CONVERT)
    check_qcfs(ops)
    check_chain(ops)
    provenance = {"source": source, **spec_fields.pop("provenance", {})}
    if head:  # a softmax after the last layer: the argmax of its output is the logits'
        provenance["dropped_head"] = head
    if affines:  # folded into the first layer, which reads the raw input
        provenance["input_normalization"] = [
            {"node": op.node, "scale": op.weight.tolist(), "offset": op.bias.tolist()} for op in affines
        ]
    scales = qcfs_scales(ops)
    if any(scales):  # QCFS's SNN: every membrane starts at θ/2, reset by subtraction (unless told otherwise)
        spec_fields = {"reset": "subtract", "v_init": 0.5, **spec_fields}
    layers, skips = layers_of(ops)
    spec = direct_copy(layers, tuple(example.shape[1:]), dataset, provenance=provenance, skips=skips, **spec_fields)
    return _with_qcfs_scales(spec, scales) if any(scales) else spec


def _with_qcfs_scales(spec: NetworkSpec, scales: list[tuple[float, int] | None]) -> NetworkSpec:
    """The copy of a QCFS model with its λ's in the weights, θ = 1: W_l · λ_{l−1}/λ_l, b_l/λ_l (and a skip edge's
    weights · λ_j/λ_l), λ = 1 for a layer without QCFS; a pool passes the λ below it through (divisor 1). The
    provenance names the method ``qcfs`` and holds each spiking layer's λ and L (convert/qcfs.py)."""
    from convert.layers import family_of
    from convert.normalize import apply_divisors

    divisors, lams, previous = [], [], 1.0
    for i, scale in zip(spec.spiking_indices, scales, strict=True):
        if not family_of(spec.layers[i]).has_weights:  # a pool: its weights 1/k² stay, the λ below passes
            divisors.append(1.0)
            lams.append(previous)
            continue
        lam = 1.0 if scale is None else scale[0]
        divisors.append(lam / previous)
        lams.append(lam)
        previous = lam
    infos = [{"type": type(spec.layers[i]).__name__} for i in spec.spiking_indices]
    spec, _ = apply_divisors(spec, divisors, [1.0] * len(divisors), "qcfs", {}, infos)
    info = {"lambda": lams, "levels": [None if s is None else s[1] for s in scales]}
    return dataclasses.replace(spec, provenance={**spec.provenance, "qcfs": info})


def _pair_of(normalize_input: Any) -> tuple[Any, Any]:
    try:
        mean, std = normalize_input
    except (TypeError, ValueError):
        raise SpecError(
            f"normalize_input must be (mean, std), e.g. ((0.1307,), (0.3081,)), got {normalize_input!r}"
        ) from None
    return mean, std


def from_exported(
    program: Any, dataset: str | None = None, normalize_input: tuple[Any, Any] | None = None, **spec_fields: Any
) -> NetworkSpec:
    """The direct copy of a ``torch.export`` program (:func:`torch.export.load` of a ``.pt2`` archive): its
    ATen graph read as :func:`from_torch` reads a traced one, the input shape from the program's example."""
    gm = program.module()
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1 or "val" not in inputs[0].meta:
        raise SpecError(f"the exported program takes {len(inputs)} inputs; export a model of one image batch")
    floors = [n for n in gm.graph.nodes if n.op == "call_function" and target_name(n.target) == "floor.default"]
    if floors:
        raise SpecError(
            f"node `{floors[0].name}` (aten.floor.default): the exported program quantizes, as a QCFS activation "
            "does (torch.export writes QCFS out as arithmetic that cannot be read back); convert the nn.Module "
            "itself: convert.from_torch.from_torch(model) or convert.to_snn(model)"
        )
    shape = tuple(int(d) for d in inputs[0].meta["val"].shape)
    example = torch.zeros(shape, dtype=inputs[0].meta["val"].dtype)
    gm = _rewritten(modularize(gm), example, dataset, spec_fields)  # its layer calls as modules (modules.py)
    return _convert(gm, example, dataset, spec_fields, "torch.export", normalize_input)


def load_exported(path: Any) -> Any:
    """:func:`torch.export.load` of a ``.pt2`` archive (its graph is serialized data, its weights are read
    as tensors: no pickled code runs); a file that is not one is a ValueError naming it."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; write it with {EXPORT}")
    why = _not_an_archive(path)
    if why is None:
        with _TorchLogs("torch.export", "torch._export") as logged:
            try:
                return torch.export.load(path)
            except Exception as err:  # a version mismatch, a foreign archive
                cause = logged.errors[0] if logged.errors else err  # what load() logged, not "see the warnings"
                detail = (str(cause).strip().splitlines() or [""])[0][:200]
                why = f"{type(cause).__name__}: {detail}"
                if "check the warnings above" in detail:  # nothing was logged: no program in the archive
                    why = "a zip archive holding no exported program"
    raise ValueError(f"{path}: not a torch.export archive ({why}); write one with {EXPORT}")


def _not_an_archive(path: Any) -> str | None:
    """Why the file at ``path`` cannot be a ``torch.export.save`` archive, or None if it may be one."""
    import zipfile

    if path.is_dir():
        return "a folder"
    if path.stat().st_size == 0:
        return "an empty file"
    if not zipfile.is_zipfile(path):
        return "not a zip archive: truncated, damaged or another format"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        return f"a damaged zip archive: {err}"
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names) and not any(
        n.endswith("archive_format") for n in names
    ):
        return "a torch.save file (a pickled model or state dict), not an exported program"
    return None


class _TorchLogs:
    """Within the block, the records of the torch loggers ``names`` (and their children) are kept here instead
    of being printed (torch.export.load logs a traceback before it raises); their exceptions in ``errors``."""

    def __init__(self, *names: str) -> None:
        import logging

        self.loggers = [logging.getLogger(name) for name in names]
        self.errors: list[BaseException] = []
        self.handler = logging.Handler()
        self.handler.emit = self._keep  # type: ignore[method-assign]

    def _keep(self, record: Any) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.errors.append(record.exc_info[1])

    def __enter__(self) -> _TorchLogs:
        self.saved = [(log.propagate, log.handlers[:]) for log in self.loggers]
        for log in self.loggers:
            log.handlers[:] = [self.handler]
            log.propagate = False
        return self

    def __exit__(self, *exc: Any) -> None:
        for log, (propagate, handlers) in zip(self.loggers, self.saved, strict=True):
            log.handlers[:] = handlers
            log.propagate = propagate


class _Tracer(fx.Tracer):
    """torch.fx's tracer, with a :class:`~convert.qcfs.QCFS` kept as one module call (a leaf), not traced into."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, QCFS) or super().is_leaf_module(m, module_qualified_name)


def _trace(model: nn.Module) -> fx.GraphModule:
    """:func:`torch.fx.symbolic_trace` with QCFS modules as leaves."""
    tracer = _Tracer()
    graph = tracer.trace(model)
    return fx.GraphModule(tracer.root, graph, model.__class__.__name__)


def from_torch(
    model: nn.Module,
    input_shape: tuple[int, ...] = (1, 28, 28),
    dataset: str | None = None,
    normalize_input: tuple[Any, Any] | None = None,
    **spec_fields: Any,
) -> NetworkSpec:
    """The direct copy (every threshold 1) of any model torch.fx can trace (module docstring).
    ``normalize_input=(mean, std)``: the model was trained on (x − mean)/std of the [0, 1] images (a
    ``transforms.Normalize`` outside it), folded into its first layer as its own first ops would be."""
    params = next(iter(model.parameters()), None)
    if params is None:
        raise SpecError(NOTHING_TO_CONVERT)
    training = model.training
    try:  # traced in eval mode: a forward that reads self.training (F.batch_norm, F.dropout) is traced as run
        model.eval()
        gm = _trace(model)
    except Exception as err:  # torch.fx raises many kinds (TraceError, TypeError, NotImplementedError...)
        raise SpecError(
            f"torch.fx cannot trace this model ({type(err).__name__}: {err}); "
            "data-dependent control flow in forward() must go"
        ) from None
    finally:
        model.train(training)
    # two images: a BatchNorm without running statistics (refused by the reader, naming it) runs on a batch of 2
    example = torch.zeros(2, *input_shape, dtype=params.dtype)
    gm = _rewritten(gm, example, dataset, spec_fields)
    return _convert(gm, example, dataset, dict(spec_fields), "torch.fx", normalize_input)


def _rewritten(gm: fx.GraphModule, example: torch.Tensor, dataset: str | None, spec_fields: dict) -> fx.GraphModule:
    """``gm`` after the graph rewrites (linear pairs, channel maps, merged siblings), each named in
    ``spec_fields["provenance"]`` where it changed something."""

    def note(key: str, lines: list[str]) -> None:
        if lines:
            spec_fields["provenance"] = {**spec_fields.get("provenance", {}), key: lines}

    gm, pairs = fold_linear_pairs(gm)
    note("merged_linear_pairs", pairs)  # a weight layer read by a 1×1 one, no rectifier between (linear_pairs.py)
    check_input_shape(tuple(example.shape[1:]), dataset)
    _propagate(gm, example)
    gm, maps = fold_channel_maps(gm, example)
    note("channel_maps", maps)  # channel selections and permutations folded into their readers (channel_maps.py)
    gm, merged, relays = merge_siblings(gm)
    gm.eval()
    note("merged_branches", merged)  # parallel branches joined by a cat, now merged layers (siblings.py)
    note("relays", relays)  # identity populations the merge added (a shorter branch, a max-pool read by one)
    gm, split = split_dense_cats(gm, lambda: _propagate(gm, example))
    note("split_cats", split)  # cats read by BatchNorm → ReLU: a population per reader and piece (dense_cats.py)
    return gm
