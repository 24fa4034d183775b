"""What every layer family shares: the error types, field validation, the base classes and :class:`LayerFamily`.

A *layer family* is one kind of spec layer (``Dense``, ``Conv2d``, ...): a frozen dataclass holding read-only
numpy arrays (NIR style), validated on construction, plus the hooks ``convert/`` needs for it (its ANN forward
pass, its normalization quantities, its torch-module extraction and its NIR node), gathered in one
:class:`LayerFamily` record at the bottom of the family's own module. :mod:`convert.layers` lists the families;
nothing else in the code base does.

Every family's class derives from :class:`Layer`; a family whose layer is a population of integrate-and-fire
neurons (it has a ``threshold`` θ and its output is spikes) derives from :class:`SpikingLayer`. A non-spiking
layer (``Flatten``) must be a pure re-indexing of its input: the simulators build no neurons for it, and ReLU
commutes with it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


class SpecError(ValueError):
    """A spec is invalid; the message names the field and says what would be valid."""


class UnknownLayerError(SpecError, TypeError):
    """A layer of a type that no registered family (or no simulator builder) handles; the message names its class.

    A :class:`SpecError` (it makes the spec invalid) and a ``TypeError`` (type dispatch raises it)."""


class Layer:
    """Base of every spec layer class; see the module docstring."""

    __slots__ = ()


class SpikingLayer(Layer):
    """A layer that is a population of IF neurons with a ``threshold`` field (θ_l)."""

    __slots__ = ()


# ------------------------------------------------------------------------------------------- field checks
def frozen_weight(value: Any, name: str, ndim: int) -> np.ndarray:
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


def check_threshold(threshold: float, name: str) -> float:
    t = float(threshold)
    if not math.isfinite(t) or t <= 0:
        raise SpecError(f"{name}.threshold must be a positive finite number, got {threshold!r}")
    return t


def frozen_bias(bias: Any, n_out: int, name: str) -> np.ndarray | None:
    """A layer's bias as a read-only float array of shape (n_out,) (one constant current per neuron, or per
    output channel of a convolution), or None for no bias; an all-zero bias is None (the paper's networks and
    every spec written before biases existed), NaN/inf or a wrong shape raise SpecError naming the field."""
    if bias is None:
        return None
    arr = np.array(bias, copy=True)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.shape != (n_out,):
        raise SpecError(f"{name}: expected shape ({n_out},) (one value per output neuron or channel), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise SpecError(f"{name}: {bad} biases are NaN or infinite; retrain or fix the checkpoint")
    if not np.any(arr != 0):
        return None
    arr.setflags(write=False)
    return arr


def pair(value: Any, name: str, minimum: int) -> tuple[int, int]:
    pair_ = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair_) != 2 or any(int(v) != v or v < minimum for v in pair_):
        raise SpecError(f"{name}: expected an int or a pair of ints >= {minimum}, got {value!r}")
    return int(pair_[0]), int(pair_[1])


def square_size(value: Any, name: str) -> int:
    """A torch pooling size (an int or a pair) as one int; a non-square one raises SpecError naming ``name``."""
    values = {value} if isinstance(value, int) else set(value)
    if len(values) != 1:
        raise SpecError(f"{name}: only square pooling is supported, got {value}")
    return int(values.pop())


def layers_equal(a: Any, b: Any) -> bool:
    """Field-wise equality of two layers of one type, weights compared by value (``==`` of arrays is not a bool)."""
    if type(a) is not type(b):
        return NotImplemented

    def same(x: Any, y: Any) -> bool:
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            return x is not None and y is not None and np.array_equal(x, y)
        return x == y

    return all(same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)


# ------------------------------------------------------------------------------ helpers of weight layers
def max_positive_input_sum(layer: Any) -> float:
    """max over neurons j of Σ_i max(W_ji, 0), W reshaped to (out, -1) (conv: over in-channels × kernel):
    the largest input one step of one-spike-per-input can bring (Diehl et al. 2015, Algorithm 1)."""
    w = np.clip(layer.weight, 0, None)
    return float(w.reshape(w.shape[0], -1).sum(axis=1).max())


def max_positive_weight(layer: Any) -> float:
    """max(0, max_ij W_ij) (Diehl et al. 2015, Algorithm 2)."""
    return float(max(0.0, layer.weight.max()))


def scale_weight(layer: Any, divisor: float) -> Any:
    """The layer with W ← W / divisor (a new layer; the arrays are read-only). The bias is scaled by
    :func:`convert.normalize` by the product of every divisor up to this layer, not by this one alone."""
    return dataclasses.replace(layer, weight=layer.weight / divisor)


def max_positive_bias(layer: Any) -> float:
    """max(0, max_j b_j): the largest constant current one step brings (0 without a bias)."""
    bias = getattr(layer, "bias", None)
    return 0.0 if bias is None else float(max(0.0, bias.max()))


def module_weight(module: Any) -> np.ndarray:
    """A torch module's weights as float64."""
    return module.weight.detach().cpu().numpy().astype(np.float64)


