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
from convert.extract import check_input_shape, direct_copy
from convert.from_torch.ops import check_chain, fold_batchnorm, gates_after_relus, layers_of
from convert.from_torch.reader import read_ops

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
    :class:`SpecError` naming the input shape and what the first layer expects (ShapeProp's own traceback,
    printed to stderr, and its graph dump are dropped)."""
    import contextlib
    import io

    from torch.fx.passes.shape_prop import ShapeProp

    try:
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            ShapeProp(gm).propagate(example)
    except Exception as err:
        cause = err.__cause__ or err
        detail = (str(cause).strip().splitlines() or [""])[0][:200]
        first = _first_layer(gm)
        raise SpecError(
            f"the model cannot run on input_shape={tuple(example.shape[1:])} ({type(cause).__name__}: {detail})"
            + (f"; {first}" if first else "")
            + ": pass the shape of one input image (without the batch dimension)"
        ) from None


def _convert(gm: fx.GraphModule, example: torch.Tensor, dataset: str | None, spec_fields: dict, source: str):
    """The direct copy of the graph ``gm``, its shapes propagated from ``example`` (a batch of zero images)."""
    check_input_shape(tuple(example.shape[1:]), dataset)
    _propagate(gm, example)
    ops = gates_after_relus(fold_batchnorm(read_ops(gm)))
    if not any(op.kind == "weight" for op in ops):
        raise SpecError(NOTHING_TO_CONVERT)
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


def from_torch(
    model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28), dataset: str | None = None, **spec_fields: Any
) -> NetworkSpec:
    """The direct copy (every threshold 1) of any model torch.fx can trace (module docstring)."""
    params = next(iter(model.parameters()), None)
    if params is None:
        raise SpecError(NOTHING_TO_CONVERT)
    training = model.training
    try:  # traced in eval mode: a forward that reads self.training (F.batch_norm, F.dropout) is traced as run
        model.eval()
        gm = fx.symbolic_trace(model)
    except Exception as err:  # torch.fx raises many kinds (TraceError, TypeError, NotImplementedError...)
        raise SpecError(
            f"torch.fx cannot trace this model ({type(err).__name__}: {err}); "
            "data-dependent control flow in forward() must go"
        ) from None
    finally:
        model.train(training)
    gm.eval()
    # two images: a BatchNorm without running statistics (refused by the reader, naming it) runs on a batch of 2
    example = torch.zeros(2, *input_shape, dtype=params.dtype)
    return _convert(gm, example, dataset, dict(spec_fields), "torch.fx")
