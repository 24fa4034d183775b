"""The registry of normalization methods: the one list every CLI, pipeline, table, figure and sweep iterates.

A method is a pure function ``(spec, [stats], **options) -> (spec, NormalizationReport)`` from
:mod:`convert.normalize` (or anywhere else) plus what the rest of the project needs to know about it: whether
it needs activation statistics, which options it takes, and how tables and figures name and colour it.
Adding a method is one function, one :func:`register` call and its tests; nothing else lists methods.

Options are passed by name from one shared set (``threshold``, ``percentile``, ``previous``, ...): each
method receives only those it declares, so callers can hand every method the same settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from convert import bias_correction, calibration, channel_thresholds, normalize, potential_correction, qcfs
from convert.contract.spec import NetworkSpec
from convert.stats import ActivationStats

Result = tuple[NetworkSpec, normalize.NormalizationReport]


@dataclass(frozen=True)
class Method:
    """One normalization method.

    ``function(spec, stats, **options)`` when ``needs_stats``, else ``function(spec, **options)``;
    ``options`` names the keyword options it takes; ``label`` is a format string filled with the options
    (tables, legends); ``color`` a matplotlib colour. ``requires`` names what the model must have been trained
    with for the method to apply (``"qcfs"``: QCFS activations, :mod:`convert.qcfs`); None: any model. A method
    that requires something has no row in the paper's tables (:func:`paper_methods`: ReLU networks); nor has one
    with ``paper_row=False`` (a method for any model that is not one of the paper's rows, like ``calibrated``).
    ``needs_images``: the method also takes the calibration images (``calibrated-bc``'s bias correction).
    ``clips``: its thresholds clip the largest activations by design (a λ chosen for T steps, QCFS's learned λ),
    so neurons firing in every step are intended, not a fault (``validation diagnose``)."""

    name: str
    function: Callable[..., Result]
    needs_stats: bool
    options: tuple[str, ...] = ()
    label: str = ""
    color: str = "k"
    description: str = ""
    requires: str | None = None
    paper_row: bool = True
    needs_images: bool = False
    clips: bool = False

    def apply(
        self, spec: NetworkSpec, stats: ActivationStats | None = None, images: Any = None, **options: Any
    ) -> Result:
        """Normalize ``spec``; ``options`` may hold more than this method takes (the rest is ignored). The
        report and the spec's provenance name the method as registered (a method built on another, like a
        variant of ``baseline``, is recorded under its own name). ``images``: the calibration images, for a
        method that ``needs_images`` (bias correction; the others ignore them)."""
        kwargs = {k: options[k] for k in self.options if k in options and options[k] is not None}
        if self.needs_images:
            if images is None or len(images) == 0:
                raise ValueError(f"method {self.name!r} needs the calibration images themselves (images=...)")
            kwargs["images"] = images
        if not self.needs_stats:
            new, report = self.function(spec, **kwargs)
        elif stats is None:
            raise ValueError(f"method {self.name!r} needs activation statistics (convert.pipeline.stats_for)")
        else:
            new, report = self.function(spec, stats, **kwargs)
        if report.method == self.name:
            return new, report
        provenance = {**new.provenance, "method": self.name}
        return dataclasses.replace(new, provenance=provenance), dataclasses.replace(report, method=self.name)

    def title(self, **options: Any) -> str:
        """The label with the options filled in (e.g. ``robust p99.9``)."""
        try:
            return (self.label or self.name).format(**options)
        except (KeyError, IndexError, ValueError):
            return self.name


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to the registry (its name must be new); returns it."""
    if method.name in _REGISTRY:
        raise ValueError(f"a normalization method named {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove a method (for tests that register a toy one)."""
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    """Every registered method's name, in registration order."""
    return tuple(_REGISTRY)


def get(name: str) -> Method:
    """The method called ``name``; an unknown name is a ValueError listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"method must be one of {', '.join(_REGISTRY)}; got {name!r}") from None


def all_methods() -> tuple[Method, ...]:
    return tuple(_REGISTRY.values())


def paper_methods() -> tuple[Method, ...]:
    """The methods that apply to any model (the paper's ReLU networks): every one but those that ``require``
    a particular training (``qcfs``) and those marked ``paper_row=False`` (``calibrated``)."""
    return tuple(m for m in _REGISTRY.values() if m.requires is None and m.paper_row)


register(
    Method(
        "baseline",
        normalize.baseline,
        needs_stats=False,
        options=("threshold",),
        label="baseline θ={threshold:g}",
        color="C0",
        description="the direct copy of the weights with a chosen threshold",
    )
)
register(
    Method(
        "model",
        normalize.model_based,
        needs_stats=False,
        label="model-based",
        color="C2",
        description="Algorithm 1: divide by the largest sum of positive input weights",
    )
)
register(
    Method(
        "data",
        normalize.data_based,
        needs_stats=True,
        options=("previous",),
        label="data-based",
        color="C3",
        description="Algorithm 2: divide by the largest activation (or weight) over the training data",
    )
)
register(
    Method(
        "robust",
        normalize.robust,
        needs_stats=True,
        options=("percentile",),
        label="robust p{percentile:g}",
        color="C4",
        description="Rueckauer et al. 2017: the p-th percentile of the positive activations",
    )
)
register(
    Method(
        "qcfs",
        qcfs.qcfs,
        needs_stats=False,
        label="QCFS",
        color="C5",
        description="Bu et al. 2022: a model trained with QCFS activations, θ = its λ's (the copy as read)",
        requires="qcfs",
        clips=True,
    )
)
register(
    Method(
        "calibrated",
        calibration.calibrated,
        needs_stats=True,
        options=("steps",),
        label="calibrated T={steps}",
        color="C6",
        description="Li et al. 2021: per layer, the λ of least clip-floor error at T steps (v_init ½, subtract)",
        paper_row=False,
        clips=True,
    )
)
register(
    Method(
        "calibrated-channel",
        channel_thresholds.calibrated_per_channel,
        needs_stats=True,
        options=("steps",),
        label="calibrated per channel T={steps}",
        color="C8",
        description="calibrated, then a λ per channel of each hidden layer for T steps, folded into the weights",
        paper_row=False,
        needs_images=True,
        clips=True,
    )
)
register(
    Method(
        "calibrated-bc",
        bias_correction.calibrated_bias_corrected,
        needs_stats=True,
        options=("steps", "activity"),
        label="calibrated per channel + BC T={steps}",
        color="C7",
        description="calibrated-channel, then each hidden layer's bias corrected per channel for T steps",
        paper_row=False,
        needs_images=True,
        clips=True,
    )
)
register(
    Method(
        "calibrated-pc",
        potential_correction.calibrated_potential_corrected,
        needs_stats=True,
        options=("steps", "activity"),
        label="calibrated per channel + BC + PC T={steps}",
        color="C9",
        description="calibrated-bc, then a start potential per hidden neuron for T steps (v_init_neurons)",
        paper_row=False,
        needs_images=True,
        clips=True,
    )
)