def module_bias(module: Any) -> np.ndarray | None:
    """A torch module's bias as float64, or None."""
    bias = getattr(module, "bias", None)
    return None if bias is None else bias.detach().cpu().numpy().astype(np.float64)


def weight_tensor(weight: np.ndarray, like: Any) -> Any:
    """``weight`` as a torch tensor of ``like``'s dtype; spec arrays are read-only and torch wants writable
    memory, so it gets a copy."""
    import torch

    return torch.tensor(weight, dtype=like.dtype)


# ------------------------------------------------------------------------------------------- NIR import
def nir_bias(node: Any, n_out: int, where: str) -> np.ndarray | None:
    """A NIR node's bias (absent, a scalar or one value per output) as the layer's bias, or None if zero."""
    bias = getattr(node, "bias", None)
    if bias is None:
        return None
    arr = np.asarray(bias, dtype=np.float64)
    if arr.size == 1:
        arr = np.full(n_out, float(arr.reshape(-1)[0]))
    if arr.shape != (n_out,):
        raise SpecError(f"{where}: bias of shape {arr.shape}; expected ({n_out},) or a scalar")
    return arr


def nir_pair(value: Any, where: str, name: str) -> tuple[int, int]:
    """A NIR size field (int, 1- or 2-element array) as a pair of ints; anything else names the field."""
    if isinstance(value, str):
        raise SpecError(f"{where}: {name}={value!r}; only explicit integer {name} is supported")
    arr = np.atleast_1d(np.asarray(value))
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2 or np.any(arr != np.round(arr)):
        raise SpecError(f"{where}: {name} must be an int or a pair of ints, got {value!r}")
    return int(arr[0]), int(arr[1])


