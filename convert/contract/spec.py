"""The NetworkSpec: the one simulator-neutral contract between convert/, fastsim/ and refsim/.

A spec is frozen data (NIR style): small dataclasses holding read-only numpy arrays, validated on
construction with errors that name the offending field. It holds everything a simulator needs, so neither
simulator takes neuron parameters or time semantics as arguments:

* ``input_shape``: the shape of one input sample, e.g. ``(1, 28, 28)``;
* ``skips``: the skip edges (:class:`convert.layers.skip.Skip`), any number into any ``Dense``, ``Conv2d`` or
  ``Neurons`` layer, ordered by target (a layer given in the chain form, with ``skip_*`` fields, has its edge
  moved here);
* ``layers``: a chain of layers of the registered families (:mod:`convert.layers`: :class:`Flatten`,
  :class:`Dense`, :class:`Conv2d`, :class:`AvgPool2d`, one module each). Every layer but ``Flatten`` is a
  *spiking* layer: a population of integrate-and-fire neurons with its own ``threshold`` θ_l, fed through the
  layer's synapses (``AvgPool2d`` has implicit weights 1/k², as in Diehl's code);
* ``reset``: ``"zero"`` (v ← 0) or ``"subtract"`` (v ← v − θ);
* ``schedule``: ``"delay"`` (Brian2's order: thresholds of all layers, then synapses, then resets; each layer
  adds a step of latency) or ``"cascade"`` (layer by layer within a step; a spike crosses the whole net);
* ``dt_ms``: the time step in milliseconds;
* ``encoding``: ``"poisson"`` (pixel x ∈ [0, 1] spikes with probability x · max_rate_hz · dt) or
  ``"current"`` (the analog x is injected every step);
* ``labels``: the class names of the output neurons; ``provenance``: free-form JSON-able metadata
  (source checkpoint, method, factors, seed);
* ``readout``: how the class is read from the output layer: ``"spikes"`` (argmax of its spike counts) or
  ``"membrane"`` (the output layer integrates but never spikes nor resets; argmax of its potential);
* ``v_init``: every population's membrane potential at the start of each image, as a fraction of its own
  threshold: v_l(0) = v_init · θ_l, in [0, 1). 0 is the paper's (and Brian2's) rest; ½ centres the
  rate's rounding error of reset by subtraction (Bu et al. 2022, "Optimal ANN-SNN conversion");
* ``v_init_neurons``: None, or one start potential per neuron, as a fraction of the threshold in [0, 1): a
  float64 array (n_l,) per spiking population in order (flattened C order), in place of ``v_init`` (potential
  correction, Li et al. 2021: :mod:`convert.potential_correction`).

The exact discrete-time semantics are in docs/semantics.md; the file format in docs/spec-format.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convert.layers import (
    LAYER_TYPES,
    SPIKING_TYPES,
    AvgPool2d,
    Conv2d,
    Dense,
    Flatten,
    Layer,
    MaxPool2d,
    Neurons,
    SpecError,
    UnknownLayerError,
    family_of,
    is_spiking,
    is_tap_node,
)
from convert.layers import skip as skip_edge
from convert.layers.skip import Skip

__all__ = [
    "ENCODINGS",
    "LAYER_TYPES",
    "READOUTS",
    "RESETS",
    "SCHEDULES",
    "SPIKING_TYPES",
    "AvgPool2d",
    "Conv2d",
    "Dense",
    "Flatten",
    "Layer",
    "MaxPool2d",
    "NetworkSpec",
    "Neurons",
    "Skip",
    "SpecError",
    "UnknownLayerError",
    "is_tap_node",
    "is_spiking",
]

RESETS = ("zero", "subtract")
SCHEDULES = ("delay", "cascade")
ENCODINGS = ("poisson", "current")
READOUTS = ("spikes", "membrane")


def _fraction(value: Any) -> float:
    """``v_init`` as a float in [0, 1), or a :class:`SpecError` that says what it must be."""
    v = float(value) if isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) else math.nan
    if not (0.0 <= v < 1.0):  # NaN fails too
        raise SpecError(
            f"v_init must be a fraction of the threshold in [0, 1), got {value!r}: 0 starts every membrane at "
            "rest, 0.5 at half its threshold"
        )
    return v


def _neuron_fractions(value: Any, sizes: list[int]) -> tuple[np.ndarray, ...] | None:
    """``v_init_neurons`` as read-only float64 arrays, one (n_l,) per spiking population, every entry in
    [0, 1); or a :class:`SpecError` naming the population and what is wrong."""
    if value is None:
        return None
    value = tuple(value)
    if len(value) != len(sizes):
        raise SpecError(
            f"v_init_neurons: {len(value)} arrays for {len(sizes)} spiking populations; give one per population"
        )
    out = []
    for k, (v, n) in enumerate(zip(value, sizes, strict=True)):
        a = np.array(v, dtype=np.float64).reshape(-1) if np.size(v) == n else None
        if a is None:
            raise SpecError(f"v_init_neurons[{k}]: shape {np.shape(v)} for a population of {n} neurons; give ({n},)")
        bad = ~((a >= 0.0) & (a < 1.0))  # NaN is bad too
        if bad.any():
            raise SpecError(
                f"v_init_neurons[{k}]: {int(bad.sum())} start potentials outside [0, 1) "
                f"(e.g. {float(a[bad][0])!r}): each is a fraction of the threshold"
            )
        a.setflags(write=False)
        out.append(a)
    return tuple(out)


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
    readout: str = "spikes"
    v_init: float = 0.0
    v_init_neurons: tuple[np.ndarray, ...] | None = None
    skips: tuple[Skip, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise SpecError("layers: a spec needs at least one layer")
        for i, layer in enumerate(self.layers):
            try:
                family_of(layer)
            except UnknownLayerError as err:
                raise UnknownLayerError(f"layers[{i}]: {err}") from None
        self._gather_skips()
        if not is_spiking(self.layers[-1]):
            raise SpecError("layers[-1]: the last layer must be a spiking layer (the output neurons)")
        if self.reset not in RESETS:
            raise SpecError(f"reset must be one of {RESETS}, got {self.reset!r}")
        if self.schedule not in SCHEDULES:
            raise SpecError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.encoding not in ENCODINGS:
            raise SpecError(f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        if self.readout not in READOUTS:
            raise SpecError(f"readout must be one of {READOUTS}, got {self.readout!r}")
        for name in ("dt_ms", "max_rate_hz"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value <= 0:
                raise SpecError(f"{name} must be a positive finite number, got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "v_init", _fraction(self.v_init))
        shapes = self.shapes  # raises SpecError if the layers do not chain
        self._check_graph(shapes)
        n_out = int(np.prod(shapes[-1]))
        labels = tuple(str(x) for x in self.labels) or tuple(str(i) for i in range(n_out))
        if len(labels) != n_out:
            raise SpecError(f"labels: {len(labels)} class labels for {n_out} output neurons")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "provenance", dict(self.provenance))
        object.__setattr__(self, "v_init_neurons", _neuron_fractions(self.v_init_neurons, self.population_sizes))

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

    def _gather_skips(self) -> None:
        """The chain form's skip fields moved into ``skips`` (before the given edges into the same layer), the
        layers stripped of them; the edges in a stable order by target."""
        carried = []
        for i, layer in enumerate(self.layers):
            if skip_edge.has_skip(layer):
                carried.append((i, Skip.of_layer(layer, i)))
        given = tuple(self.skips)
        if any(not isinstance(e, Skip) for e in given):
            raise SpecError("skips: every skip edge must be a convert.layers.skip.Skip")
        if carried:
            object.__setattr__(self, "layers", tuple(skip_edge.stripped(layer) for layer in self.layers))
        edges = [(i, 0, e) for i, e in carried] + [(e.target, 1, e) for e in given]
        edges.sort(key=lambda t: (t[0], t[1]))
        object.__setattr__(self, "skips", tuple(e for _, _, e in edges))

    def _check_graph(self, shapes: list[tuple[int, ...]]) -> None:
        """Tap nodes (the gate) directly after a spiking layer; skip edges from an earlier tap into a spiking layer
        with weights of its own or none at all (Dense, Conv2d, Neurons; not a pool), of the target's shape."""
        for i, layer in enumerate(self.layers):
            if is_tap_node(layer) and (i == 0 or not is_spiking(self.layers[i - 1])):
                raise SpecError(
                    f"layers[{i}] ({type(layer).__name__}): a {family_of(layer).tap} (tap node) must directly "
                    "follow a spiking layer (it holds state on the spikes of the population below)"
                )
        for edge in self.skips:
            i, j = edge.target, edge.source
            where = f"skip edge {j} -> {i}"
            if i >= len(self.layers):
                raise SpecError(f"{where}: the target is past the last layer ({len(self.layers) - 1})")
            target = self.layers[i]
            where = f"layers[{i}] ({type(target).__name__}): {where}"
            if not (is_spiking(target) and family_of(target).has_weights):
                raise SpecError(f"{where}: only a Dense, Conv2d or Neurons layer takes a skip edge")
            ranks = (0, 2) if len(shapes[i + 1]) == 1 else (0, 1, 4)
            if edge.weight.ndim not in ranks:
                raise SpecError(
                    f"{where}: a {edge.weight.ndim}-d skip weight; a layer of shape {shapes[i + 1]} takes "
                    + " or ".join(f"{r}-d" for r in ranks)
                )
            if j >= i:
                raise SpecError(f"{where}: a skip edge must come from an earlier layer (index below {i})")
            if not (is_spiking(self.layers[j]) or is_tap_node(self.layers[j])):
                raise SpecError(
                    f"{where}: the skip source must be a spiking layer or a tap node (a MaxPool2d gate), "
                    f"not {type(self.layers[j]).__name__}"
                )
            try:
                got = edge.output_shape(shapes[j + 1])
            except SpecError as err:
                raise SpecError(f"{where}: {err}") from None
            if tuple(got) != tuple(shapes[i + 1]):
                raise SpecError(f"{where}: the skip map gives shape {got}, the layer has {shapes[i + 1]}")

    def skips_into(self, index: int) -> tuple[Skip, ...]:
        """The skip edges into ``layers[index]``, in the order their currents are added (:meth:`skips_by_target`
        for all of them at once)."""
        return tuple(e for e in self.skips if e.target == index)

    def skips_by_target(self) -> dict[int, tuple[Skip, ...]]:
        """Every layer's skip edges (:meth:`skips_into`) in one walk over the edges: a pass over a spec of many
        edges (densenet121: 1 876) reads them by target instead of scanning every edge per layer."""
        into: dict[int, tuple[Skip, ...]] = {}
        for e in self.skips:
            into[e.target] = (*into.get(e.target, ()), e)
        return into

    def chain_form(self) -> tuple[tuple[Layer, ...], tuple[Skip, ...]]:
        """The layers with the first skip edge into each carried as its ``skip_*`` fields (the form of files of
        versions 4 to 6 and of the content fingerprints, which stay as they were), and the other edges (also
        every edge into a family without the fields, such as ``Neurons``)."""
        layers, rest, seen = list(self.layers), [], set()
        for e in self.skips:
            if e.target in seen or not hasattr(layers[e.target], "skip_source"):
                rest.append(e)
                continue
            seen.add(e.target)
            layers[e.target] = dataclasses.replace(layers[e.target], **e.fields())
        return tuple(layers), tuple(rest)

    @property
    def is_chain(self) -> bool:
        """No tap node (max-pool gate) and no skip edge: the paper's feed-forward chain of populations."""
        return not self.skips and not any(is_tap_node(layer) for layer in self.layers)

    def tap(self, index: int) -> tuple[str, int]:
        """Where the activity after ``layers[index]`` comes from: ``("pop", p)`` for spiking population p
        (0-based), ``(tap, p)`` for a tap node on population p's spikes (its family's ``tap``: ``("gate", p)``
        for the max-pool gate)."""
        layer = self.layers[index]
        if is_spiking(layer):
            return ("pop", self.spiking_indices.index(index))
        if is_tap_node(layer):
            return (family_of(layer).tap, self.spiking_indices.index(index - 1))
        raise SpecError(f"layers[{index}] ({type(layer).__name__}) is neither a population nor a tap node")

    def node_before(self, population: int) -> int | None:
        """The index in ``layers`` of the tap node (the max-pool gate) between population ``population`` − 1
        and ``population`` (0-based), if any."""
        start = 0 if population == 0 else self.spiking_indices[population - 1] + 1
        for i in range(start, self.spiking_indices[population]):
            if is_tap_node(self.layers[i]):
                return i
        return None

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
    def initial_potentials(self) -> list[Any]:
        """Each population's membrane at the start of an image, v_init · θ_l (float64; engines round it once to
        their dtype), with the layer's own θ also for a membrane readout's output layer; with
        ``v_init_neurons``, an array (n_l,) per population, each neuron's fraction · θ_l."""
        if self.v_init_neurons is not None:
            return [f * theta for f, theta in zip(self.v_init_neurons, self.thresholds, strict=True)]
        return [self.v_init * theta for theta in self.thresholds]

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
            and self.readout == other.readout
            and self.v_init == other.v_init
            and _same_arrays(self.v_init_neurons, other.v_init_neurons)
            and self.skips == other.skips
            and self.provenance == other.provenance
        )

    __hash__ = None  # type: ignore[assignment]


def _same_arrays(a: tuple[np.ndarray, ...] | None, b: tuple[np.ndarray, ...] | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
