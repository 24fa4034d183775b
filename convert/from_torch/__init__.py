"""Any traceable PyTorch model → NetworkSpec (the direct copy, θ = 1), through torch.fx.

``from_torch(model, input_shape)`` traces ``model`` with :func:`torch.fx.symbolic_trace`, propagates the shape
of one zero image through the graph (:class:`torch.fx.passes.shape_prop.ShapeProp`) and reads the graph node by
node into a chain of operations:

* a weight layer: ``nn.Linear``, ``nn.Conv2d`` (stride, zero padding; bias on or off), and the functional
  ``F.linear``/``F.conv2d`` of the model's own parameters;
* ``nn.BatchNorm1d``/``nn.BatchNorm2d`` and ``F.batch_norm`` in eval mode (running statistics), folded into
  the weight layer right before it: W ← W · γ/√(σ² + ε) per output channel, b ← (b − μ) · γ/√(σ² + ε) + β;
* a rectifier: ``nn.ReLU``, ``F.relu``, ``torch.relu``, ``x.relu()`` and their in-place forms (it becomes the
  integrate-and-fire neuron);
* a re-indexing: ``nn.Flatten``, ``torch.flatten(x, 1)``, ``x.flatten(1)``, ``x.view(n, -1)``/``reshape``
  (any view whose result is (N, features));
* average pooling: ``nn.AvgPool2d``/``F.avg_pool2d`` (no padding), ``nn.AdaptiveAvgPool2d`` and
  ``F.adaptive_avg_pool2d`` whose output size divides the input (then it is an ordinary average pool);
* max-pooling: ``nn.MaxPool2d``/``F.max_pool2d`` with stride = kernel, no padding (the spike gate
  :class:`~convert.contract.spec.MaxPool2d`; one right before its ReLU is moved after it, as max and ReLU commute);
* a residual sum ``a + b`` of a weight layer's output (before its ReLU) and a rectified value before it (an
  identity skip) or a branch from one holding one Linear/Conv2d and its BatchNorm (a skip edge,
  :mod:`convert.layers.skip`; the branch's bias joins the layer's);
* dropped: ``nn.Dropout``, ``F.dropout``, ``nn.Identity`` (training devices and no-ops); shape queries
  (``x.size(0)``, ``x.shape``) that only feed a view.

Anything else is a :class:`SpecError` naming the graph node and its op ("node `head_act` (torch.sigmoid) has
no spiking equivalent"), never a silent skip; so is any other branching (a second input, a sum after a ReLU, a
second skip into one layer). A weight layer that is not the last must be followed by a rectifier (only re-indexing and
dropped nodes in between), as :func:`convert.extract.check_rectifiers` requires of an ``nn.Sequential``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

from convert.contract.spec import NetworkSpec, SpecError
from convert.extract import direct_copy
from convert.from_torch.ops import check_chain, fold_batchnorm, gates_after_relus, layers_of
from convert.from_torch.reader import read_ops

__all__ = ["from_exported", "from_torch", "load_exported"]


def _convert(gm: fx.GraphModule, example: torch.Tensor, dataset: str | None, spec_fields: dict, source: str):
    """The direct copy of the graph ``gm``, its shapes propagated from ``example`` (a batch of zero images)."""
    from torch.fx.passes.shape_prop import ShapeProp

    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    ops = gates_after_relus(fold_batchnorm(read_ops(gm)))
    if not any(op.kind == "weight" for op in ops):
        raise SpecError("the model has no Linear or Conv2d layer: nothing to convert")
    check_chain(ops)
    provenance = {"source": source, **spec_fields.pop("provenance", {})}
    return direct_copy(layers_of(ops), tuple(example.shape[1:]), dataset, provenance=provenance, **spec_fields)


def from_exported(program: Any, dataset: str | None = None, **spec_fields: Any) -> NetworkSpec:
    """The direct copy of a ``torch.export`` program (:func:`torch.export.load` of a ``.pt2`` archive): its
    ATen graph read as :func:`from_torch` reads a traced one, the input shape from the program's example."""
    gm = program.module()
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1 or "val" not in inputs[0].meta:
        raise SpecError(f"the exported program takes {len(inputs)} inputs; export a model of one image batch")
    shape = tuple(int(d) for d in inputs[0].meta["val"].shape)
    example = torch.zeros(shape, dtype=inputs[0].meta["val"].dtype)
    return _convert(gm, example, dataset, spec_fields, "torch.export")


def load_exported(path: Any) -> Any:
    """:func:`torch.export.load` of a ``.pt2`` archive (its graph is serialized data, its weights are read
    as tensors: no pickled code runs); a file that is not one is a ValueError naming it."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such file; write it with torch.export.save(torch.export.export(model, (example,)), path)"
        )
    try:
        return torch.export.load(path)
    except Exception as err:  # a zip error, a version mismatch, a foreign archive
        detail = (str(err).strip().splitlines() or [""])[0][:200]
        raise ValueError(
            f"{path}: not a torch.export archive ({type(err).__name__}: {detail}); write one with torch.export.save"
        ) from None


def from_torch(
    model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28), dataset: str | None = None, **spec_fields: Any
) -> NetworkSpec:
    """The direct copy (every threshold 1) of any model torch.fx can trace (module docstring)."""
    try:
        gm = fx.symbolic_trace(model)
    except Exception as err:  # torch.fx raises many kinds (TraceError, TypeError, NotImplementedError...)
        raise SpecError(
            f"torch.fx cannot trace this model ({type(err).__name__}: {err}); "
            "data-dependent control flow in forward() must go"
        ) from None
    gm.eval()
    example = torch.zeros(1, *input_shape, dtype=next(model.parameters()).dtype)
    return _convert(gm, example, dataset, dict(spec_fields), "torch.fx")