# ----------------------------------------------------------------------------------------------- family
@dataclass(frozen=True)
class LayerFamily:
    """Everything ``convert/`` knows about one layer family, beside its dataclass ``layer``.

    * ``forward(layer, x) -> z``: the ANN's pre-activation for a batch x of shape (N, *input shape), torch,
      in x's dtype (for a spiking layer the ANN activation is ReLU(z)); :mod:`convert.ann`;
    * ``nir_node(layer, input_shape)``: the NIR node of the layer's synapses (:mod:`convert.nir_export` adds
      the IF node of a spiking layer); ``nir_gain(layer)``: how many times larger that node's output is than
      the layer's input current (sum pooling for average pooling: k²), by which the IF threshold is scaled
      (None: 1); ``from_nir(node, threshold, where)``: the layer of a NIR node of one of the class names
      ``nir_types``, ``threshold`` the v_threshold its IF node means (already in ``≥`` form, before dividing by
      the gain; None for a non-spiking family), a :class:`SpecError` naming ``where`` for a setting the spec
      cannot hold (:mod:`convert.nir_import`);
    * ``torch_module``: the name of the ``torch.nn`` class it is the copy of; ``from_module(module, index)``:
      the direct copy (threshold 1) of such a module, a :class:`SpecError` naming ``index`` for a setting the
      spec cannot hold; ``to_module(layer)``: the inverse, a module computing ``forward`` (:mod:`convert.extract`,
      benchmarks). All three None: a family with no torch counterpart (extraction never produces it);
    * ``arrays``: the fields stored as arrays in a spec file (:mod:`convert.contract.io`);
    * normalization (:mod:`convert.normalize`), spiking families only: ``max_positive_input_sum(layer)``,
      ``max_positive_weight(layer)``, ``max_positive_bias(layer)`` (None: the family has no bias) and
      ``scaled(layer, d)`` (W ← W / d); ``scaled`` is None for a layer without weights of its own (pooling:
      its 1/k² stays, d = 1). A family with a ``bias`` field has it divided by the product of the divisors up
      to its layer (:func:`convert.normalize`), not by its own divisor alone;
    * ``synapses(layer, input_shape) -> int``, spiking families only: the number of (input, output) pairs the
      layer connects, i.e. the multiply-accumulates of one ANN forward pass and the synaptic events of one
      spike from every input (:func:`convert.ann.macs_per_image`);
    * ``defaults``: fields added after files existed, each with the value that means what older files meant;
      at that value a field is left out of files and fingerprints (:meth:`omitted`), so such a layer's file and
      every cache key stay as they were, and a file without the key reads as the default;
    * ``field_types``: ``{field: (check, what)}`` for the family's own scalar fields in a file
      (:mod:`convert.contract.io` knows the shared ones: threshold, stride, padding, kernel_size, skip_*);
    * ``tap``: for a *tap node* (no population, but a stateful map on the spikes of the population right below
      it, read as the activity ``(tap, p)``: the max-pool gate, ``"gate"``), the name of its tap; None else;
    * ``key_fields(layer) -> bytes``: a non-spiking family's settings as the statistics key hashes them
      (:func:`convert.stats.statistics_key`; None: nothing but its class name).
    """

    layer: type
    forward: Callable[[Any, Any], Any]
    nir_node: Callable[[Any, tuple[int, ...]], Any]
    torch_module: str | None = None
    from_module: Callable[[Any, int], Any] | None = None
    to_module: Callable[[Any], Any] | None = None
    arrays: tuple[str, ...] = ()
    max_positive_input_sum: Callable[[Any], float] | None = None
    max_positive_weight: Callable[[Any], float] | None = None
    max_positive_bias: Callable[[Any], float] | None = None
    scaled: Callable[[Any, float], Any] | None = None
    synapses: Callable[[Any, tuple[int, ...]], int] | None = None
    nir_gain: Callable[[Any], float] | None = None
    nir_types: tuple[str, ...] = ()
    from_nir: Callable[[Any, float | None, str], Any] | None = None
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    field_types: dict[str, tuple[Callable[[Any], bool], str]] = dataclasses.field(default_factory=dict)
    tap: str | None = None
    key_fields: Callable[[Any], bytes] | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.layer, type) and issubclass(self.layer, Layer)):
            raise SpecError(f"LayerFamily.layer: must be a subclass of convert.layers.base.Layer, got {self.layer!r}")
        torch_hooks = (self.torch_module, self.from_module, self.to_module)
        if any(h is None for h in torch_hooks) and any(h is not None for h in torch_hooks):
            raise SpecError(f"LayerFamily({self.name}): give torch_module, from_module and to_module, or none")
        if self.tap is not None and (self.spiking or self.tap in ("input", "pop")):
            raise SpecError(f"LayerFamily({self.name}): a tap node is no population and its tap is named anew")
        if self.spiking and (self.max_positive_input_sum is None or self.max_positive_weight is None):
            raise SpecError(
                f"LayerFamily({self.name}): a spiking family needs max_positive_input_sum and max_positive_weight"
            )

    def omitted(self, layer: Any, field: str) -> bool:
        """Whether ``field`` of ``layer`` is left out of spec files and fingerprints: a field added to the family
        after files existed, at the value that means what those files meant (:attr:`defaults`)."""
        return field in self.defaults and getattr(layer, field) == self.defaults[field]

    @property
    def name(self) -> str:
        """The class name: the layer's ``type`` in spec files."""
        return self.layer.__name__

    @property
    def spiking(self) -> bool:
        return issubclass(self.layer, SpikingLayer)

    @property
    def has_weights(self) -> bool:
        """Whether normalization scales the layer's own weights."""
        return self.scaled is not None

    def module(self, layer: Any) -> Any:
        """``to_module(layer)``; a :class:`SpecError` if the family has no torch counterpart."""
        if self.to_module is None:
            raise SpecError(f"{self.name} has no torch module (its LayerFamily gives no to_module)")
        return self.to_module(layer)
