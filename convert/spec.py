"""The NetworkSpec: the one simulator-neutral contract between convert/, fastsim/ and refsim/.

A spec is frozen data (NIR style): small dataclasses holding read-only numpy arrays, validated on
construction with errors that name the offending field. It holds everything a simulator needs, so neither
simulator takes neuron parameters or time semantics as arguments:

* ``input_shape``: the shape of one input sample, e.g. ``(1, 28, 28)``;
* ``layers``: a chain of :class:`Flatten`, :class:`Dense`, :class:`Conv2d` and :class:`AvgPool2d`. Every
  layer but ``Flatten`` is a *spiking* layer: a population of integrate-and-fire neurons with its own
  ``threshold`` θ_l, fed through the layer's synapses (``AvgPool2d`` has implicit weights 1/k², as in
  Diehl's code);
* ``reset``: ``"zero"`` (v ← 0) or ``"subtract"`` (v ← v − θ);
* ``schedule``: ``"delay"`` (Brian2's order: thresholds of all layers, then synapses, then resets; each layer
  adds a step of latency) or ``"cascade"`` (layer by layer within a step; a spike crosses the whole net);
* ``dt_ms``: the time step in milliseconds;
* ``encoding``: ``"poisson"`` (pixel x ∈ [0, 1] spikes with probability x · max_rate_hz · dt) or
  ``"current"`` (the analog x is injected every step);
* ``labels``: the class names of the output neurons; ``provenance``: free-form JSON-able metadata
  (source checkpoint, method, factors, seed).

The exact discrete-time semantics are in docs/semantics.md; the file format in docs/spec-format.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RESETS = ("zero", "subtract")
SCHEDULES = ("delay", "cascade")
ENCODINGS = ("poisson", "current")


class SpecError(ValueError):
    """A spec is invalid; the message names the field and says what would be valid."""


def _frozen_weight(value: Any, name: str, ndim: int) -> np.ndarray:
    """A read-only float copy of ``value``; NaN/inf, a wrong rank or an empty array raise SpecError."""
    arr = np.array(value, copy=True)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.ndim != ndim:
        raise SpecError(f"{name}: expected a {ndim}-d array, got shape {arr.shape}")
    if arr.size == 0:
        raise SpecError(f"{name}: empty weight array {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise SpecError(f"{name}: {bad} weights are NaN or infinite; retrain or fix the checkpoint")
    arr.setflags(write=False)
    return arr


def _check_threshold(threshold: float, name: str) -> float:
    t = float(threshold)
    if not math.isfinite(t) or t <= 0:
        raise SpecError(f"{name}.threshold must be a positive finite number, got {threshold!r}")
    return t


def _check_bias(bias: Any, name: str) -> None:
    if bias is not None and np.any(np.asarray(bias) != 0):
        raise SpecError(
            f"{name}.bias: biases are not supported (Diehl et al. 2015 convert zero-bias networks); "
            "train with bias=False"
        )


def _pair(value: Any, name: str, minimum: int) -> tuple[int, int]:
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or any(int(v) != v or v < minimum for v in pair):
        raise SpecError(f"{name}: expected an int or a pair of ints >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


@dataclass(frozen=True)
class Flatten:
    """Reshape (C, H, W) to (C·H·W,) in C order; not a neuron population."""

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (int(np.prod(input_shape)),)


@dataclass(frozen=True, eq=False)
class Dense:
    """All-to-all synapses: the layer input I = W · s, W of shape (out, in); IF neurons with ``threshold``."""

    weight: np.ndarray
    threshold: float = 1.0
    bias: Any = None

    def __post_init__(self) -> None:
        _check_bias(self.bias, "Dense")
        object.__setattr__(self, "bias", None)
        object.__setattr__(self, "weight", _frozen_weight(self.weight, "Dense.weight", 2))
        object.__setattr__(self, "threshold", _check_threshold(self.threshold, "Dense"))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if input_shape != (self.weight.shape[1],):
            raise SpecError(f"Dense.weight {self.weight.shape} takes ({self.weight.shape[1]},), got {input_shape}")
        return (self.weight.shape[0],)

    def __eq__(self, other: object) -> bool:
        return _layers_equal(self, other)


@dataclass(frozen=True, eq=False)
class Conv2d:
    """2-d convolution (cross-correlation, as torch), W of shape (out_c, in_c, kh, kw); zero padding."""

    weight: np.ndarray
    threshold: float = 1.0
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    bias: Any = None

    def __post_init__(self) -> None:
        _check_bias(self.bias, "Conv2d")
        object.__setattr__(self, "bias", None)
        object.__setattr__(self, "weight", _frozen_weight(self.weight, "Conv2d.weight", 4))
        object.__setattr__(self, "threshold", _check_threshold(self.threshold, "Conv2d"))
        object.__setattr__(self, "stride", _pair(self.stride, "Conv2d.stride", 1))
        object.__setattr__(self, "padding", _pair(self.padding, "Conv2d.padding", 0))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        oc, ic, kh, kw = self.weight.shape
        if len(input_shape) != 3 or input_shape[0] != ic:
            raise SpecError(f"Conv2d.weight {self.weight.shape} takes ({ic}, H, W), got {input_shape}")
        h = (input_shape[1] + 2 * self.padding[0] - kh) // self.stride[0] + 1
        w = (input_shape[2] + 2 * self.padding[1] - kw) // self.stride[1] + 1
        if h < 1 or w < 1:
            raise SpecError(f"Conv2d: kernel {kh}x{kw} does not fit input {input_shape}")
        return (oc, h, w)

    def __eq__(self, other: object) -> bool:
        return _layers_equal(self, other)


@dataclass(frozen=True)
class AvgPool2d:
    """k×k average pooling as IF neurons with weights 1/k² (Diehl's code); stride defaults to k."""

    kernel_size: int
    threshold: float = 1.0
    stride: int | None = None

    def __post_init__(self) -> None:
        if int(self.kernel_size) != self.kernel_size or self.kernel_size < 1:
            raise SpecError(f"AvgPool2d.kernel_size must be a positive int, got {self.kernel_size!r}")
        object.__setattr__(self, "kernel_size", int(self.kernel_size))
        stride = self.kernel_size if self.stride is None else self.stride
        if int(stride) != stride or stride < 1:
            raise SpecError(f"AvgPool2d.stride must be a positive int, got {self.stride!r}")
        object.__setattr__(self, "stride", int(stride))
        object.__setattr__(self, "threshold", _check_threshold(self.threshold, "AvgPool2d"))

    @property
    def weight_value(self) -> float:
        return 1.0 / self.kernel_size**2

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3:
            raise SpecError(f"AvgPool2d takes (C, H, W), got {input_shape}")
        k, s = self.kernel_size, self.stride
        h, w = (input_shape[1] - k) // s + 1, (input_shape[2] - k) // s + 1
        if h < 1 or w < 1:
            raise SpecError(f"AvgPool2d: kernel {k} does not fit input {input_shape}")
        return (input_shape[0], h, w)


Layer = Flatten | Dense | Conv2d | AvgPool2d
LAYER_TYPES = (Flatten, Dense, Conv2d, AvgPool2d)
SPIKING_TYPES = (Dense, Conv2d, AvgPool2d)


def is_spiking(layer: Layer) -> bool:
    return isinstance(layer, SPIKING_TYPES)


def _layers_equal(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return NotImplemented
    return all(
        np.array_equal(getattr(a, f), getattr(b, f)) if f == "weight" else getattr(a, f) == getattr(b, f)
        for f in a.__dataclass_fields__
    )


@dataclass(frozen=True, eq=False)
class NetworkSpec:
    """A converted spiking network; see the module docstring for every field's meaning."""

    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    reset: str = "zero"
    schedule: str = "delay"
    dt_ms: float = 1.0
    encoding: str = "poisson"
    max_rate_hz: float = 1000.0
    labels: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise SpecError("layers: a spec needs at least one layer")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, LAYER_TYPES):
                raise SpecError(
                    f"layers[{i}]: unknown layer type {type(layer).__name__}; "
                    f"supported: {', '.join(t.__name__ for t in LAYER_TYPES)}"
                )
        if not is_spiking(self.layers[-1]):
            raise SpecError("layers[-1]: the last layer must be a spiking layer (the output neurons)")
        if self.reset not in RESETS:
            raise SpecError(f"reset must be one of {RESETS}, got {self.reset!r}")
        if self.schedule not in SCHEDULES:
            raise SpecError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.encoding not in ENCODINGS:
            raise SpecError(f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        for name in ("dt_ms", "max_rate_hz"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value <= 0:
                raise SpecError(f"{name} must be a positive finite number, got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        shapes = self.shapes  # raises SpecError if the layers do not chain
        n_out = int(np.prod(shapes[-1]))
        labels = tuple(str(x) for x in self.labels) or tuple(str(i) for i in range(n_out))
        if len(labels) != n_out:
            raise SpecError(f"labels: {len(labels)} class labels for {n_out} output neurons")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "provenance", dict(self.provenance))

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """Shapes of the input and of every layer's output: ``shapes[0]`` is the input shape."""
        out = [self.input_shape]
        for i, layer in enumerate(self.layers):
            try:
                out.append(layer.output_shape(out[-1]))
            except SpecError as err:
                raise SpecError(f"layers[{i}] ({type(layer).__name__}): shapes do not chain: {err}") from None
        return out

    @property
    def spiking_indices(self) -> list[int]:
        """Indices into ``layers`` of the spiking layers (everything but Flatten)."""
        return [i for i, layer in enumerate(self.layers) if is_spiking(layer)]

    @property
    def population_sizes(self) -> list[int]:
        """Number of IF neurons of each spiking layer, in order."""
        shapes = self.shapes
        return [int(np.prod(shapes[i + 1])) for i in self.spiking_indices]

    @property
    def thresholds(self) -> list[float]:
        return [self.layers[i].threshold for i in self.spiking_indices]

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NetworkSpec):
            return NotImplemented
        return (
            self.input_shape == other.input_shape
            and len(self.layers) == len(other.layers)
            and all(a == b for a, b in zip(self.layers, other.layers, strict=True))
            and (self.reset, self.schedule, self.dt_ms, self.encoding, self.max_rate_hz, self.labels)
            == (other.reset, other.schedule, other.dt_ms, other.encoding, other.max_rate_hz, other.labels)
            and self.provenance == other.provenance
        )

    __hash__ = None  # type: ignore[assignment]
